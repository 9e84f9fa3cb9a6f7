"""Speed options of the inference path (sd_plugin.inference, what sd-eval and sd-upscale run): channels_last (the CPU
default) gives the fp32 output within 1e-5, bf16 moves PSNR by a few thousandths of a dB at most, thread choices
are restored. Tiny networks, one thread: a few seconds."""
import numpy as np
import pytest
import torch
from helpers import smooth_image

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.data.bicubic import imresize
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.protocol import evaluate, measure, model_sr
from sd_plugin.inference import (
    DEFAULT_THREADS,
    as_channels_last,
    choose_threads,
    run_network,
    torch_threads,
    upscale_array,
)
from sd_plugin.tools.eval import parse_threads

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def net():
    """A random SRResNetMultiExit (16 features, 4 blocks, exit at 2, x4) with PyTorch's default convolution
    initialisation (BasicSR's x0.1 leaves it within 1e-4 of its bilinear skip, where no precision shows)."""
    torch.manual_seed(0)
    net = SRResNetMultiExit(num_feat=16, num_block=4, upscale=4, exits=[2])
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
            with torch.no_grad():
                module.weight.mul_(0.5)  # outputs mostly in [0, 1], as a trained network's
    return net.eval().requires_grad_(False)


def test_as_channels_last_gives_canonical_strides():
    """A permuted HWC image (what model_sr and upscale_array feed) passes PyTorch's channels_last check with batch
    stride 3, and convolutions then run in NCHW: as_channels_last must copy it to the canonical strides."""
    hwc = torch.from_numpy(np.random.default_rng(0).random((9, 7, 3), dtype=np.float32)).permute(2, 0, 1)[None]
    assert hwc.is_contiguous(memory_format=torch.channels_last) and hwc.stride(0) == 3
    canonical = as_channels_last(hwc)
    assert canonical.stride() == (9 * 7 * 3, 1, 7 * 3, 3) and torch.equal(canonical, hwc)
    assert as_channels_last(canonical) is canonical
    grey = torch.rand(9, 7).expand(1, 3, 9, 7)  # upscale_array's grey input
    assert as_channels_last(grey).stride() == (9 * 7 * 3, 1, 7 * 3, 3) and torch.equal(as_channels_last(grey), grey)


def test_channels_last_is_the_cpu_default_and_equals_fp32(net):
    x = torch.rand(29, 23, 3).permute(2, 0, 1)[None]  # as model_sr builds its input from an HWC image
    with torch.inference_mode():
        reference = net.forward_exits(x, [2, 4])  # what run_network ran before: NCHW convolutions
    assert reference[4].is_contiguous()
    default = run_network(net, x, [2, 4])
    plain = run_network(net, x, [2, 4], channels_last=False)
    assert default[4].is_contiguous(memory_format=torch.channels_last) and plain[4].is_contiguous()
    assert not net.conv_first.weight.is_contiguous(memory_format=torch.channels_last)  # the network is left alone
    for d in (2, 4):
        assert (default[d] - reference[d]).abs().max() <= 1e-5
        assert (plain[d] - reference[d]).abs().max() == 0
    # tiled channels_last still equals untiled
    assert (run_network(net, x, 4, tile=10) - reference[4]).abs().max() <= 1e-5


def test_bf16_changes_psnr_by_little(net):
    rng = np.random.default_rng(0)
    gt = smooth_image(rng, 96, 80)[..., ::-1].copy()  # RGB
    lr = imresize(gt, 1 / 4)
    fp32, bf16 = model_sr(net, lr, [2, 4]), model_sr(net, lr, [2, 4], 'bf16')
    for d in (2, 4):
        assert np.abs(fp32[d].astype(int) - bf16[d].astype(int)).max() > 0  # bf16 did run
        psnr32, psnr16 = measure(fp32[d], gt, 4)[0], measure(bf16[d], gt, 4)[0]
        assert abs(psnr16 - psnr32) < 0.05, (d, psnr32, psnr16)
    # fp32 is the default and exact
    again = model_sr(net, lr, [2, 4], 'fp32')
    assert all((again[d] == fp32[d]).all() for d in (2, 4))


def test_upscale_array_options(net):
    img = (np.random.default_rng(1).random((21, 17, 3)) * 255).astype(np.uint8)
    base = upscale_array(net, img, channels_last=False)
    assert (upscale_array(net, img) == base).mean() > 0.999  # channels_last: rounding flips at most a few values
    assert np.abs(upscale_array(net, img, precision='bf16').astype(int) - base).max() <= 8
    assert (upscale_array(net, img, channels_last=False, threads=1) == base).all()


def test_threads_are_chosen_and_restored():
    assert torch.get_num_threads() == 1
    with torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    with torch_threads(None):
        assert torch.get_num_threads() == 1
    assert 1 <= choose_threads('auto', interval=0.05) <= DEFAULT_THREADS
    assert choose_threads(None) == 1 and choose_threads(3) == 3
    for bad in (0, -1, 'many', 1.5):
        with pytest.raises(ConfigError):
            choose_threads(bad)
    assert parse_threads('auto') == 'auto' and parse_threads('2') == 2
    for bad in ('0', 'x'):
        with pytest.raises(ConfigError, match='--threads'):
            parse_threads(bad)


def test_bad_precision_is_one_line(net):
    with pytest.raises(ConfigError, match='fp32 or bf16'):
        evaluate([], precision='fp16')
    with pytest.raises(ConfigError, match='needs --device cuda'):
        run_network(net, torch.rand(1, 3, 8, 8), precision='fp16')
