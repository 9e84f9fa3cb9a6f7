"""The training variants beyond the paper (train.self_distill keys, all off by default): each changes the gradient it
claims to change, and nothing else."""
import pytest
import torch
from basicsr.models import build_model
from helpers import model_options

from sd_plugin.archs import SRResNetMultiExit
from sd_plugin.models.self_distill_sr_model import SELF_DISTILL_DEFAULTS, ramp, teacher_better_mask


def grads(model, data, current_iter=1):
    """{parameter name: gradient} after one optimize_parameters step's backward (the step itself is undone)."""
    model.feed_data(data)
    before = {n: p.detach().clone() for n, p in model.net_g.named_parameters()}
    model.optimize_parameters(current_iter)
    result = {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in
              model.net_g.named_parameters()}
    with torch.no_grad():
        for n, p in model.net_g.named_parameters():
            p.copy_(before[n])
    return result, dict(model.log_dict)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {'lq': torch.rand(2, 3, 8, 8, generator=g), 'gt': torch.rand(2, 3, 32, 32, generator=g)}


def make_model(tiny_data, **self_distill):
    opt = model_options(tiny_data)
    opt['train']['self_distill'].update(self_distill)
    torch.manual_seed(0)
    return build_model(opt)


def test_every_variant_is_off_by_default():
    assert SELF_DISTILL_DEFAULTS['distill_start_iter'] == 0 and SELF_DISTILL_DEFAULTS['distill_ramp_iters'] == 0
    assert SELF_DISTILL_DEFAULTS['distill_gate'] is False and SELF_DISTILL_DEFAULTS['trunk_grad_scale'] == 1.0
    assert SELF_DISTILL_DEFAULTS['feature_distill_opt'] is None


def test_ramp_is_zero_before_the_start_then_linear_then_full():
    assert [ramp(i, 100, 50) for i in (0, 99, 100, 125, 150, 1000)] == [0, 0, 0, 0.5, 1, 1]
    assert ramp(0, 0, 0) == 1 and ramp(5, 10, 0) == 0 and ramp(10, 10, 0) == 1


def test_before_the_distill_start_the_distillation_terms_give_no_gradient(tiny_data):
    plain = make_model(tiny_data, distill_opt={'type': 'L1DistillLoss', 'loss_weight': 0})
    delayed = make_model(tiny_data, distill_start_iter=10, distill_ramp_iters=10)
    paper = make_model(tiny_data)
    g_plain, _ = grads(plain, batch())
    g_early, logs = grads(delayed, batch(), current_iter=5)
    g_paper, _ = grads(paper, batch(), current_iter=5)
    assert logs['l_distill_exit2'] == 0
    for name in g_plain:
        assert torch.allclose(g_plain[name], g_early[name], atol=1e-7), name
    assert any(not torch.allclose(g_plain[n], g_paper[n], atol=1e-7) for n in g_plain)  # the test can fail
    g_half, logs_half = grads(delayed, batch(), current_iter=15)
    assert logs_half['l_distill_exit2'] > 0


def test_teacher_gate_masks_the_pixels_where_the_teacher_is_worse():
    gt = torch.zeros(1, 3, 2, 2)
    teacher = torch.tensor([0.1, 0.5, 0.1, 0.5]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    student = torch.full((1, 3, 2, 2), 0.3)
    assert teacher_better_mask(student, teacher, gt).flatten().tolist() == [1, 0, 1, 0]


def test_gated_distillation_gives_no_gradient_through_pixels_where_the_teacher_is_worse():
    """With only the distillation term, the gradient on the exit output is zero exactly where the mask is 0."""
    from sd_plugin.losses import L1DistillLoss
    gt = torch.rand(2, 3, 8, 8)
    teacher = torch.rand(2, 3, 8, 8)
    student = torch.rand(2, 3, 8, 8, requires_grad=True)
    mask = teacher_better_mask(student, teacher, gt)
    assert 0 < mask.mean() < 1
    L1DistillLoss()(student * mask, teacher * mask).backward()
    blocked = (mask == 0).expand_as(student)
    assert torch.all(student.grad[blocked] == 0) and torch.all(student.grad[~blocked] != 0)


@pytest.mark.parametrize('scale', [0.0, 0.5])
def test_trunk_grad_scale_scales_what_the_deeper_outputs_send_into_the_student_blocks(scale):
    torch.manual_seed(0)
    net = SRResNetMultiExit(num_feat=8, num_block=4, exits=[2])
    x = torch.rand(1, 3, 8, 8)

    def trunk_grad(which, s):
        net.zero_grad()
        outputs = net(x, all_exits=True, trunk_grad_scale=s)
        outputs[which].sum().backward()
        return net.body[0].conv1.weight.grad.clone()

    full_teacher = trunk_grad(4, 1.0)
    assert torch.allclose(trunk_grad(4, scale), scale * full_teacher, atol=1e-6)  # teacher's share is scaled
    assert torch.equal(trunk_grad(2, scale), trunk_grad(2, 1.0))  # the student's own gradient is untouched
    with torch.no_grad():  # the forward pass does not change
        assert torch.equal(net(x, all_exits=True, trunk_grad_scale=scale)[4], net(x, all_exits=True)[4])


def test_trunk_grad_scale_0_trains_the_student_blocks_only_with_the_student_losses(tiny_data):
    isolated = make_model(tiny_data, trunk_grad_scale=0.0)
    g, _ = grads(isolated, batch())
    student_only = make_model(tiny_data, trunk_grad_scale=0.0)
    student_only.cri_pix = lambda out, gt: (out * 0).sum()  # drop the teacher's own loss
    g_student, _ = grads(student_only, batch())
    for name in g:
        if name.startswith(('conv_first.', 'body.0.', 'body.1.', 'exit_heads.')):
            assert torch.allclose(g[name], g_student[name], atol=1e-7), name
    assert not torch.allclose(g['body.2.conv1.weight'], g_student['body.2.conv1.weight'])


def test_feature_distillation_trains_the_exit_head_and_trunk_and_never_the_teacher(tiny_data):
    """Only the feature term: its gradient must reach the exit head (all of it up to conv_hr) and the student's
    blocks, and must not reach the teacher's head or the blocks after the exit."""
    model = make_model(tiny_data, student_pixel_weight=0, distill_opt={'type': 'L1DistillLoss', 'loss_weight': 0},
                       feature_distill_opt={'type': 'L1DistillLoss', 'loss_weight': 1.0})
    model.cri_pix = lambda out, gt: (out * 0).sum()
    g, logs = grads(model, batch())
    assert logs['l_feat_exit2'] > 0
    for name in ('exit_heads.2.upconv1.weight', 'exit_heads.2.upconv2.weight', 'exit_heads.2.conv_hr.weight',
                 'body.0.conv1.weight', 'conv_first.weight'):
        assert g[name].abs().sum() > 0, name
    for name, value in g.items():
        if name.startswith(('upconv', 'conv_hr', 'conv_last', 'body.2.', 'body.3.', 'exit_heads.2.conv_last')):
            assert value.abs().sum() == 0, name


def test_teacher_gate_end_to_end_through_optimize_parameters(tiny_data):
    """Through SelfDistillSRModel.optimize_parameters: where the gate is off (the teacher is worse than the exit
    everywhere: GT is the exit's own output) the distillation term adds no gradient to any parameter; where it is on
    everywhere (GT is the teacher's output) the term adds exactly the ungated gradient."""
    data = batch()
    with torch.no_grad():
        outputs = make_model(tiny_data).net_g(data['lq'], all_exits=True)  # the same initial weights as below
    exit_exact = {'lq': data['lq'], 'gt': outputs[2].clone()}
    teacher_exact = {'lq': data['lq'], 'gt': outputs[4].clone()}
    gated = make_model(tiny_data, distill_gate=True)
    ungated = make_model(tiny_data)
    no_distill = make_model(tiny_data, distill_opt={'type': 'L1DistillLoss', 'loss_weight': 0})

    g_off, logs_off = grads(gated, exit_exact)
    g_none, _ = grads(no_distill, exit_exact)
    g_ungated, _ = grads(ungated, exit_exact)
    assert logs_off['l_distill_exit2'] == 0
    for name in g_off:
        assert torch.allclose(g_off[name], g_none[name], atol=1e-7), name
    assert any(not torch.allclose(g_ungated[n], g_none[n], atol=1e-7) for n in g_none)  # the test can fail

    g_on, logs_on = grads(gated, teacher_exact)
    g_ungated, _ = grads(ungated, teacher_exact)
    g_none, _ = grads(no_distill, teacher_exact)
    assert logs_on['l_distill_exit2'] > 0
    for name in g_on:
        assert torch.allclose(g_on[name], g_ungated[name], atol=1e-7), name
    assert any(not torch.allclose(g_on[n], g_none[n], atol=1e-7) for n in g_none)


@pytest.mark.parametrize('gate', [True, False])
def test_teacher_gate_blocks_the_exit_outputs_gradient_pixel_by_pixel_in_the_training_step(tiny_data, gate):
    """With only the distillation term on the exit (student_pixel_weight 0), the gradient that optimize_parameters
    sends into the exit's output is zero exactly where the teacher is worse (the gate's mask is 0), and only with
    distill_gate on."""
    model = make_model(tiny_data, distill_gate=gate, student_pixel_weight=0)
    captured = {}
    forward = model.net_g.forward

    def keep_outputs(*args, **kwargs):
        result = forward(*args, **kwargs)
        for depth, out in (result[0] if isinstance(result, tuple) else result).items():
            out.retain_grad()
            captured[depth] = out
        return result

    model.net_g.forward = keep_outputs
    data = batch()
    grads(model, data)
    student, teacher = captured[2], captured[4]
    mask = teacher_better_mask(student.detach(), teacher.detach(), data['gt'])
    assert 0 < mask.mean() < 1
    off = (mask == 0).expand_as(student)
    differ = student != teacher  # (a few values of the fresh network's two heads are equal: L1's gradient is 0 there)
    assert torch.all(student.grad[~off & differ] != 0)
    assert torch.all(student.grad[off] == 0) == gate
