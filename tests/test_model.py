import pytest
import torch
from basicsr.models import build_model
from helpers import model_options

from sd_plugin.errors import ConfigError


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {'lq': torch.rand(2, 3, 8, 8, generator=g), 'gt': torch.rand(2, 3, 32, 32, generator=g)}


def test_one_step_changes_weights_and_logs_every_term(tiny_data):
    model = build_model(model_options(tiny_data))
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert list(model.get_current_log()) == ['l_pix', 'l_pix_exit2', 'l_distill_exit2']
    after = model.net_g.state_dict()
    for key in ('conv_first.weight', 'body.0.conv1.weight', 'exit_heads.2.conv_last.weight', 'conv_last.weight'):
        assert not torch.equal(before[key], after[key]), key


def test_logged_terms_are_the_weighted_losses(tiny_data):
    model = build_model(model_options(tiny_data))
    data = batch()
    with torch.no_grad():
        out = model.net_g(data['lq'], all_exits=True)
    model.feed_data(data)
    model.optimize_parameters(1)
    log = model.get_current_log()
    l1 = torch.nn.functional.l1_loss
    assert log['l_pix'] == pytest.approx(l1(out[4], data['gt']).item(), rel=1e-5)
    assert log['l_pix_exit2'] == pytest.approx(0.9 * l1(out[2], data['gt']).item(), rel=1e-5)
    assert log['l_distill_exit2'] == pytest.approx(0.1 * l1(out[2], out[4]).item(), rel=1e-5)


def test_distill_term_alone_gives_the_teacher_head_exactly_zero_gradient(tiny_data):
    opt = model_options(tiny_data, pixel_opt={'type': 'L1Loss', 'loss_weight': 0.0},
                        self_distill={'student_pixel_weight': 0.0})
    model = build_model(opt)
    model.feed_data(batch())
    model.optimize_parameters(1)
    grads = {n: p.grad for n, p in model.net_g.named_parameters()}
    assert grads['exit_heads.2.conv_last.weight'].abs().sum() > 0
    assert grads['body.0.conv1.weight'].abs().sum() > 0
    for name in ('conv_last.weight', 'conv_hr.weight', 'upconv1.weight', 'body.3.conv2.weight'):
        assert grads[name] is None or not grads[name].any(), name


def test_ema_network_is_what_test_uses(tiny_data):
    model = build_model(model_options(tiny_data, ema_decay=0.5))
    for step in range(1, 3):
        model.feed_data(batch(step))
        model.optimize_parameters(step)
    model.feed_data(batch(9))
    model.test()
    with torch.no_grad():
        expected = model.net_g_ema(model.lq, all_exits=True)
        live = model.net_g(model.lq, all_exits=True)
    assert set(model.outputs) == {2, 4}
    for depth in (2, 4):
        assert torch.equal(model.outputs[depth], expected[depth])
        assert not torch.equal(model.outputs[depth], live[depth])
    assert model.net_g.training  # test() leaves the training network in training mode


@pytest.mark.parametrize('overrides, match', [
    ({'self_distill': {'student_pixel_weight': -0.1}}, r'train\.self_distill\.student_pixel_weight=-0\.1'),
    ({'self_distill': {'student_pixel_weight': 'high'}}, r'student_pixel_weight=.high.'),
    ({'self_distill': {'distill_opt': {'loss_weight': -1}}}, r'distill_opt\.loss_weight=-1'),
    ({'pixel_opt': {'type': 'L1Loss', 'loss_weight': -1}}, r'train\.pixel_opt\.loss_weight=-1'),
    ({'self_distill': {'student_pixel_wieght': 0.5}}, r"did you mean 'student_pixel_weight'"),
])
def test_bad_weights_name_the_key(tiny_data, overrides, match):
    with pytest.raises(ConfigError, match=match):
        build_model(model_options(tiny_data, **overrides))


def test_distill_settings_without_exits_are_refused(tiny_data):
    opt = model_options(tiny_data)
    opt['network_g']['exits'] = []
    with pytest.raises(ConfigError, match=r'train\.self_distill is set but network_g\.exits is empty'):
        build_model(opt)
