"""sd-eval: PSNR/SSIM of every exit, the teacher, any other SRResNet checkpoint and bicubic on benchmark sets, with
parameters, MACs and (``--complexity``) CPU latency.

Example::

    sd-prepare benchmark --hr ../shared/data/Set5/HR --name Set5 --out datasets/Set5 --scale 4
    sd-prepare benchmark --hr ../shared/data/Set14/HR --name Set14 --out datasets/Set14 --scale 4
    sd-eval experiments/my_sd/models/net_g_latest.pth baseline_srresnet8.pth --data datasets --sets Set5 Set14 \\
        --scale 4 --json results.json --plot psnr_vs_macs.png --complexity

Checkpoints: a ``SRResNetMultiExit`` one (keys ``exit_heads.*``) gives one row per exit plus the teacher; a stock
BasicSR ``MSRResNet`` one or an ``sd-export``-ed student gives one row. The architecture is read off the state dict;
the weights are ``params_ema`` when the file has them, else ``params`` (``--param-key`` forces one). A bicubic row is
always added. Benchmark sets are read in the layout ``sd-prepare benchmark`` writes: ``DATA/<set>/GTmod<s>/<name>.png``
(HR cropped to a multiple of s) and ``DATA/<set>/LRbicx<s>/<name>.png`` (same names).

Measurement protocol (default), the one behind the published SR tables (e.g. bicubic x4: Set5 28.42 dB / 0.8104,
Set14 26.00 dB / 0.7027, which this reproduces):

* every SR image is uint8: bicubic SR is MATLAB-style bicubic (``sd_plugin.data.bicubic.imresize``) of the LR file
  by s, rounded to uint8; a model's output is rounded to uint8 by BasicSR's ``tensor2img``;
* PSNR and SSIM are measured on the Y channel of BT.601 YCbCr as MATLAB's ``rgb2ycbcr`` computes it on uint8
  images: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (R, G, B in [0, 1]), ROUNDED to uint8;
* a single-channel (grey) image, such as Set14's ``bridge``, is measured on its grey values, not converted to Y
  (the MATLAB scripts only convert 3-channel images). Bicubic resizes the grey image itself. A model gets the grey
  LR replicated to 3 channels, and its RGB output is brought back to grey with the same BT.601 luma weights on the
  full 0-255 range, ``grey = 0.299 R + 0.587 G + 0.114 B`` (= (Y - 16) * 255 / 219), rounded to uint8. That is the
  exact inverse of the replication (an output with R = G = B = v gives v back), so a model is measured on the same
  grey scale as its ground truth and as the bicubic row; Y itself (16-235) would not be comparable with the 0-255
  grey ground truth;
* a border of ``scale`` pixels is cropped on every side; SSIM is the MATLAB one (11x11 Gaussian, sigma 1.5, valid
  mode: BasicSR's ``_ssim``) on the float64 of those uint8 values; both are averaged over the images of a set.
  The same protocol is applied to every row, bicubic or model.

``--rgb`` measures PSNR/SSIM on the three RGB channels (border ``scale``), as BasicSR's model zoo reports them;
grey images are expanded to 3 channels, as BasicSR reads them.

Note on BasicSR's numbers: BasicSR's validation (``calculate_psnr`` / ``calculate_ssim`` with
``test_y_channel: true``, during training and in ``basicsr/test.py``) uses the UNROUNDED Y and reads grey images as
3 equal channels, so its values differ from this protocol's: by about 0.01 dB on RGB images (bicubic x4 Set5: 28.430
vs 28.418 dB) and more on sets with grey images (bicubic x4 Set14: 26.09 vs 25.99 dB, because of ``bridge``).
``--basicsr-y`` measures exactly as BasicSR does, to compare with its logs.

Complexity: ``params`` counts the parameters that run for that output (exit k: the first conv, k blocks and exit
head k, i.e. an ``MSRResNet(num_block=k)``; the teacher: without the exit heads). ``macs`` are counted by
``torch.utils.flop_counter.FlopCounterMode`` (convolutions: MACs = FLOPs / 2) on a ``--lr-size`` input (default
320x180, a 1280x720 output at x4), running only the first k blocks for exit k. The counter counts convolutions only:
the bilinear global skip, pixel shuffle, activations, biases and additions are not counted (a few MACs per output
pixel, against ~1.4 M per LR pixel in the convolutions). ``--complexity`` adds CPU latency: the median over
``--repeats`` runs after ``--warmup`` runs, at ``--lr-size``, with ``--threads`` (reported) torch threads.

Output: ``--json PATH`` writes the results as a list of records ``{"model", "exit", "dataset", "scale", "psnr",
"ssim", "params", "macs", ...}`` (``exit``: the depth for a multi-exit checkpoint, the teacher included, null for a
single-exit model; ``model`` is ``"bicubic"`` for the bicubic rows); the markdown table printed and the ``--plot``
PNG (PSNR against MACs) are drawn from those records.
"""
import argparse
import copy
import json
import os
import statistics
import time
from os import path as osp

import numpy as np
import torch
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.checkpoint import load_checkpoint, params
from sd_plugin.cli import one_line_errors
from sd_plugin.data.bicubic import imresize, to_uint8
from sd_plugin.data.prepare import read_image as read_bgr_image
from sd_plugin.errors import ConfigError
from sd_plugin.files import check_apart
from sd_plugin.export import infer_arch, student_state_dict
from sd_plugin.inference import run_network

MODES = ('y', 'rgb', 'basicsr-y')
IMAGE_EXTENSIONS = ('.png', '.bmp', '.jpg', '.jpeg', '.tif', '.tiff')
Y_WEIGHTS = np.array([65.481, 128.553, 24.966])  # BT.601, as MATLAB rgb2ycbcr: Y = 16 + RGB[0,1] . Y_WEIGHTS


# ----------------------------------------------------------------------------------------------- measurement


def rgb2y(img):
    """(H, W, 3) uint8 RGB -> (H, W) uint8 Y of BT.601 YCbCr, rounded as MATLAB's ``rgb2ycbcr`` on uint8 images."""
    return to_uint8(16. + img.astype(np.float64) @ Y_WEIGHTS / 255.)


def rgb2grey(img):
    """(H, W, 3) uint8 RGB -> (H, W) uint8 grey: BT.601 luma on the full range, 0.299 R + 0.587 G + 0.114 B, rounded.
    Inverse of replicating a grey image to 3 channels."""
    return to_uint8(img.astype(np.float64) @ (Y_WEIGHTS / 219.))


def as_rgb(img):
    """A grey (H, W) image replicated to (H, W, 3); an RGB one unchanged."""
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def measure(sr, gt, crop_border, mode='y'):
    """PSNR (dB) and SSIM of a uint8 SR image against its uint8 ground truth, by the protocol of the module docstring.

    Args:
        sr, gt (ndarray): uint8 (H, W) grey or (H, W, 3) RGB images of the same height and width. A grey ``gt`` with
            an RGB ``sr`` (a model's output for a grey image) is measured on grey values in mode 'y'.
        crop_border (int): pixels cropped on every side (the scale).
        mode (str): 'y' (rounded BT.601 Y, grey images on their grey values), 'rgb', or 'basicsr-y' (BasicSR's
            ``test_y_channel``: unrounded Y, grey images as 3 channels).
    Returns:
        tuple[float, float]: (psnr, ssim).
    """
    if sr.shape[:2] != gt.shape[:2]:
        raise ValueError(f'SR {sr.shape} and GT {gt.shape} differ in size')
    test_y = False
    if mode == 'y':
        if gt.ndim == 2:
            sr = rgb2grey(sr) if sr.ndim == 3 else sr
        else:
            gt, sr = rgb2y(gt), rgb2y(as_rgb(sr))
    elif mode in ('rgb', 'basicsr-y'):
        gt, sr = as_rgb(gt), as_rgb(sr)
        if mode == 'basicsr-y':  # BasicSR's to_y_channel takes BGR
            gt, sr, test_y = gt[..., ::-1], sr[..., ::-1], True
    else:
        raise ValueError(f'mode {mode!r}: must be one of {MODES}')
    psnr = calculate_psnr(sr, gt, crop_border, input_order='HWC', test_y_channel=test_y)
    ssim = calculate_ssim(sr, gt, crop_border, input_order='HWC', test_y_channel=test_y)
    return float(psnr), float(ssim)


# ----------------------------------------------------------------------------------------------- data


def read_image(path):
    """uint8 (H, W) grey or (H, W, 3) RGB image (alpha dropped); ConfigError naming an unreadable file."""
    img = read_bgr_image(path)
    return np.ascontiguousarray(img[..., ::-1]) if img.ndim == 3 else img


def benchmark_folders(data, name, scale):
    """(GT folder, LR folder) of set ``name`` at ``scale``, or a ConfigError naming the missing folder."""
    folders = osp.join(data, name, f'GTmod{scale}'), osp.join(data, name, f'LRbicx{scale}')
    for folder in folders:
        if not osp.isdir(folder):
            raise ConfigError(f'--sets {name}: no folder {folder} (make it with: sd-prepare benchmark --hr '
                              f'<{name} HR folder> --name {name} --out {osp.join(data, name)} --scale {scale})')
    return folders


def load_pairs(data, name, scale):
    """[(image name, GT, LR)] of a benchmark set; LR must be GT / scale in size."""
    gt_dir, lr_dir = benchmark_folders(data, name, scale)
    files = sorted(f for f in os.listdir(gt_dir) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise ConfigError(f'--sets {name}: no images in {gt_dir}')
    pairs = []
    for f in files:
        lr_path = osp.join(lr_dir, f)
        if not osp.isfile(lr_path):
            raise ConfigError(f'--sets {name}: {lr_path} missing (the LR of {osp.join(gt_dir, f)})')
        gt, lr = read_image(osp.join(gt_dir, f)), read_image(lr_path)
        if gt.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
            raise ConfigError(f'--sets {name} --scale {scale}: {osp.join(gt_dir, f)} is {gt.shape[1]}x{gt.shape[0]} '
                              f'but its LR is {lr.shape[1]}x{lr.shape[0]} (not 1/{scale} of it)')
        pairs.append((osp.splitext(f)[0], gt, lr))
    return pairs


# ----------------------------------------------------------------------------------------------- models


class Subject:
    """One checkpoint to evaluate: ``net`` (an SRResNetMultiExit in eval mode) and the outputs ``depths`` it has.

    ``exits[depth]`` is the record's ``exit`` field: the depth for a multi-exit checkpoint, None for a single one."""

    def __init__(self, path, name, param_key=None):
        ckpt = load_checkpoint(path)
        if param_key is not None:
            key, state = param_key, params(ckpt, param_key, path)
        elif 'params_ema' in ckpt or 'params' in ckpt:
            key = 'params_ema' if 'params_ema' in ckpt else 'params'
            state = ckpt[key]
        elif 'conv_first.weight' in ckpt:  # a bare state dict
            key, state = None, ckpt
        else:
            state = params(ckpt, 'params', path)  # raises, naming what the file has
        try:
            arch = infer_arch(state)
        except ConfigError as err:
            raise ConfigError(f'{path}: {err}') from None
        if arch['num_in_ch'] != 3 or arch['num_out_ch'] != 3 or arch['num_block'] < 1:
            raise ConfigError(f'{path}: a {arch["num_in_ch"]}-in / {arch["num_out_ch"]}-out channel network with '
                              f'{arch["num_block"]} blocks; sd-eval evaluates RGB SRResNets')
        net = SRResNetMultiExit(**arch)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ConfigError(f'{path}: not an MSRResNet / SRResNetMultiExit state dict '
                              f'({str(err).splitlines()[0]})') from None
        self.path, self.name, self.param_key, self.arch, self.state = path, name, key, arch, state
        self.net = net.eval()
        self.depths = net.depths
        self.exits = {d: (d if arch['exits'] else None) for d in self.depths}

    def params(self, depth):
        """Parameters that run for output ``depth``: those of ``MSRResNet(num_block=depth)``."""
        return sum(v.numel() for v in student_state_dict(self.state, depth).values())

    def label(self, depth):
        return f'{self.name} exit {depth}' if self.arch['exits'] and depth != self.arch['num_block'] else self.name


def count_macs(net, depth, lr_size):
    """Multiply-accumulates of ``net`` on one ``lr_size`` = (W, H) input, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) on a meta-device copy (no compute).

    ``depth``: an output of an SRResNetMultiExit, run as ``forward_exits(x, [depth])`` (only the first ``depth``
    blocks); None: plain ``net(x)`` (any network, e.g. a stock ``MSRResNet``)."""
    meta = copy.deepcopy(net).to('meta')
    x = torch.empty(1, net.conv_first.in_channels, lr_size[1], lr_size[0], device='meta')
    with FlopCounterMode(display=False) as counter:
        if depth is None:
            meta(x)
        else:
            meta.forward_exits(x, [depth])
    return counter.get_total_flops() // 2


@torch.inference_mode()
def cpu_latency(net, depth, lr_size, warmup=1, repeats=5):
    """Median wall time (ms) of ``net.forward_exits(x, [depth])`` on a random ``lr_size`` = (W, H) CPU input, over
    ``repeats`` runs after ``warmup`` runs, with the current ``torch.get_num_threads()``."""
    x = torch.rand(1, net.conv_first.in_channels, lr_size[1], lr_size[0])
    for _ in range(warmup):
        net.forward_exits(x, [depth])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net.forward_exits(x, [depth])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


@torch.inference_mode()
def model_sr(net, lr, depths):
    """{depth: uint8 (H*s, W*s, 3) RGB SR image} of a uint8 LR image (grey replicated to RGB), one trunk pass."""
    x = torch.from_numpy(as_rgb(lr).astype(np.float32) / 255.).permute(2, 0, 1)[None]
    outputs = run_network(net, x, list(depths))  # sd_plugin.inference: the forward pass sd-upscale uses too
    return {d: tensor2img(out, rgb2bgr=False, min_max=(0, 1)) for d, out in outputs.items()}


# ----------------------------------------------------------------------------------------------- evaluation


def record(model, exit, depth, dataset, scale, psnr, ssim, params_, macs, latency, lr_size, threads):
    return {'model': model, 'exit': exit, 'dataset': dataset, 'scale': scale,
            'psnr': None if psnr is None else round(psnr, 4), 'ssim': None if ssim is None else round(ssim, 4),
            'params': params_, 'macs': macs, 'depth': depth, 'lr_size': f'{lr_size[0]}x{lr_size[1]}',
            'latency_ms': None if latency is None else round(latency, 2), 'threads': threads}


def evaluate(ckpts=(), data='datasets', sets=('Set5', 'Set14'), scale=None, mode='y', names=None, param_key=None,
             lr_size=(320, 180), latency=False, warmup=1, repeats=5, progress=True, log=print):
    """Evaluate checkpoints and bicubic; return the records (see the module docstring), bicubic first in each set.

    Args:
        ckpts (list[str]): checkpoint paths (may be empty: bicubic only).
        data (str): folder holding ``<set>/GTmod<s>`` and ``<set>/LRbicx<s>``.
        sets (list[str]): benchmark set names; empty: only complexity records (dataset, psnr and ssim None).
        scale (int | None): the scale; None: the checkpoints' (they must agree).
        mode (str): 'y' (default protocol), 'rgb' or 'basicsr-y'.
        names (list[str] | None): record names of the checkpoints; default their file stems.
        param_key (str | None): force this param key; default params_ema if present, else params.
        lr_size (tuple[int, int]): (W, H) LR size for MACs and latency.
        latency (bool): also measure CPU latency (slow for big networks).
    """
    if mode not in MODES:
        raise ConfigError(f'mode {mode!r}: must be one of {MODES}')
    names = list(names) if names else [osp.splitext(osp.basename(p))[0] for p in ckpts]
    if len(names) != len(ckpts):
        raise ConfigError(f'--names: {len(names)} names for {len(ckpts)} checkpoints')
    if len(set(names)) != len(names) or 'bicubic' in names:
        raise ConfigError(f'model names {names}: must be distinct and not "bicubic" (use --names)')
    subjects = [Subject(p, n, param_key) for p, n in zip(ckpts, names)]
    scales = {s.arch['upscale'] for s in subjects}
    if scale is None:
        if len(scales) != 1:
            raise ConfigError('--scale is required' + (f': the checkpoints are x{sorted(scales)}' if scales else
                                                       ' without a checkpoint'))
        scale = scales.pop()
    for s in subjects:
        if s.arch['upscale'] != scale:
            raise ConfigError(f'{s.path}: an x{s.arch["upscale"]} network, but --scale {scale}')
    for name in sets:
        benchmark_folders(data, name, scale)  # fail before any slow work

    threads = torch.get_num_threads() if latency else None
    cost = {('bicubic', None): (0, None, None)}
    for s in subjects:
        log(f'{s.name}: {s.path} [{s.param_key or "state dict"}] num_feat={s.arch["num_feat"]} '
            f'num_block={s.arch["num_block"]} exits={s.arch["exits"]} x{scale}')
        for d in s.depths:
            lat = cpu_latency(s.net, d, lr_size, warmup, repeats) if latency else None
            cost[s.name, d] = (s.params(d), count_macs(s.net, d, lr_size), lat)

    records = []

    def add(model, exit, depth, dataset, psnr=None, ssim=None):
        params_, macs, lat = cost[model, depth]
        records.append(record(model, exit, depth, dataset, scale, psnr, ssim, params_, macs, lat, lr_size,
                              None if model == 'bicubic' else threads))

    if not sets:
        add('bicubic', None, None, None)
        for s in subjects:
            for d in s.depths:
                add(s.name, s.exits[d], d, None)
    for name in sets:
        pairs = load_pairs(data, name, scale)
        bar = tqdm(total=len(pairs) * (1 + len(subjects)), desc=f'{name} x{scale}', unit='image',
                   disable=not progress)
        scores = [measure(imresize(lr, scale), gt, scale, mode) for _, gt, lr in pairs]
        bar.update(len(pairs))
        add('bicubic', None, None, name, *np.mean(scores, axis=0))
        for s in subjects:
            scores = {d: [] for d in s.depths}
            for _, gt, lr in pairs:
                for d, sr in model_sr(s.net, lr, s.depths).items():
                    scores[d].append(measure(sr, gt, scale, mode))
                bar.update(1)
            for d in s.depths:
                add(s.name, s.exits[d], d, name, *np.mean(scores[d], axis=0))
        bar.close()
    return records


# ----------------------------------------------------------------------------------------------- views


def markdown_table(records):
    """A markdown table of the records: one row per model output, one PSNR / SSIM column per data set."""
    datasets = list(dict.fromkeys(r['dataset'] for r in records if r['dataset'] is not None))
    rows = {}
    for r in records:
        rows.setdefault((r['model'], r['exit']), []).append(r)
    teacher_depth = {}
    for (model, exit), rs in rows.items():
        if exit is not None:
            teacher_depth[model] = max(teacher_depth.get(model, 0), exit)
    any_latency = any(r['latency_ms'] is not None for r in records)
    lr_size = records[0]['lr_size'] if records else ''
    head = ['model', 'exit', 'blocks', 'params', f'GMACs @{lr_size}']
    if any_latency:
        threads = next(r['threads'] for r in records if r['latency_ms'] is not None)
        head.append(f'CPU ms ({threads} threads)')
    head += [f'{d} x{records[0]["scale"]} PSNR / SSIM' for d in datasets]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for (model, exit), rs in rows.items():
        r = rs[0]
        if exit is None:
            exit_text = '-'
        else:
            exit_text = f'{exit} (teacher)' if exit == teacher_depth[model] else str(exit)
        cells = [model, exit_text, '-' if r['depth'] is None else str(r['depth']),
                 f'{r["params"] / 1e6:.3f} M' if r['params'] else '0',
                 '-' if r['macs'] is None else f'{r["macs"] / 1e9:.2f}']
        if any_latency:
            cells.append('-' if r['latency_ms'] is None else f'{r["latency_ms"]:.1f}')
        by_set = {x['dataset']: x for x in rs}
        for d in datasets:
            x = by_set.get(d)
            cells.append(f'{x["psnr"]:.2f} / {x["ssim"]:.4f}' if x and x['psnr'] is not None else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(records, path):
    """PNG of PSNR against GMACs, one panel per data set: each multi-exit model's exits and teacher joined by a
    line, single-exit models as points, bicubic as a dashed horizontal line."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
    except ImportError:
        raise ConfigError('--plot needs matplotlib: pip install matplotlib') from None
    datasets = list(dict.fromkeys(r['dataset'] for r in records if r['dataset'] is not None))
    if not datasets:
        raise ConfigError('--plot needs PSNR values: give --sets')
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rs = [r for r in records if r['dataset'] == dataset]
        models = list(dict.fromkeys(r['model'] for r in rs if r['model'] != 'bicubic'))
        for model in models:
            mine = sorted((r for r in rs if r['model'] == model), key=lambda r: r['macs'])
            xs, ys = [r['macs'] / 1e9 for r in mine], [r['psnr'] for r in mine]
            if mine[0]['exit'] is None:
                ax.plot(xs, ys, 's', label=model)
            else:
                line, = ax.plot(xs, ys, 'o-', label=f'{model} (exits, teacher)')
                teacher = max(r['exit'] for r in mine)
                for r, x, y in zip(mine, xs, ys):
                    text = f'teacher ({r["exit"]})' if r['exit'] == teacher else f'exit {r["exit"]}'
                    ax.annotate(text, (x, y), textcoords='offset points', xytext=(4, -10), fontsize=8,
                                color=line.get_color())
        for r in rs:
            if r['model'] == 'bicubic':
                ax.axhline(r['psnr'], color='grey', linestyle='--', label=f'bicubic ({r["psnr"]:.2f} dB)')
        ax.set_xlabel(f'GMACs per {rs[0]["lr_size"]} LR image')
        ax.set_ylabel('PSNR (dB)')
        ax.set_title(f'{dataset} x{rs[0]["scale"]}')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=110, format='png')
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- command line


def parse_size(text):
    try:
        w, h = (int(v) for v in text.lower().split('x'))
        if w < 1 or h < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f'--lr-size {text!r}: must be WIDTHxHEIGHT, e.g. 320x180') from None
    return w, h


def build_parser():
    parser = argparse.ArgumentParser(prog='sd-eval', description=__doc__.split('\n\n')[0],
                                     epilog='example: sd-eval net_g_latest.pth --data datasets --sets Set5 Set14 '
                                     '--scale 4 --json results.json --plot psnr_vs_macs.png --complexity')
    parser.add_argument('ckpts', nargs='*', metavar='CKPT', help='checkpoints (multi-exit, MSRResNet or exported)')
    parser.add_argument('--data', default='datasets', help='folder of <set>/GTmod<s> and <set>/LRbicx<s> '
                        '(sd-prepare benchmark; default: datasets)')
    parser.add_argument('--sets', nargs='*', default=['Set5', 'Set14'],
                        help='benchmark sets (default: Set5 Set14; none: complexity only)')
    parser.add_argument('--scale', type=int, default=None, help="scale (default: the checkpoints')")
    metric = parser.add_mutually_exclusive_group()
    metric.add_argument('--rgb', action='store_const', const='rgb', dest='mode', default='y',
                        help='RGB PSNR/SSIM (BasicSR model zoo) instead of the rounded Y channel')
    metric.add_argument('--basicsr-y', action='store_const', const='basicsr-y', dest='mode',
                        help="BasicSR validation's Y (unrounded, grey images as 3 channels), to compare with its logs")
    parser.add_argument('--names', nargs='+', default=None, help='model names (default: checkpoint file stems)')
    parser.add_argument('--param-key', default=None, help='weights to use (default: params_ema if present, else '
                        'params)')
    parser.add_argument('--json', default=None, metavar='PATH', help='write the records here')
    parser.add_argument('--plot', default=None, metavar='PATH', help='write a PSNR-vs-MACs PNG here')
    parser.add_argument('--complexity', action='store_true', help='also measure CPU latency')
    parser.add_argument('--lr-size', default='320x180', help='LR WIDTHxHEIGHT for MACs and latency '
                        '(default: 320x180, 1280x720 output at x4)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--warmup', type=int, default=1, help='latency warm-up runs (default: 1)')
    parser.add_argument('--repeats', type=int, default=5, help='latency runs, median reported (default: 5)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


@one_line_errors('sd-eval')
def main(argv=None):
    args = build_parser().parse_args(argv)
    lr_size = parse_size(args.lr_size)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f'--threads {args.threads}: must be >= 1')
        torch.set_num_threads(args.threads)
    if args.repeats < 1 or args.warmup < 0:
        raise ConfigError('--repeats must be >= 1 and --warmup >= 0')
    check_apart({'--json': args.json, '--plot': args.plot}, {'CKPT': args.ckpts, '--data': args.data})
    records = evaluate(args.ckpts, args.data, args.sets, args.scale, args.mode, args.names, args.param_key, lr_size,
                       args.complexity, args.warmup, args.repeats, progress=not args.quiet)
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(records, f, indent=1)
        print(f'wrote {args.json}')
    if args.plot:
        plot(records, args.plot)
        print(f'wrote {args.plot}')
    protocol = {'y': 'Y (BT.601, rounded; grey images on grey values)', 'rgb': 'RGB',
                'basicsr-y': "Y as BasicSR's validation (unrounded)"}[args.mode]
    if args.sets:
        print(f'\nPSNR / SSIM: {protocol}, border {records[0]["scale"]} px cropped')
    print(markdown_table(records))


if __name__ == '__main__':
    main()
