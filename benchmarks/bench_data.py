"""Training data loading, LMDB against disk (PNG folders), and its share of a training iteration, timed interleaved:

  data_disk   one batch from BasicSR's PairedImageDataset reading PNG folders (io_backend disk)
  data_lmdb   one batch from the same images in LMDBs (io_backend lmdb)
  step        one SelfDistillSRModel training step (SRResNetMultiExit 32 blocks, exit 8), same batch and GT size

A batch is read in the main process (``DataLoader(num_workers=0)``: read, decode, random crop, flip/rotate,
to tensor, collate), so "data share" = data / (data + step) is the share of an iteration spent loading when nothing
overlaps it: an upper bound. BasicSR's ``num_worker_per_gpu`` worker processes overlap loading with the step;
"workers to hide it" = data / step is how many it takes.

The data: ``--data DIR``, a folder that ``sd-prepare folder`` wrote (HR[_sub]/ + LR_bicubic/X4[_sub]/ and/or their
.lmdb), or by default generated 480x320 images (the size of BSD200's) prepared with ``sd-prepare folder`` with and
without ``--lmdb`` in a temporary folder.

Examples::

    python benchmarks/bench_data.py --quick
    python benchmarks/bench_data.py --data datasets/T91 --json results/data.json
"""
import benchlib  # noqa: I001  (first: imports sd_plugin before basicsr)
import contextlib
import io
import os
import shutil
import tempfile
from os import path as osp

import cv2
import numpy as np
import torch
from basicsr.models import build_model
from torch.utils.data import DataLoader

from sd_plugin.compat import build_dataset
from sd_plugin.prepare import prepare_folder


def generate(folder, count, seed=0):
    """``count`` 480x320 BGR PNGs: smooth waves plus fine noise, so they compress like photographs (~2 bytes/px)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder)
    yy, xx = np.mgrid[0:320, 0:480].astype(np.float32)
    for i in range(count):
        img = np.zeros((320, 480, 3), np.float32)
        for c in range(3):
            for _ in range(4):
                fy, fx, phase = rng.uniform(0.01, 0.2), rng.uniform(0.01, 0.2), rng.uniform(0, 6.3)
                img[..., c] += np.sin(fy * yy + fx * xx + phase)
        img = (img - img.min()) / (img.max() - img.min()) * 230 + rng.normal(0, 6, img.shape)
        cv2.imwrite(osp.join(folder, f'img{i:03d}.png'), np.clip(img, 0, 255).astype(np.uint8))


def find_pairs(data, scale=4):
    """{'disk': (gt, lq), 'lmdb': (gt, lq)}, whichever ``data`` holds, sub-images preferred."""
    found = {}
    for suffix in ('_sub', ''):
        disk = (osp.join(data, f'HR{suffix}'), osp.join(data, 'LR_bicubic', f'X{scale}{suffix}'))
        lmdb = (osp.join(data, f'HR{suffix}.lmdb'), osp.join(data, f'LR_bicubic_X{scale}{suffix}.lmdb'))
        if 'disk' not in found and all(osp.isdir(p) for p in disk):
            found['disk'] = disk
        if 'lmdb' not in found and all(osp.isdir(p) for p in lmdb):
            found['lmdb'] = lmdb
    if not found:
        raise SystemExit(f'--data {data}: no HR[_sub]/ + LR_bicubic/X{scale}[_sub]/ (or .lmdb) pair in it; '
                         'write one with sd-prepare folder')
    return found


def batches(backend, gt_lq, gt_size, batch):
    """An endless iterator over shuffled training batches of ``PairedImageDataset``."""
    opt = {'name': f'bench_{backend}', 'type': 'PairedImageDataset', 'dataroot_gt': gt_lq[0], 'dataroot_lq': gt_lq[1],
           'filename_tmpl': '{}', 'io_backend': {'type': backend}, 'gt_size': gt_size, 'use_hflip': True,
           'use_rot': True, 'scale': 4, 'phase': 'train', 'manual_seed': 0}
    dataset = build_dataset(opt)
    if len(dataset) < batch:
        raise SystemExit(f'{gt_lq[0]}: {len(dataset)} images, fewer than --batch {batch}')

    def endless():
        while True:
            yield from DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0, drop_last=True)
    return endless(), len(dataset)


def main(argv=None):
    parser = benchlib.base_parser(__doc__.split('\n\n')[0], precision=False, compile_=False)
    parser.add_argument('--data', default=None, help='a folder written by sd-prepare folder (default: generated)')
    parser.add_argument('--images', type=int, default=None, help='generated images (default: 32, --quick: 12)')
    parser.add_argument('--batch', type=int, default=4, help='batch size (default: 4)')
    parser.add_argument('--gt-size', type=int, default=None, help='GT patch size (default: 96, --quick: 64)')
    parser.add_argument('--data-reps', type=int, default=10, help='batches per data timing (default: 10)')
    args = parser.parse_args(argv)
    device = benchlib.setup(args)
    gt = args.gt_size or (64 if args.quick else 96)
    rounds = args.rounds or (5 if args.quick else 10)
    tmp = None
    try:
        if args.data:
            pairs, source = find_pairs(args.data), args.data
        else:
            tmp = tempfile.mkdtemp(prefix='bench_data_')
            count = args.images or (12 if args.quick else 32)
            generate(osp.join(tmp, 'hr'), count)
            out = osp.join(tmp, 'prepared')
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # progress
                for lmdb in (False, True):
                    prepare_folder(osp.join(tmp, 'hr'), 'bench', out, scale=4, lmdb=lmdb)
            pairs, source = find_pairs(out), f'{count} generated 480x320 PNGs'
        loaders = {backend: batches(backend, gt_lq, gt, args.batch) for backend, gt_lq in pairs.items()}
        sizes = {backend: n for backend, (_, n) in loaders.items()}

        model = build_model(benchlib.model_options(benchlib.arch(32, exits=[8]), device))
        fixed = next(iter(loaders.values()))[0]
        sample = next(fixed)
        step_batch = {'lq': sample['lq'], 'gt': sample['gt']}

        def step():
            model.feed_data(step_batch)
            model.optimize_parameters(1)

        def data(iterator):
            def call():
                for _ in range(args.data_reps):
                    next(iterator)
            return call

        variants = {f'data_{backend}': data(it) for backend, (it, _) in loaders.items()}
        variants['step'] = step
        times, warm = benchlib.interleaved(variants, rounds, device, warmup=1)
        for backend in loaders:  # per batch, not per data_reps batches
            times[f'data_{backend}'] = [t / args.data_reps for t in times[f'data_{backend}']]
        ratios = []
        if len(loaders) == 2:
            ratios.append(benchlib.ratio(times, 'data_lmdb', 'data_disk', 'LMDB batch / disk batch'))
        for backend in loaders:
            goal = ('<=', 0.05, 'the issue\'s goal') if backend == 'lmdb' else None
            ratios.append(benchlib.ratio(times, f'data_{backend}', [f'data_{backend}', 'step'],
                                         f'data share of an iteration ({backend}, serial)', goal=goal))
            ratios.append(benchlib.ratio(times, f'data_{backend}', 'step',
                                         f'workers to hide it ({backend}: data / step)'))
        config = dict(device=device.type, source=source, images=sizes, batch=args.batch, gt_size=gt, rounds=rounds,
                      data_reps=args.data_reps, threads=torch.get_num_threads())
        title = f'bench_data: PairedImageDataset LMDB vs disk, and data share of an SD-32 iteration on {device.type}'
        macs = {'sd32_exit8 (all exits)': benchlib.macs_per_lr_pixel(model.net_g, all_exits=True)}
        benchlib.report(title, config, times, warm, ratios, macs, device, args.json)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
