"""sd-quickstart: the whole method in a few minutes on CPU, on colour images that scikit-image ships (no download).

It prepares a tiny paired x4 data set, trains a self-distilled SRResNet (teacher and one exit) with BasicSR's own
``train_pipeline``, exports the exit as a stock ``MSRResNet`` checkpoint, and prints bicubic, student and teacher
PSNR (Y channel, border 4) with parameters and CPU latency. Everything goes under ``--out``, which it rewrites.
"""
import argparse
import json
import logging
import os
import re
import shutil
import sys
import time
from os import path as osp

import cv2
import numpy as np
import torch
import yaml

import sd_plugin  # noqa: F401  (compat fixes, then registrations)
from basicsr.archs.srresnet_arch import MSRResNet
from basicsr.metrics import calculate_psnr
from basicsr.train import train_pipeline
from basicsr.utils import get_root_logger, img2tensor, tensor2img
from tqdm import tqdm

from sd_plugin.archs import SRResNetMultiExit
from sd_plugin.cli import one_line_errors
from sd_plugin.data import prepare
from sd_plugin.data.bicubic import imresize
from sd_plugin.errors import ConfigError
from sd_plugin.export import export

SCALE = 4
SKIMAGE_TRAIN = ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'colorwheel')
SKIMAGE_VAL = ('chelsea', 'coffee')
IMAGE_EXTS = ('.png', '.bmp', '.jpg', '.jpeg', '.tif', '.tiff')


def write_hr_images(out, data_dir):
    """Write the HR images to ``out/hr/train`` and ``out/hr/val``: scikit-image's bundled colour images, or the
    images of ``data_dir`` (the last tenth, at least one, sorted by name, for validation)."""
    folders = {split: osp.join(out, 'hr', split) for split in ('train', 'val')}
    for folder in folders.values():
        os.makedirs(folder)
    if data_dir is None:
        import skimage.data
        for split, names in (('train', SKIMAGE_TRAIN), ('val', SKIMAGE_VAL)):
            for name in names:
                cv2.imwrite(osp.join(folders[split], f'{name}.png'), getattr(skimage.data, name)()[..., ::-1])
        return folders
    if not osp.isdir(data_dir):
        raise ConfigError(f'--data {data_dir}: no such folder')
    files = sorted(f for f in os.listdir(data_dir) if f.lower().endswith(IMAGE_EXTS))
    if len(files) < 2:
        raise ConfigError(f'--data {data_dir}: needs at least 2 images (found {len(files)})')
    n_val = max(1, len(files) // 10)
    for i, name in enumerate(files):
        shutil.copy(osp.join(data_dir, name), folders['val' if i >= len(files) - n_val else 'train'])
    return folders


def training_options(out, iters, num_block, exit_depth, gt_size, lr):
    """BasicSR option dict: SelfDistillSRModel, SRResNetMultiExit(num_block, exits=[exit_depth]), x4, on CPU."""
    data = {split: osp.join(out, 'data', split) for split in ('train', 'val')}
    return {
        'name': 'quickstart_sd', 'model_type': 'SelfDistillSRModel', 'scale': SCALE, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'quickstart_train', 'type': 'PairedImageDataset',
                      'dataroot_gt': osp.join(data['train'], 'HR'),
                      'dataroot_lq': osp.join(data['train'], 'LR_bicubic', f'X{SCALE}'),
                      'filename_tmpl': '{}', 'io_backend': {'type': 'disk'}, 'gt_size': gt_size, 'use_hflip': True,
                      'use_rot': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 4, 'dataset_enlarge_ratio': 50},
            'val': {'name': 'quickstart_val', 'type': 'PairedImageDataset', 'dataroot_gt': osp.join(data['val'], 'HR'),
                    'dataroot_lq': osp.join(data['val'], 'LR_bicubic', f'X{SCALE}'), 'io_backend': {'type': 'disk'}},
        },
        'network_g': {'type': 'SRResNetMultiExit', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64,
                      'num_block': num_block, 'upscale': SCALE, 'exits': [exit_depth]},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': lr, 'weight_decay': 0, 'betas': [0.9, 0.99]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [iters], 'gamma': 0.5}, 'total_iter': iters,
            'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
            'self_distill': {'student_pixel_weight': 0.9, 'distill_opt': {'type': 'L1DistillLoss', 'loss_weight': 0.1}},
        },
        'val': {'val_freq': iters, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': SCALE, 'test_y_channel': True}}},
        'logger': {'print_freq': 10, 'save_checkpoint_freq': iters, 'use_tb_logger': True},
    }


class ProgressBar(logging.Handler):
    """Turns BasicSR's training log lines (``... iter:  1,230, ...``) into a tqdm bar."""

    def __init__(self, total):
        super().__init__(logging.INFO)
        self.bar = tqdm(total=total, unit='iter', desc='training')

    def emit(self, record):
        found = re.search(r'iter:\s*([\d,]+),.*?l_pix: (\S+)', record.getMessage())
        if found:
            self.bar.update(int(found.group(1).replace(',', '')) - self.bar.n)
            self.bar.set_postfix(l_pix=found.group(2))


def train(out, options):
    """Run BasicSR's train_pipeline rooted at ``out``, its console log replaced by a progress bar (the full log is
    in ``out/train.log``)."""
    opt_path = osp.join(out, 'quickstart_sd.yml')
    with open(opt_path, 'w') as f:
        yaml.safe_dump(options, f, sort_keys=False)
    logger = get_root_logger(logger_name='basicsr', log_file=osp.join(out, 'train.log'))
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)
    progress = ProgressBar(options['train']['total_iter'])
    logger.addHandler(progress)
    argv, sys.argv = sys.argv, ['sd-train', '-opt', opt_path]
    try:
        train_pipeline(out)
    finally:
        sys.argv = argv
        progress.bar.close()
        logger.removeHandler(progress)
    return osp.join(out, 'experiments', options['name'], 'models', 'net_g_latest.pth')


def median_latency_ms(net, lq, repeats=10):
    """Median wall time of ``net(lq)`` in ms over ``repeats`` runs after 2 warm-up runs."""
    times = []
    with torch.no_grad():
        for i in range(repeats + 2):
            start = time.perf_counter()
            net(lq)
            if i >= 2:
                times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def evaluate(val_dir, nets):
    """Rows of {'model', 'params', 'psnr', 'latency_ms'}: bicubic and each of ``nets`` ({label: nn.Module}) on the
    validation pairs, PSNR on the Y channel with a border of SCALE pixels, averaged over images. Latency is measured
    on the first validation LR image, whose (H, W, C) shape is returned too."""
    hr_dir, lr_dir = osp.join(val_dir, 'HR'), osp.join(val_dir, 'LR_bicubic', f'X{SCALE}')
    names = sorted(os.listdir(hr_dir))
    pairs = [(cv2.imread(osp.join(hr_dir, n)), cv2.imread(osp.join(lr_dir, n))) for n in names]
    psnr = {'bicubic': [calculate_psnr(imresize(lr, SCALE), hr, SCALE, test_y_channel=True) for hr, lr in pairs]}
    rows = [{'model': 'bicubic', 'params': 0, 'psnr': float(np.mean(psnr['bicubic'])), 'latency_ms': None}]
    lq_first = img2tensor(pairs[0][1].astype(np.float32) / 255.).unsqueeze(0)
    for label, net in nets.items():
        net.eval()
        with torch.no_grad():
            scores = [calculate_psnr(tensor2img(net(img2tensor(lr.astype(np.float32) / 255.).unsqueeze(0))), hr, SCALE,
                                     test_y_channel=True) for hr, lr in pairs]
        rows.append({'model': label, 'params': sum(p.numel() for p in net.parameters()),
                     'psnr': float(np.mean(scores)), 'latency_ms': median_latency_ms(net, lq_first)})
    return rows, pairs[0][1].shape


def markdown_table(rows, lr_shape):
    lines = [f'| model | params | PSNR-Y (dB) | CPU latency, {lr_shape[1]}x{lr_shape[0]} LR, '
             f'{torch.get_num_threads()} threads (ms) |', '|---|---:|---:|---:|']
    for r in rows:
        latency = '-' if r['latency_ms'] is None else f'{r["latency_ms"]:.1f}'
        lines.append(f'| {r["model"]} | {r["params"]:,} | {r["psnr"]:.2f} | {latency} |')
    return '\n'.join(lines)


@one_line_errors('sd-quickstart')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='sd-quickstart', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='examples:\n  sd-quickstart\n  sd-quickstart --data ~/my_hr_photos '
                                     '--iters 2000 --out my_quickstart')
    parser.add_argument('--data', default=None, help='folder of your own HR images (default: scikit-image samples)')
    parser.add_argument('--out', default='quickstart', help='output folder, rewritten (default: ./quickstart)')
    parser.add_argument('--iters', type=int, default=300, help='training iterations (default: 300)')
    parser.add_argument('--blocks', type=int, default=32, help='teacher depth (default: 32, as the paper)')
    parser.add_argument('--exit', type=int, default=8, dest='exit_depth', help='student depth (default: 8)')
    parser.add_argument('--gt-size', type=int, default=64, help='GT patch size (default: 64)')
    parser.add_argument('--lr', type=float, default=5e-4, help='Adam learning rate (default: 5e-4)')
    args = parser.parse_args(argv)
    if args.iters < 1:
        raise ConfigError(f'--iters {args.iters}: must be >= 1')
    SRResNetMultiExit(num_feat=8, num_block=args.blocks, exits=[args.exit_depth])  # checks --blocks / --exit early
    out = osp.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    hr = write_hr_images(out, args.data)
    for split, folder in hr.items():
        prepare.main(['folder', '--hr', folder, '--name', f'quickstart_{split}', '--out', osp.join(out, 'data', split),
                      '--scale', str(SCALE)])
    options = training_options(out, args.iters, args.blocks, args.exit_depth, args.gt_size, args.lr)
    start = time.time()
    ckpt = train(out, options)
    train_seconds = time.time() - start

    student_path = osp.join(out, f'student_exit{args.exit_depth}_x{SCALE}.pth')
    arch = export(ckpt, args.exit_depth, student_path)
    student = MSRResNet(**{k: v for k, v in arch.items() if k != 'type'})
    student.load_state_dict(torch.load(student_path)['params'], strict=True)
    teacher = SRResNetMultiExit(**{k: v for k, v in options['network_g'].items() if k != 'type'})
    teacher.load_state_dict(torch.load(ckpt)['params'], strict=True)
    rows, lr_shape = evaluate(osp.join(out, 'data', 'val'), {
        f'student (exit {args.exit_depth}, exported MSRResNet)': student, f'teacher ({args.blocks} blocks)': teacher})
    with open(osp.join(out, 'quickstart.json'), 'w') as f:
        json.dump({'iters': args.iters, 'train_seconds': train_seconds, 'threads': torch.get_num_threads(),
                   'rows': rows}, f, indent=2)
    print(f'\ntrained {args.iters} iterations in {train_seconds:.0f} s; validation: {", ".join(sorted(os.listdir(hr["val"])))}')
    print(markdown_table(rows, lr_shape))
    print(f'\nstudent checkpoint (stock BasicSR MSRResNet, network_g: {arch}):\n  {student_path}')


if __name__ == '__main__':
    main()
