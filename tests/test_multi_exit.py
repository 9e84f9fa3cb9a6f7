"""MultiExitSR (issue 16): every adapted arch, tiny, x4: equal to the stock arch without exits, exported students
equal to their exits, gradients of the distillation term, a short training validated per exit."""
import copy

import pytest
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr.utils.registry import ARCH_REGISTRY
from helpers import model_options

from sd_plugin.archs.multi_exit_arch import MultiExitSR, build_stock, options_from_state_dict, student_keys
from sd_plugin.errors import ConfigError
from sd_plugin.losses import L1DistillLoss
from sd_plugin.tools.export import main as export_main

# Tiny x4 instances, 3 units each (SwinIR: 8 x 8 LR patches, window 4).
ARCHS = {
    'MSRResNet': dict(type='MSRResNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, upscale=4),
    'EDSR': dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, upscale=4),
    'RCAN': dict(type='RCAN', num_in_ch=3, num_out_ch=3, num_feat=16, num_group=3, num_block=1, squeeze_factor=4,
                 upscale=4),
    'RRDBNet': dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, num_grow_ch=4, scale=4),
    'SwinIR': dict(type='SwinIR', img_size=8, window_size=4, embed_dim=12, depths=[1, 1, 1], num_heads=[2, 2, 2],
                   mlp_ratio=2, upscale=4, upsampler='pixelshuffle', drop_path_rate=0.0),
    # BasicSR registers it as SRVGGNetCompact_basicsr: its suffix fallback must work here
    'SRVGGNetCompact': dict(type='SRVGGNetCompact', num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=4),
}
TAIL = {name: 'conv_last.weight' for name in ARCHS}
UNITS = {'SwinIR': lambda net: len(net.layers), 'SRVGGNetCompact': lambda net: net.num_conv}  # else len(net.body)


def lively(net, seed=0):
    """``net`` with every parameter nudged by seeded noise, so no head is zero-initialised or trivially equal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return net


@pytest.mark.parametrize('name', ARCHS)
def test_without_exits_it_is_the_stock_arch(name):
    torch.manual_seed(0)
    wrapped = lively(MultiExitSR(arch=ARCHS[name], exits=[])).eval()
    stock = build_stock(ARCHS[name]).eval()
    assert list(wrapped.state_dict()) == list(stock.state_dict())
    stock.load_state_dict(wrapped.state_dict(), strict=True)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(wrapped(x), stock(x), atol=1e-6)
    other = lively(build_stock(ARCHS[name]), seed=1).eval()
    wrapped.load_state_dict(other.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(wrapped(x), other(x), atol=1e-6)


@pytest.mark.parametrize('name', ARCHS)
def test_exported_student_is_the_stock_arch_at_its_depth_and_equals_the_exit(name, tmp_path, capsys):
    torch.manual_seed(0)
    net = lively(MultiExitSR(arch=ARCHS[name], exits=[1, 2])).eval()
    assert options_from_state_dict(net.state_dict()) == {'arch': net.arch_opt, 'exits': [1, 2]}
    torch.save({'params': net.state_dict()}, tmp_path / 'multi.pth')
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        outputs = net(x, all_exits=True)
    for depth in (1, 2, 3):
        out = tmp_path / f'student{depth}.pth'
        export_main([str(tmp_path / 'multi.pth'), '--exit', str(depth), '--out', str(out)])
        assert 'network_g:' in capsys.readouterr().out
        saved = torch.load(out)
        arch = saved['sd_plugin']['arch']
        assert arch['type'] == name
        student = build_stock(arch).eval()
        student.load_state_dict(saved['params'], strict=True)
        assert UNITS.get(name, lambda net: len(net.body))(student) == depth
        with torch.no_grad():
            assert (student(x) - outputs[depth]).abs().max() < 1e-5, depth


@pytest.mark.parametrize('name', ARCHS)
def test_distill_term_reaches_the_exit_and_the_trunk_before_it_never_the_teacher(name):
    torch.manual_seed(0)
    net = MultiExitSR(arch=ARCHS[name], exits=[1])
    outputs = net(torch.rand(2, 3, 8, 8), all_exits=True)
    L1DistillLoss(loss_weight=0.1)(outputs[1], outputs[3]).backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    exit_path = set(student_keys(net.adapter, net.state_dict(), 1, 3).values())  # the stem, unit 1, head 1
    shared = [n for n in grads if n in exit_path and not n.startswith('exit_heads.')]  # the stem and unit 1

    def nonzero(names):
        return [n for n in names if grads[n] is not None and grads[n].abs().sum() > 0]

    assert nonzero([f'exit_heads.1.{TAIL[name]}'])
    assert shared and nonzero(shared) == shared
    teacher_only = [n for n in grads if n not in exit_path and not n.startswith('exit_heads.')]
    assert teacher_only and not nonzero(teacher_only)


def val_loader(data):
    opt = {'name': 'tinyval', 'type': 'PairedImageDataset', 'dataroot_gt': data['val'][0],
           'dataroot_lq': data['val'][1], 'io_backend': {'type': 'disk'}, 'phase': 'val', 'scale': 4}
    return build_dataloader(build_dataset(opt), opt, num_gpu=0, dist=False)


@pytest.mark.parametrize('name', ARCHS)
def test_a_few_training_steps_validate_every_exit(name, tiny_data):
    opt = model_options(tiny_data)
    opt['network_g'] = {'type': 'MultiExitSR', 'arch': copy.deepcopy(ARCHS[name]), 'exits': [1]}
    model = build_model(opt)
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    for step in (1, 2):
        model.feed_data({'lq': torch.rand(2, 3, 8, 8, generator=g), 'gt': torch.rand(2, 3, 32, 32, generator=g)})
        model.optimize_parameters(step)
    assert list(model.get_current_log()) == ['l_pix', 'l_pix_exit1', 'l_distill_exit1']
    after = model.net_g.state_dict()
    assert not torch.equal(before['exit_heads.1.conv_last.weight'], after['exit_heads.1.conv_last.weight'])
    model.validation(val_loader(tiny_data), 2, None, False)
    assert set(model.metric_results) == {'psnr', 'psnr_exit1'}
    assert all(v > 0 for v in model.metric_results.values())


def test_feature_distillation_on_an_arch_without_head_features_is_one_line():
    arch = dict(ARCHS['SwinIR'], upsampler='pixelshuffledirect')
    net = MultiExitSR(arch=arch, exits=[1])
    outputs, features = net(torch.rand(1, 3, 8, 8), all_exits=True, features=True)
    assert set(outputs) == {1, 3}
    with pytest.raises(ConfigError, match='feature_distill_opt: the SwinIR adapter gives no head features'):
        features[1]


@pytest.mark.parametrize('arch, exits, message', [
    (dict(type='RIDNet'), [1], "arch.type='RIDNet': MultiExitSR has no adapter for it; it knows "
     'EDSR, (FlatNet, )?MSRResNet, RCAN, RRDBNet, SRVGGNetCompact, SwinIR.*docs/archs.md'),  # FlatNet: a user's, when
    #                                                                          tests/test_user_modules.py ran first
    (dict(type='NoSuchNet'), [1], "arch.type='NoSuchNet': MultiExitSR has no adapter"),
    (ARCHS['EDSR'], [3], r'exit 3 must be an integer in \[1, 2\] \(EDSR has 3 blocks\)'),
    (ARCHS['RCAN'], [0], r'exit 0 must be an integer in \[1, 2\] \(RCAN has 3 residual groups\)'),
    (dict(ARCHS['SwinIR'], num_heads=[2, 2]), [1], r'num_heads=\[2, 2\] and depths=\[1, 1, 1\] have unequal lengths'),
    (dict(ARCHS['EDSR'], num_blok=4), [1], "network_g.arch.num_blok: not an argument of EDSR; did you mean "
     "'num_block'"),
    (dict(ARCHS['SwinIR'], dephts=[1]), [1], 'network_g.arch.dephts: not an argument of SwinIR'),
    ('EDSR', [1], 'must be the stock network_g mapping'),
    (ARCHS['EDSR'], 2, r'network_g.exits=2: must be a list of depths'),
    (dict(type='EDSR', num_feat=8), [1], 'network_g.arch.num_in_ch: missing; EDSR has no default for it'),
    (dict(ARCHS['EDSR'], upscale=5), [1], r'EDSR cannot be built with .* \(ValueError: scale 5 is not supported'),
])
def test_bad_wrapper_options_are_one_line(arch, exits, message):
    with pytest.raises(ConfigError, match=message):
        MultiExitSR(arch=arch, exits=exits)


@pytest.mark.parametrize('name', ['MSRResNet', 'EDSR', 'RRDBNet', 'SRVGGNetCompact'])
def test_receptive_field_holds_the_gradient_support(name):
    """Only input pixels within ``receptive_field`` of an output pixel's LR position reach it."""
    torch.manual_seed(0)
    for depth in (1,) if name == 'RRDBNet' else (1, 3):  # RRDBNet's field is 15 px per unit: kept small
        net = MultiExitSR(arch=ARCHS[name], exits=[1]).eval()
        radius = net.adapter.receptive_field(net.stock, depth)
        x = torch.rand(1, 3, 2 * radius + 9, 2 * radius + 9, requires_grad=True)
        out = net.forward_exits(x, [depth])[depth]
        c = x.shape[2] // 2
        out[0, :, 4 * c:4 * c + 4, 4 * c:4 * c + 4].sum().backward()
        rows, cols = (x.grad.abs().sum((0, 1)) > 0).nonzero(as_tuple=True)
        assert rows.min() >= c - radius and rows.max() <= c + radius
        assert cols.min() >= c - radius and cols.max() <= c + radius


def test_arch_registry_knows_the_wrapper():
    assert ARCH_REGISTRY.get('MultiExitSR') is MultiExitSR


@pytest.mark.parametrize('variant', [
    {'distill_start_iter': 1, 'distill_ramp_iters': 2}, {'distill_gate': True}, {'trunk_grad_scale': 0.0},
    {'feature_distill_opt': {'type': 'L1DistillLoss', 'loss_weight': 0.1}}])
def test_every_self_distill_variant_trains_a_wrapped_arch(variant, tiny_data):
    opt = model_options(tiny_data, self_distill=variant)
    opt['network_g'] = {'type': 'MultiExitSR', 'arch': copy.deepcopy(ARCHS['RRDBNet']), 'exits': [1]}
    model = build_model(opt)
    g = torch.Generator().manual_seed(0)
    for step in (1, 2):
        model.feed_data({'lq': torch.rand(2, 3, 8, 8, generator=g), 'gt': torch.rand(2, 3, 32, 32, generator=g)})
        model.optimize_parameters(step)
    log = model.get_current_log()
    assert log['l_distill_exit1'] > 0 and ('feature_distill_opt' not in variant or log['l_feat_exit1'] > 0)


def test_onnx_export_of_a_wrapped_student_matches_pytorch(tmp_path):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    torch.save({'params': MultiExitSR(arch=ARCHS['EDSR'], exits=[1]).state_dict()}, tmp_path / 'multi.pth')
    export_main([str(tmp_path / 'multi.pth'), '--exit', '1', '--out', str(tmp_path / 's.pth'), '--onnx',
                 str(tmp_path / 's.onnx')])
    assert (tmp_path / 's.onnx').stat().st_size > 0  # export_onnx checked onnxruntime against PyTorch to 1e-4


def test_deploy_exit_makes_plain_forward_the_student_and_loads_the_same_weights():
    torch.manual_seed(0)
    net = lively(MultiExitSR(arch=ARCHS['RCAN'], exits=[1, 2])).eval()
    deployed = MultiExitSR(arch=ARCHS['RCAN'], exits=[1, 2], deploy_exit=2).eval()
    deployed.load_state_dict(net.state_dict(), strict=True)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(deployed(x), net(x, all_exits=True)[2])
    with pytest.raises(ConfigError, match=r'deploy_exit=5: must be one of exits \[1, 2\] or the teacher depth 3'):
        MultiExitSR(arch=ARCHS['RCAN'], exits=[1, 2], deploy_exit=5)
