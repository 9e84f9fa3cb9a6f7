"""The measurement protocol of ``sd-eval``: PSNR / SSIM of every output of SRResNet checkpoints and of bicubic on
benchmark sets in ``sd-prepare benchmark`` layout (``DATA/<set>/GTmod<s>/<name>.png``, ``DATA/<set>/LRbicx<s>/``).

Default protocol, the one behind the published SR tables (e.g. bicubic x4: Set5 28.42 dB / 0.8104, Set14 26.00 dB /
0.7027, which this reproduces):

* every SR image is uint8: bicubic SR is MATLAB-style bicubic (``sd_plugin.data.bicubic.imresize``) of the LR file
  by s, rounded to uint8; a model's output is rounded to uint8 by BasicSR's ``tensor2img``;
* PSNR and SSIM are measured on the Y channel of BT.601 YCbCr as MATLAB's ``rgb2ycbcr`` computes it on uint8
  images: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (R, G, B in [0, 1]), ROUNDED to uint8;
* a single-channel (grey) image, such as Set14's ``bridge``, is measured on its grey values, not converted to Y
  (the MATLAB scripts only convert 3-channel images). Bicubic resizes the grey image itself. A model gets the grey
  LR replicated to 3 channels, and its RGB output is brought back to grey with the same BT.601 luma weights on the
  full 0-255 range, ``grey = 0.299 R + 0.587 G + 0.114 B`` (= (Y - 16) * 255 / 219), rounded to uint8: the exact
  inverse of the replication, so a model is measured on the same grey scale as its ground truth;
* a border of ``scale`` pixels is cropped on every side; SSIM is the MATLAB one (11x11 Gaussian, sigma 1.5, valid
  mode: BasicSR's ``_ssim``) on the float64 of those uint8 values; both are averaged over the images of a set.

Mode 'rgb' measures the three RGB channels, as BasicSR's model zoo reports them. Mode 'basicsr-y' measures as
BasicSR's validation does (``test_y_channel``: the UNROUNDED Y, grey images read as 3 equal channels): about 0.01 dB
off the default on RGB images (bicubic x4 Set5: 28.430 vs 28.418 dB), more on sets with grey images (Set14: 26.09 vs
25.99 dB, because of ``bridge``). The network runs through ``sd_plugin.inference``, the path ``sd-upscale`` uses.
"""
import os
from os import path as osp

import numpy as np
import torch
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img
from tqdm import tqdm

from sd_plugin.complexity import count_macs, cpu_latency
from sd_plugin.data.bicubic import imresize, to_uint8
from sd_plugin.errors import ConfigError
from sd_plugin.export import student_state_dict
from sd_plugin.imageio import is_image_file
from sd_plugin.imageio import read_rgb as read_image  # noqa: F401  (imported from here too)
from sd_plugin.inference import load_sr_network, run_network

MODES = ('y', 'rgb', 'basicsr-y')
SSIM_WINDOW = 11  # BasicSR's _ssim: an 11x11 Gaussian in 'valid' mode; a smaller image scores NaN
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
    files = sorted(f for f in os.listdir(gt_dir) if is_image_file(f))
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
        if min(gt.shape[:2]) - 2 * scale < SSIM_WINDOW:
            raise ConfigError(f'--sets {name}: {osp.join(gt_dir, f)} is {gt.shape[1]}x{gt.shape[0]}, too small to '
                              f'measure: after the {scale} px border, SSIM\'s {SSIM_WINDOW}x{SSIM_WINDOW} window '
                              f'needs {SSIM_WINDOW + 2 * scale} px per side')
        pairs.append((osp.splitext(f)[0], gt, lr))
    return pairs


# ----------------------------------------------------------------------------------------------- models


class Subject:
    """One checkpoint to evaluate: ``net`` (an SRResNetMultiExit in eval mode) and the outputs ``depths`` it has.

    ``exits[depth]`` is the record's ``exit`` field: the depth for a multi-exit checkpoint, None for a single one."""

    def __init__(self, path, name, param_key=None):
        net, info = load_sr_network(path, param_key=param_key)
        self.path, self.name, self.param_key, self.arch = path, name, info['param_key'], info['arch']
        self.net = net
        self.depths = net.depths
        self.exits = {d: (d if self.arch['exits'] else None) for d in self.depths}

    def params(self, depth):
        """Parameters that run for output ``depth``: those of ``MSRResNet(num_block=depth)``."""
        state = self.net.student(depth)[1] if hasattr(self.net, 'student') else student_state_dict(
            self.net.state_dict(), depth)  # a MultiExitSR knows its own student
        return sum(v.numel() for v in state.values())

    def label(self, depth):
        return f'{self.name} exit {depth}' if self.arch['exits'] and depth != self.arch['num_block'] else self.name


@torch.inference_mode()
def model_sr(net, lr, depths, precision='fp32'):
    """{depth: uint8 (H*s, W*s, 3) RGB SR image} of a uint8 LR image (grey replicated to RGB), one trunk pass.
    ``precision``: as ``run_network`` ('fp32', the protocol's; 'bf16': faster, PSNR off by ~0.005 dB)."""
    x = torch.from_numpy(as_rgb(lr).astype(np.float32) / 255.).permute(2, 0, 1)[None]
    # sd_plugin.inference: the forward pass sd-upscale uses too (with its speed defaults: channels_last on the CPU)
    outputs = run_network(net, x, list(depths), precision=precision)
    return {d: tensor2img(out, rgb2bgr=False, min_max=(0, 1)) for d, out in outputs.items()}


# ----------------------------------------------------------------------------------------------- evaluation


def record(model, exit, depth, dataset, scale, psnr, ssim, params_, macs, latency, lr_size, threads,
           precision='fp32'):
    """One row of sd-eval's JSON. PSNR (dB) and SSIM keep full float precision (only the markdown views round them:
    rounded to 4 decimals, two paired SSIM differences came out exactly 0); ``threads``: torch's CPU threads the
    network ran with, ``precision``: its forward's ('fp32' or 'bf16'); both None for bicubic."""
    return {'model': model, 'exit': exit, 'dataset': dataset, 'scale': scale,
            'psnr': None if psnr is None else float(psnr), 'ssim': None if ssim is None else float(ssim),
            'params': params_, 'macs': macs, 'depth': depth, 'lr_size': f'{lr_size[0]}x{lr_size[1]}',
            'latency_ms': None if latency is None else round(latency, 2), 'threads': threads,
            'precision': None if model == 'bicubic' else precision}


def evaluate(ckpts=(), data='datasets', sets=('Set5', 'Set14'), scale=None, mode='y', names=None, param_key=None,
             lr_size=(320, 180), latency=False, warmup=1, repeats=5, progress=True, log=print, precision='fp32'):
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
        precision (str): the networks' forward: 'fp32' (default, the protocol's) or 'bf16' (``model_sr``).
    """
    if mode not in MODES:
        raise ConfigError(f'mode {mode!r}: must be one of {MODES}')
    if precision not in ('fp32', 'bf16'):
        raise ConfigError(f'--precision {precision!r}: must be fp32 or bf16 (sd-eval runs on the CPU)')
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

    threads = torch.get_num_threads()  # what the networks run with (the command chose it: sd_plugin.threads)
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
                              None if model == 'bicubic' else threads, precision))

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
                for d, sr in model_sr(s.net, lr, s.depths, precision).items():
                    scores[d].append(measure(sr, gt, scale, mode))
                bar.update(1)
            for d in s.depths:
                add(s.name, s.exits[d], d, name, *np.mean(scores[d], axis=0))
        bar.close()
    return records
