"""SelfDistillSRModel's speed options (train.channels_last, train.autocast, train.compile): off by default, each
tracks the fp32 loss curve, and checkpoints saved under each load strictly into the plain model and, exported, into
stock MSRResNet.

Loss-curve tolerance: every one of the 50 per-step total losses (sum of the logged terms) within 2 % (relative) of
the fp32 run's loss at the same step, and the final loss too. Why 2 %: on this tiny problem (fixed batch, Adam 1e-3,
a 16-feature 4-block net) the loss falls by ~13 % in 50 steps, and fp32 runs that only reorder floating-point sums
(channels_last, compile) already drift apart by up to ~0.6 % by step 50 as Adam amplifies rounding differences; bf16
autocast drifts by ~0.9 %. 2 % leaves ~2x headroom over that and stays well below the 13 % the curve moves, so an
option that changed what is trained (a lost loss term, a head without gradient, a wrong GradScaler step) fails.

The compile case builds one tiny graph with inductor (C++ on CPU, gcc): ~20-40 s on 2 busy cores, less when the
inductor cache in /tmp is warm. Tests run with 1 torch thread: tiny convolutions are many times slower with 2 OpenMP
threads on 2 shared cores.
"""
import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from basicsr.models import build_model
from helpers import model_options
from torch.nn import functional as F

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.checkpoint import load_checkpoint
from sd_plugin.errors import ConfigError, NonFiniteLossError
from sd_plugin.export import export

STEPS = 50
TOLERANCE = 0.02  # relative, per step and final; see the module docstring
OPTIONS = {
    'fp32': {},
    'channels_last': {'channels_last': True},
    'bf16': {'autocast': 'bf16'},
    'compile': {'compile': True},
}
ARCH = dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_block=4, upscale=4, exits=[2])


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fixed_batch(device='cpu'):
    """4 random 8x8 LR images; GT = their nearest-neighbour x4 upsampling, a target the network can learn."""
    lq = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return {'lq': lq.to(device), 'gt': F.interpolate(lq, scale_factor=4, mode='nearest').to(device)}


def options(tiny_data, tmp_path, device='cpu', **overrides):
    opt = model_options(tiny_data, ema_decay=0.9, **overrides)
    opt['network_g'].update(num_feat=ARCH['num_feat'])
    opt['train']['optim_g']['lr'] = 1e-3
    opt['num_gpu'] = 1 if device == 'cuda' else 0
    opt['path'].update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'training_states'))
    return opt


def train(tiny_data, tmp_path, device='cpu', **overrides):
    """(model, [total loss per step]) after STEPS steps from the same initial weights on the same batch."""
    torch.manual_seed(0)
    model = build_model(options(tiny_data, tmp_path, device, **overrides))
    batch, losses = fixed_batch(device), []
    for step in range(1, STEPS + 1):
        model.feed_data(batch)
        model.optimize_parameters(step)
        losses.append(sum(model.get_current_log().values()))
    return model, losses


@pytest.fixture(scope='module')
def runs(tiny_data, tmp_path_factory):
    """{option: (model, losses)}: one 50-step run per option, shared by the curve and the checkpoint tests."""
    return {name: train(tiny_data, tmp_path_factory.mktemp(name), **over) for name, over in OPTIONS.items()}


def assert_tracks(losses, reference):
    deviation = [abs(a - b) / b for a, b in zip(losses, reference)]
    worst = max(range(len(deviation)), key=deviation.__getitem__)
    assert deviation[worst] <= TOLERANCE, (f'step {worst + 1}: loss {losses[worst]:.5f} vs fp32 '
                                           f'{reference[worst]:.5f} ({100 * deviation[worst]:.2f} % > '
                                           f'{100 * TOLERANCE} %)')
    assert reference[-1] < 0.95 * reference[0], 'the fp32 run did not learn: the comparison would mean nothing'


def test_defaults_change_nothing(runs):
    model = runs['fp32'][0]
    assert model.speed == {'channels_last': False, 'compile': False, 'autocast': None}
    assert model.net_g_train is model.net_g and model.grad_scaler is None
    assert model.net_g.conv_first.weight.is_contiguous()


@pytest.mark.parametrize('name', ['channels_last', 'bf16', 'compile'])
def test_option_tracks_the_fp32_loss_curve(runs, name):
    assert_tracks(runs[name][1], runs['fp32'][1])


def test_options_do_what_they_say(runs):
    assert runs['channels_last'][0].net_g.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    assert runs['channels_last'][0].net_g_ema.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    assert runs['compile'][0].net_g_train is not runs['compile'][0].net_g  # the compiled module trains
    assert runs['bf16'][0].autocast().fast_dtype == torch.bfloat16


@pytest.mark.parametrize('name', list(OPTIONS))
def test_checkpoint_loads_strictly_into_plain_and_exported_models(runs, name, tmp_path):
    model = runs[name][0]
    model.save(0, STEPS)
    ckpt_path = f'{model.opt["path"]["models"]}/net_g_{STEPS}.pth'
    ckpt = load_checkpoint(ckpt_path)
    assert set(ckpt) == {'params', 'params_ema'}
    for key in ('params', 'params_ema'):
        assert not any('_orig_mod' in k for k in ckpt[key]), key
        assert list(ckpt[key]) == list(runs['fp32'][0].net_g.state_dict())
    plain = SRResNetMultiExit(**ARCH).eval()
    plain.load_state_dict(ckpt['params_ema'], strict=True)
    assert torch.equal(plain.conv_first.weight, model.net_g_ema.conv_first.weight)

    student_arch = export(ckpt_path, 2, str(tmp_path / 'student.pth'))
    student = MSRResNet(**{k: v for k, v in student_arch.items() if k != 'type'}).eval()
    student.load_state_dict(load_checkpoint(str(tmp_path / 'student.pth'))['params_ema'], strict=True)
    x = fixed_batch()['lq']
    with torch.no_grad():
        assert (student(x) - plain.forward_exits(x, [2])[2]).abs().max() < 1e-5


def test_validation_uses_the_plain_ema_network_under_compile(runs):
    model = runs['compile'][0]
    model.feed_data(fixed_batch())
    model.test()
    with torch.no_grad():
        expected = model.net_g_ema(model.lq, all_exits=True)
    for depth in (2, 4):
        assert torch.equal(model.outputs[depth], expected[depth])


@pytest.mark.parametrize('name', list(OPTIONS))
def test_nonfinite_guard_still_skips_then_stops(runs, name):
    """Runs last on the shared models: a NaN batch is skipped while allowed, then stops the run; no update."""
    model = runs[name][0]
    model.nonfinite_skips_left = 1
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    batch = fixed_batch()
    batch['lq'][0, 0, 0, 0] = float('nan')
    model.feed_data(batch)
    model.optimize_parameters(STEPS + 1)
    with pytest.raises(NonFiniteLossError, match=f'iteration {STEPS + 2}: non-finite loss l_pix'):
        model.optimize_parameters(STEPS + 2)
    assert all(torch.equal(before[k], v) for k, v in model.net_g.state_dict().items())


@pytest.mark.parametrize('overrides, match', [
    ({'autocast': 'fp8'}, r"^train\.autocast='fp8': must be one of null, bf16, fp16$"),
    ({'autocast': 'fp16'}, r"^train\.autocast='fp16': needs CUDA \(this run is on cpu\); use bf16 without CUDA$"),
    ({'channels_last': 'yes'}, r"^train\.channels_last='yes': must be true or false$"),
    ({'compile': 1}, r'^train\.compile=1: must be true or false$'),
])
def test_bad_option_values_name_the_key(tiny_data, tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        build_model(options(tiny_data, tmp_path, **overrides))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='fp16 autocast with GradScaler is CUDA-only')
def test_fp16_on_cuda_tracks_fp32(tiny_data, tmp_path):
    reference = train(tiny_data, tmp_path / 'fp32', 'cuda')[1]
    model, losses = train(tiny_data, tmp_path / 'fp16', 'cuda', autocast='fp16')
    assert model.grad_scaler is not None
    assert_tracks(losses, reference)
