"""MATLAB-exact bicubic resize of uint8 images, as used to make the published SR benchmark LR images.

``imresize(img, scale)`` reproduces MATLAB's ``imresize(img, scale, 'bicubic')`` on uint8 input: the cubic
kernel with a = -0.5, antialiasing when downscaling (the kernel is widened by 1/scale), edge-replicated
borders, the rows (first axis) resized before the columns, and rounding to uint8 (half away from zero,
clipped to [0, 255]) after each of the two passes, as MATLAB's uint8 path does. On Set5 and Set14 it matches
the published LR images (SelfExSR release) exactly or within one grey level.
"""
import math

import numpy as np

from sd_plugin.errors import ConfigError


def cubic(x):
    """Keys' cubic convolution kernel with a = -0.5, evaluated element-wise on an array of distances."""
    ax = np.abs(x)
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) +
            (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def resize_matrix(in_len, scale):
    """(ceil(in_len * scale), in_len) float64 matrix M so that ``M @ signal`` resizes a signal along one axis."""
    out_len = math.ceil(in_len * scale)
    widen = min(scale, 1.0)  # antialiasing: stretch the kernel by 1/scale when shrinking
    width = 4.0 / widen
    centres = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinates
    left = np.floor(centres - width / 2)
    taps = left[:, None] + np.arange(math.ceil(width) + 2)[None, :]  # (out_len, taps), 1-based
    weights = widen * cubic(widen * (centres[:, None] - taps))
    weights /= weights.sum(axis=1, keepdims=True)
    cols = np.clip(taps, 1, in_len).astype(np.int64) - 1  # edge replicate
    matrix = np.zeros((out_len, in_len))
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps.shape[1]), cols.ravel()), weights.ravel())
    return matrix


def to_uint8(x):
    """MATLAB's double -> uint8 conversion: round half away from zero, then saturate to [0, 255]."""
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def imresize(img, scale):
    """Resize a uint8 image (H, W) or (H, W, C) by ``scale``; returns uint8 (ceil(H*scale), ceil(W*scale)[, C]).

    Same result as MATLAB ``imresize(img, scale, 'bicubic')``; see the module docstring.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(f'imresize expects a uint8 (H, W) or (H, W, C) array, got {img.dtype} {img.shape}')
    rows = resize_matrix(img.shape[0], scale)
    out = to_uint8(np.tensordot(rows, img.astype(np.float64), axes=(1, 0)))  # first axis (rows) first
    cols = resize_matrix(img.shape[1], scale)
    out = to_uint8(np.moveaxis(np.tensordot(cols, out.astype(np.float64), axes=(1, 1)), 0, 1))
    return out


def derive_lr(hr, scale):
    """(HR cropped to a multiple of ``scale``, its MATLAB-bicubic LR): what ``sd-prepare`` makes of an HR image."""
    height, width = hr.shape[:2]
    if min(height, width) < scale:
        raise ConfigError(f'an HR image of {width}x{height} is smaller than the scale {scale}')
    hr = hr[:height - height % scale, :width - width % scale]
    return hr, imresize(hr, 1 / scale)
