import torch

from sd_plugin.archs import SRResNetMultiExit
from sd_plugin.losses import L1DistillLoss


def grads_after_distill_loss(detach_teacher):
    torch.manual_seed(0)
    net = SRResNetMultiExit(num_feat=8, num_block=4, exits=[2])
    outputs = net(torch.rand(2, 3, 8, 8), all_exits=True)
    L1DistillLoss(loss_weight=0.1, detach_teacher=detach_teacher)(outputs[2], outputs[4]).backward()
    return {name: p.grad for name, p in net.named_parameters()}


def nonzero(grad):
    return grad is not None and grad.abs().sum() > 0


def test_distill_term_trains_the_student_and_leaves_the_teacher_alone():
    grads = grads_after_distill_loss(detach_teacher=True)
    assert nonzero(grads['exit_heads.2.conv_last.weight'])  # the exit head
    assert nonzero(grads['body.0.conv1.weight']) and nonzero(grads['conv_first.weight'])  # the shared trunk
    teacher_only = [n for n in grads if n.startswith(('upconv', 'conv_hr', 'conv_last', 'body.2', 'body.3'))]
    assert teacher_only
    for name in teacher_only:
        assert grads[name] is None or not grads[name].any(), name


def test_without_detach_the_distill_term_reaches_the_teacher_head():
    grads = grads_after_distill_loss(detach_teacher=False)
    assert nonzero(grads['conv_last.weight']) and nonzero(grads['body.3.conv1.weight'])


def test_l1_distill_loss_follows_l1loss_conventions():
    a, b = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert L1DistillLoss(loss_weight=0.5)(a, b).item() == 0.5
    assert L1DistillLoss(reduction='sum')(a, b).item() == 48
    assert L1DistillLoss(reduction='none')(a, b).shape == a.shape
