"""sd-eval: the measurement protocol, grey images, records, MACs, plot, and the published bicubic values."""
import glob
import json
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from basicsr.metrics.psnr_ssim import calculate_psnr
from basicsr.utils import bgr2ycbcr
from helpers import SHARED_DATA, smooth_image

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.complexity import count_macs, cpu_latency
from sd_plugin.data.bicubic import imresize
from sd_plugin.evaluation.protocol import Subject, evaluate, measure, rgb2grey, rgb2y
from sd_plugin.evaluation.report import markdown_table
from sd_plugin.export import export
from sd_plugin.tools.eval import main

RECORD_KEYS = {'model', 'exit', 'dataset', 'scale', 'psnr', 'ssim', 'params', 'macs'}


def psnr_by_hand(a, b, border):
    a, b = a[border:-border, border:-border].astype(np.float64), b[border:-border, border:-border].astype(np.float64)
    return 10 * np.log10(255 ** 2 / np.mean((a - b) ** 2))


# ------------------------------------------------------------------------------------------------ protocol


def test_y_is_matlab_rgb2ycbcr_rounded():
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]],
                      np.uint8)
    # MATLAB rgb2ycbcr(uint8): 16, 235, round(16 + 65.481), round(16 + 128.553), round(16 + 24.966), ...
    expected = np.floor(16 + pixels.astype(np.float64) @ [65.481, 128.553, 24.966] / 255 + 0.5)
    assert (rgb2y(pixels) == expected).all()
    assert rgb2y(pixels)[0, :5].tolist() == [16, 235, 81, 145, 41]
    assert rgb2y(pixels).dtype == np.uint8
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    # the same values as BasicSR's bgr2ycbcr on uint8 (which rounds too), up to ties at exactly .5
    diff = rgb2y(img).astype(int) - bgr2ycbcr(img[..., ::-1], y_only=True).astype(int)
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.01


def test_y_protocol_rounds_y_and_crops_border():
    rng = np.random.default_rng(1)
    gt = smooth_image(rng, 40, 36)
    sr = np.clip(gt.astype(int) + rng.integers(-6, 7, gt.shape), 0, 255).astype(np.uint8)
    psnr, ssim = measure(sr, gt, 4)
    assert psnr == pytest.approx(psnr_by_hand(rgb2y(sr), rgb2y(gt), 4), abs=1e-9)
    assert 0 < ssim < 1
    # unrounded Y (BasicSR's validation) gives a slightly different number: the rounding is really applied
    unrounded = calculate_psnr(sr[..., ::-1], gt[..., ::-1], 4, test_y_channel=True)
    assert psnr != pytest.approx(unrounded, abs=1e-6)
    assert measure(sr, gt, 4, 'basicsr-y')[0] == pytest.approx(unrounded, abs=1e-9)
    # only the border differs: infinite PSNR and SSIM 1 once the border is cropped
    framed = gt.copy()
    framed[:4] = 0
    framed[:, -4:] = 255
    assert measure(framed, gt, 4) == (float('inf'), pytest.approx(1.0))
    # RGB: the three channels, not Y
    assert measure(sr, gt, 4, 'rgb')[0] == pytest.approx(psnr_by_hand(sr, gt, 4), abs=1e-9)


def test_grey_images_are_measured_on_grey_values():
    rng = np.random.default_rng(2)
    gt = rng.integers(20, 230, (32, 32), dtype=np.uint8)
    sr = (gt.astype(int) + rng.choice([-3, 3], gt.shape)).astype(np.uint8)
    psnr, _ = measure(sr, gt, 2)
    assert psnr == pytest.approx(10 * np.log10(255 ** 2 / 9), abs=1e-9)  # on grey values: every error is 3
    # expanding to RGB and taking Y would compress the range to 16-235: unrounded, that reads exactly
    # 20 log10(255/219) = 1.32 dB higher (BasicSR's validation); rounded, about that (here 1.13 dB)
    expanded = measure(sr, gt, 2, 'basicsr-y')[0]
    assert expanded - psnr == pytest.approx(20 * np.log10(255 / 219), abs=1e-4)
    assert measure(np.dstack([sr] * 3), np.dstack([gt] * 3), 2)[0] - psnr > 1
    # a model's RGB output for a grey image goes back to grey with the full-range luma, the inverse of replication
    assert (rgb2grey(np.dstack([gt] * 3)) == gt).all()
    assert measure(np.dstack([sr] * 3), gt, 2) == measure(sr, gt, 2)
    colour_cast = np.dstack([sr, sr, sr]).astype(int) + [6, -3, 0]
    grey_of_cast = rgb2grey(np.clip(colour_cast, 0, 255).astype(np.uint8))
    assert measure(np.clip(colour_cast, 0, 255).astype(np.uint8), gt, 2)[0] == pytest.approx(
        psnr_by_hand(grey_of_cast, gt, 2), abs=1e-9)
    # --rgb and --basicsr-y read a grey image as three equal channels, as BasicSR does
    assert measure(sr, gt, 2, 'rgb')[0] == pytest.approx(psnr, abs=1e-9)
    assert measure(sr, gt, 2, 'basicsr-y')[0] == pytest.approx(
        calculate_psnr(np.dstack([sr] * 3), np.dstack([gt] * 3), 2, test_y_channel=True), abs=1e-9)


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    """A tiny benchmark (3 RGB images + 1 grey, x4) in sd-prepare's layout, a random 4-block multi-exit checkpoint
    (exit 2, with params_ema) and its exported exit 2."""
    root = tmp_path_factory.mktemp('bench')
    rng = np.random.default_rng(3)
    hr = root / 'hr'
    hr.mkdir()
    for i, (h, w) in enumerate([(48, 40), (36, 52), (45, 50)]):
        img = smooth_image(rng, h, w).astype(np.float64) + rng.normal(0, 12, (h, w, 3))
        cv2.imwrite(str(hr / f'c{i}.png'), np.clip(img, 0, 255).round().astype(np.uint8))
    cv2.imwrite(str(hr / 'grey.png'), smooth_image(rng, 44, 40)[..., 1])
    data = root / 'datasets'
    try:
        from sd_plugin.tools.prepare import main as prepare
        prepare(['benchmark', '--hr', str(hr), '--name', 'tiny', '--out', str(data / 'tiny'), '--scale', '4'])
    except ImportError:  # the layout by hand
        for sub in ('GTmod4', 'LRbicx4'):
            (data / 'tiny' / sub).mkdir(parents=True)
        for path in hr.iterdir():
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            img = img[:img.shape[0] // 4 * 4, :img.shape[1] // 4 * 4]
            cv2.imwrite(str(data / 'tiny' / 'GTmod4' / path.name), img)
            cv2.imwrite(str(data / 'tiny' / 'LRbicx4' / path.name), imresize(img, 1 / 4))
    assert cv2.imread(str(data / 'tiny' / 'GTmod4' / 'grey.png'), cv2.IMREAD_UNCHANGED).ndim == 2
    torch.manual_seed(0)
    net = SRResNetMultiExit(num_feat=8, num_block=4, upscale=4, exits=[2])
    ema = {k: v + 0.01 * torch.randn_like(v) for k, v in net.state_dict().items()}
    torch.save({'params': net.state_dict(), 'params_ema': ema}, root / 'multi.pth')
    export(str(root / 'multi.pth'), 2, str(root / 'student.pth'))
    return {'root': root, 'data': str(data), 'multi': str(root / 'multi.pth'), 'student': str(root / 'student.pth'),
            'ema': ema}


def test_records_exits_student_and_bicubic(bench):
    records = evaluate([bench['multi'], bench['student']], bench['data'], ['tiny'], progress=False,
                       log=lambda *a: None)
    assert all(RECORD_KEYS <= set(r) for r in records)
    rows = [(r['model'], r['exit'], r['dataset'], r['scale']) for r in records]
    assert rows == [('bicubic', None, 'tiny', 4), ('multi', 2, 'tiny', 4), ('multi', 4, 'tiny', 4),
                    ('student', None, 'tiny', 4)]
    bicubic, exit2, teacher, student = records
    assert bicubic['params'] == 0 and bicubic['macs'] is None
    assert exit2['params'] == student['params'] == sum(p.numel() for p in MSRResNet(3, 3, 8, 2, 4).parameters())
    assert teacher['params'] == sum(p.numel() for p in MSRResNet(3, 3, 8, 4, 4).parameters())  # no exit heads
    assert exit2['macs'] == student['macs'] < teacher['macs']
    assert all(isinstance(r['psnr'], float) and 0 < r['ssim'] < 1 for r in records)
    # the exported student is exit 2 (params_ema by default in both files)
    assert student['psnr'] == pytest.approx(exit2['psnr'], abs=0.01)
    assert student['ssim'] == pytest.approx(exit2['ssim'], abs=1e-3)
    # params_ema is the default; --param-key params selects the other weights
    assert Subject(bench['multi'], 'm').param_key == 'params_ema'
    raw = evaluate([bench['multi']], bench['data'], ['tiny'], param_key='params', progress=False,
                   log=lambda *a: None)
    assert raw[1]['psnr'] != exit2['psnr']
    table = markdown_table(records)
    assert '| multi | 4 (teacher) |' in table and '| bicubic |' in table and 'tiny x4 PSNR / SSIM' in table


def test_cli_json_markdown_plot(bench, capsys):
    out = bench['root']
    main([bench['multi'], '--data', bench['data'], '--sets', 'tiny', '--scale', '4', '--json', str(out / 'r.json'),
          '--plot', str(out / 'p.png'), '--names', 'sd', '--quiet', '--complexity', '--lr-size', '16x12',
          '--repeats', '2', '--warmup', '0', '--threads', '1'])
    printed = capsys.readouterr().out
    records = json.loads((out / 'r.json').read_text())
    assert [(r['model'], r['exit']) for r in records] == [('bicubic', None), ('sd', 2), ('sd', 4)]
    assert all(RECORD_KEYS <= set(r) for r in records)
    assert all(r['threads'] == 1 and r['latency_ms'] > 0 for r in records[1:])
    assert records[1]['lr_size'] == '16x12'
    assert records[1]['macs'] == count_macs(MSRResNet(3, 3, 8, 2, 4), None, (16, 12))
    assert f'{records[1]["psnr"]:.2f} / {records[1]["ssim"]:.4f}' in printed
    assert 'CPU ms (1 threads)' in printed
    with open(out / 'p.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    # RGB protocol gives other numbers on the same images
    main([bench['multi'], '--data', bench['data'], '--sets', 'tiny', '--rgb', '--json', str(out / 'rgb.json'),
          '--quiet'])
    assert json.loads((out / 'rgb.json').read_text())[0]['psnr'] != records[0]['psnr']


def test_one_line_errors(bench, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([bench['multi'], '--data', bench['data'], '--sets', 'tiny', 'Set7', '--quiet'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'Set7' in err and osp.join('Set7', 'GTmod4') in err
    with pytest.raises(SystemExit):
        main([bench['multi'], '--data', bench['data'], '--sets', 'tiny', '--scale', '2', '--quiet'])
    assert 'an x4 network, but --scale 2' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([bench['multi'], '--param-key', 'nope', '--data', bench['data'], '--sets', 'tiny'])
    assert "no param_key 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['--data', bench['data'], '--sets', 'tiny'])
    assert '--scale is required' in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ complexity


def test_macs_match_closed_form_for_msrresnet_x4():
    """Per LR pixel at x4, 64 features: first conv 3*64*9 = 1,728; a block 2 * 64*64*9 = 73,728; the head 1,354,752
    (upconv1 64->256 on the LR grid: 147,456; upconv2 64->256 on 2x2 pixels: 589,824; conv_hr 64->64 on 4x4:
    589,824; conv_last 64->3 on 4x4: 27,648). FlopCounterMode counts convolutions only (the only entry of its table
    is aten.convolution): the bilinear skip, pixel shuffle, LeakyReLU, biases and additions are not counted, so
    the count equals the closed form exactly. Counted at the default 320x180 LR on meta tensors (no compute)."""
    from torch.utils.flop_counter import FlopCounterMode
    per_pixel = 1_728 + 8 * 73_728 + 1_354_752
    stock = MSRResNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=8, upscale=4)
    assert count_macs(stock, None, (320, 180)) == 320 * 180 * per_pixel  # 12.3 G
    assert count_macs(SRResNetMultiExit(num_feat=64, num_block=8), 8, (13, 7)) == 13 * 7 * per_pixel
    with FlopCounterMode(display=False) as counter:
        stock(torch.rand(1, 3, 6, 5))
    assert [str(op) for op in counter.get_flop_counts()['Global']] == ['aten.convolution']


@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_exit_k_costs_an_srresnet_k(upscale):
    multi = SRResNetMultiExit(num_feat=64, num_block=16, upscale=upscale, exits=[4, 8])
    size = (320, 180)
    for k in (4, 8):
        stock_k = MSRResNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=k, upscale=upscale)
        assert count_macs(multi, k, size) == count_macs(stock_k, None, size)
        deployed = SRResNetMultiExit(num_feat=64, num_block=16, upscale=upscale, exits=[4, 8], deploy_exit=k)
        assert count_macs(deployed, None, size) == count_macs(stock_k, None, size)
    teacher = count_macs(multi, 16, size)
    assert teacher == count_macs(MSRResNet(3, 3, 64, 16, upscale), None, size)
    assert count_macs(multi, 4, size) < count_macs(multi, 8, size) < teacher


def test_latency_is_positive_and_exit_params_are_msrresnet_k(tmp_path):
    net = SRResNetMultiExit(num_feat=8, num_block=4, exits=[1, 2])
    torch.save({'params': net.state_dict()}, tmp_path / 'm.pth')
    subject = Subject(str(tmp_path / 'm.pth'), 'm')
    for k in (1, 2, 4):
        assert subject.params(k) == sum(p.numel() for p in MSRResNet(3, 3, 8, k, 4).parameters())
    assert cpu_latency(net, 2, (8, 6), warmup=0, repeats=2) > 0


# ------------------------------------------------------------------------------------------------ real data


PUBLISHED = {  # scale: {set: (PSNR, SSIM)}, bicubic, Y channel; and the PSNR tolerance (SSIM: 0.001)
    4: ({'Set5': (28.42, 0.8104), 'Set14': (26.00, 0.7027)}, 0.01),
    3: ({'Set5': (30.39, 0.8682), 'Set14': (27.55, 0.7742)}, 0.03),
    2: ({'Set5': (33.66, 0.9299), 'Set14': (30.24, 0.8688)}, 0.03),
}


@pytest.fixture(scope='module')
def real_benchmarks(tmp_path_factory):
    if not all(glob.glob(osp.join(SHARED_DATA, s, 'HR', '*.png')) for s in ('Set5', 'Set14')):
        pytest.skip(f'{SHARED_DATA}/Set5, Set14 not available')
    from sd_plugin.tools.prepare import main as prepare
    data = tmp_path_factory.mktemp('real') / 'datasets'
    for name in ('Set5', 'Set14'):
        prepare(['benchmark', '--hr', osp.join(SHARED_DATA, name, 'HR'), '--name', name, '--out',
                 str(data / name), '--scale', '2', '3', '4'])
    return str(data)


@pytest.mark.parametrize('scale', [4, 3, 2])
def test_bicubic_reproduces_published_values(real_benchmarks, scale):
    published, tolerance = PUBLISHED[scale]
    records = evaluate([], real_benchmarks, ['Set5', 'Set14'], scale, progress=False, log=lambda *a: None)
    for r in records:
        psnr, ssim = published[r['dataset']]
        print(f'\nbicubic x{scale} {r["dataset"]}: {r["psnr"]:.4f} dB / {r["ssim"]:.4f} '
              f'(published {psnr:.2f} / {ssim:.4f})', end='')
        assert r['psnr'] == pytest.approx(psnr, abs=tolerance + 1e-9)
        assert r['ssim'] == pytest.approx(ssim, abs=0.001)
