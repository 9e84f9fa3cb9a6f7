"""sd-eval's JSON records what the numbers were measured with (precision, threads) and keeps PSNR / SSIM at full
precision; only the markdown table rounds them."""
import json

import cv2
import numpy as np
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from helpers import smooth_image

from sd_plugin.data.bicubic import imresize
from sd_plugin.tools.eval import main


def tiny_benchmark(root):
    """DATA/tiny/GTmod4 and LRbicx4 with two 32 x 32 images."""
    rng = np.random.default_rng(0)
    for sub in ('GTmod4', 'LRbicx4'):
        (root / 'tiny' / sub).mkdir(parents=True)
    for i in range(2):
        gt = np.clip(smooth_image(rng, 32, 32).astype(np.float64) + rng.normal(0, 10, (32, 32, 3)), 0, 255)
        gt = gt.round().astype(np.uint8)
        cv2.imwrite(str(root / 'tiny' / 'GTmod4' / f'{i}.png'), gt)
        cv2.imwrite(str(root / 'tiny' / 'LRbicx4' / f'{i}.png'), imresize(gt, 1 / 4))
    return str(root)


def test_json_records_precision_threads_and_unrounded_metrics(tmp_path, capsys):
    data = tiny_benchmark(tmp_path / 'data')
    torch.manual_seed(0)
    torch.save({'params': MSRResNet(num_feat=8, num_block=2, upscale=4).state_dict()}, tmp_path / 'net.pth')
    threads = torch.get_num_threads()
    try:
        main([str(tmp_path / 'net.pth'), '--data', data, '--sets', 'tiny', '--json', str(tmp_path / 'r.json'),
              '--precision', 'bf16', '--threads', '1', '--quiet'])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    bicubic, net = json.loads((tmp_path / 'r.json').read_text())
    assert (net['precision'], net['threads']) == ('bf16', 1)
    assert (bicubic['precision'], bicubic['threads']) == (None, None)
    values = [r[k] for r in (bicubic, net) for k in ('psnr', 'ssim')]
    assert any(v != round(v, 4) for v in values)  # not rounded to 4 decimals
    assert f'{net["psnr"]:.2f} / {net["ssim"]:.4f}' in printed  # the markdown view rounds
