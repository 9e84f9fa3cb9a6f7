"""Test helpers: tiny generated paired data, tiny option dicts and running the console scripts, so tests need no
downloaded data. Fixtures are in conftest.py."""
import copy
import os
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import yaml

import sd_plugin  # noqa: F401  (registrations)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(ROOT, '..', 'shared', 'data')
BIN = osp.dirname(sys.executable)  # the venv's console scripts: sd-train, sd-export, ...


def lively(net):
    """``net`` (eval, no gradients) with PyTorch's default convolution initialisation instead of BasicSR's (x0.1),
    which leaves a random SRResNet within 1e-4 of its bilinear skip: the convolutions' share of the output becomes
    visible (~0.1), and outputs of different depths differ."""
    import torch
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
    return net.eval().requires_grad_(False)


def smooth_image(rng, height, width):
    """(height, width, 3) uint8 BGR image: random low-frequency waves, so SR has something to learn."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        for _ in range(4):
            fy, fx, phase = rng.uniform(0.02, 0.25), rng.uniform(0.02, 0.25), rng.uniform(0, 6.3)
            img[..., c] += np.sin(fy * yy + fx * xx + phase)
    img = (img - img.min()) / (img.max() - img.min() + 1e-8)
    return (img * 255).round().astype(np.uint8)


def write_pairs(folder, count, size, scale, seed):
    """Write ``count`` GT/LQ PNG pairs (GT ``size`` x ``size``) to folder/gt and folder/lq; return both paths."""
    rng = np.random.default_rng(seed)
    gt_dir, lq_dir = osp.join(folder, 'gt'), osp.join(folder, 'lq')
    os.makedirs(gt_dir, exist_ok=True)
    os.makedirs(lq_dir, exist_ok=True)
    for i in range(count):
        gt = smooth_image(rng, size, size)
        cv2.imwrite(osp.join(gt_dir, f'{i:03d}.png'), gt)
        cv2.imwrite(osp.join(lq_dir, f'{i:03d}.png'), cv2.resize(gt, (size // scale, size // scale),
                                                                  interpolation=cv2.INTER_AREA))
    return gt_dir, lq_dir


def tiny_options(data, name='tiny_sd', **train_overrides):
    """A complete training option dict for a 4-block, 8-feature SRResNetMultiExit with an exit at 2, on CPU."""
    opt = {
        'name': name, 'model_type': 'SelfDistillSRModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'tiny', 'type': 'PairedImageDataset', 'dataroot_gt': data['train'][0],
                      'dataroot_lq': data['train'][1], 'filename_tmpl': '{}', 'io_backend': {'type': 'disk'},
                      'gt_size': 32, 'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 0,
                      'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None},
            'val': {'name': 'tinyval', 'type': 'PairedImageDataset', 'dataroot_gt': data['val'][0],
                    'dataroot_lq': data['val'][1], 'io_backend': {'type': 'disk'}},
        },
        'network_g': {'type': 'SRResNetMultiExit', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 4,
                      'upscale': 4, 'exits': [2]},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.99]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [1000], 'gamma': 0.5}, 'total_iter': 20,
            'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
            'self_distill': {'student_pixel_weight': 0.9, 'distill_opt': {'type': 'L1DistillLoss', 'loss_weight': 0.1}},
        },
        'val': {'val_freq': 10, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True}}},
        'logger': {'print_freq': 5, 'save_checkpoint_freq': 10, 'use_tb_logger': True},
    }
    opt['train'].update(train_overrides)
    return opt


def write_yaml(opt, path):
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return str(path)


def run_cli(args, cwd, env=None, check=True):
    """Run a console script of the venv (``args[0]`` like 'sd-train') and return the CompletedProcess."""
    proc = subprocess.run([osp.join(BIN, args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


def model_options(data, **train_overrides):
    """The option dict ``build_model`` expects after ``parse_options``, for in-process tests."""
    opt = copy.deepcopy(tiny_options(data, **train_overrides))
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    return opt


