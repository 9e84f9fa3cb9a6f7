"""Stock BasicSR runs an exported student without the plugin, and measures what sd-eval measures.

The test runs basicsr's own ``test_pipeline`` in a subprocess that installs only the torchvision alias (three lines,
as ``sd_plugin.compat`` does) and never imports ``sd_plugin``. The YAML a user writes for that (stock BasicSR,
``python basicsr/test.py -opt test_student.yml``; data from ``sd-prepare benchmark``, model from ``sd-export``)::

    name: student_x4
    model_type: SRModel
    scale: 4
    num_gpu: 1                 # 0 on a machine without CUDA
    datasets:
      test_1:
        name: Set5
        type: PairedImageDataset
        dataroot_gt: datasets/Set5/GTmod4
        dataroot_lq: datasets/Set5/LRbicx4
        io_backend:
          type: disk
    network_g:
      type: MSRResNet
      num_in_ch: 3
      num_out_ch: 3
      num_feat: 64
      num_block: 8
      upscale: 4
    path:
      pretrain_network_g: student_x4.pth
      param_key_g: params
      strict_load_g: true
    val:
      save_img: false
      metrics:
        psnr:
          type: calculate_psnr
          crop_border: 4
          test_y_channel: true
        ssim:
          type: calculate_ssim
          crop_border: 4
          test_y_channel: true

What agrees, and how closely: BasicSR computes Y unrounded (and reads grey images as 3 channels), sd-eval's default
protocol rounds Y to uint8 as MATLAB does. ``sd-eval --basicsr-y`` measures as BasicSR does and agrees with its log to
the 4 decimals the log prints (asserted to 2e-4 dB: the log's rounding plus float32 vs float64 Y). The default
protocol differs from BasicSR's numbers by the Y rounding alone here (RGB images only): that difference is printed and
asserted below 0.01 dB (0.003 dB here, at ~25 dB); it is about 0.01 dB on real RGB images (bicubic x4 Set5: 28.418 vs
28.430 dB) and grows with PSNR, since rounding adds a fixed ~1/6 grey level squared to the MSE.
"""
import os
import re
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import torch
import yaml
from helpers import smooth_image

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.evaluation.protocol import evaluate
from sd_plugin.export import export
from sd_plugin.tools import prepare

SUBPROCESS = '''
import sys, types
from torchvision.transforms import functional
alias = types.ModuleType('torchvision.transforms.functional_tensor')
alias.rgb_to_grayscale = functional.rgb_to_grayscale
sys.modules[alias.__name__] = alias  # the only fix stock basicsr 1.4.2 needs to import on torchvision >= 0.17

import os
import basicsr.test
opt_path = sys.argv[1]
sys.argv = ['basicsr/test.py', '-opt', opt_path]
basicsr.test.test_pipeline(os.path.dirname(opt_path))  # root_path: results/ goes there
print('SD_PLUGIN_IMPORTED', any(m == 'sd_plugin' or m.startswith('sd_plugin.') for m in sys.modules))
'''


def tiny_benchmark(root):
    """datasets/tiny/GTmod4 and LRbicx4 from 4 small RGB images (one not a multiple of 4), by sd-prepare. The images
    are smooth waves plus noise, so SR is as hard as on real images (PSNR in the 20s, not 40s: at 40+ dB the MSE is
    so small that rounding Y alone moves PSNR by tenths of a dB)."""
    rng = np.random.default_rng(7)
    hr = osp.join(root, 'hr')
    os.makedirs(hr)
    for i, (h, w) in enumerate([(48, 64), (64, 48), (50, 45), (56, 56)]):
        img = smooth_image(rng, h, w).astype(np.float64) + rng.normal(0, 25, (h, w, 3))
        cv2.imwrite(osp.join(hr, f'img{i}.png'), np.clip(img, 0, 255).round().astype(np.uint8))
    prepare.main(['benchmark', '--hr', hr, '--name', 'tiny', '--out', osp.join(root, 'datasets', 'tiny'),
                  '--scale', '4'])
    return osp.join(root, 'datasets')


def test_stock_basicsr_runs_exported_student_and_agrees_with_sd_eval(tmp_path):
    root = str(tmp_path)
    data = tiny_benchmark(root)
    torch.manual_seed(0)
    net = SRResNetMultiExit(num_feat=8, num_block=4, upscale=4, exits=[2])
    torch.save({'params': net.state_dict()}, osp.join(root, 'multi.pth'))
    arch = export(osp.join(root, 'multi.pth'), 2, osp.join(root, 'student.pth'))

    opt = {
        'name': 'student_x4', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0,
        'datasets': {'test_1': {'name': 'tiny', 'type': 'PairedImageDataset',
                                'dataroot_gt': osp.join(data, 'tiny', 'GTmod4'),
                                'dataroot_lq': osp.join(data, 'tiny', 'LRbicx4'), 'io_backend': {'type': 'disk'}}},
        'network_g': arch,
        'path': {'pretrain_network_g': osp.join(root, 'student.pth'), 'param_key_g': 'params',
                 'strict_load_g': True},
        'val': {'save_img': False, 'metrics': {
            'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True},
            'ssim': {'type': 'calculate_ssim', 'crop_border': 4, 'test_y_channel': True}}},
    }
    opt_path = osp.join(root, 'test_student.yml')
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    script = osp.join(root, 'run_stock_basicsr.py')
    with open(script, 'w') as f:
        f.write(SUBPROCESS)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, script, opt_path], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'SD_PLUGIN_IMPORTED False' in proc.stdout, proc.stdout[-2000:]
    log = (proc.stdout + proc.stderr)
    basicsr_psnr = float(re.search(r'# psnr: ([-\d.]+)', log).group(1))
    basicsr_ssim = float(re.search(r'# ssim: ([-\d.]+)', log).group(1))

    def exit2(mode):
        records = evaluate([osp.join(root, 'multi.pth')], data, ['tiny'], 4, mode=mode, progress=False,
                           log=lambda *a: None)
        return next(r for r in records if r['exit'] == 2)

    same, default = exit2('basicsr-y'), exit2('y')
    print(f'\nstock BasicSR test_pipeline: PSNR {basicsr_psnr:.4f} SSIM {basicsr_ssim:.4f}; sd-eval exit 2: '
          f'--basicsr-y {same["psnr"]:.4f} / {same["ssim"]:.4f}, default (rounded Y) {default["psnr"]:.4f} / '
          f'{default["ssim"]:.4f} (diff {default["psnr"] - basicsr_psnr:+.4f} dB)')
    assert abs(same['psnr'] - basicsr_psnr) <= 2e-4
    assert abs(same['ssim'] - basicsr_ssim) <= 2e-4
    assert abs(default['psnr'] - basicsr_psnr) < 0.01
    assert abs(default['ssim'] - basicsr_ssim) < 0.002
