"""Comparison pictures: the same regions of HR, bicubic and model outputs side by side, so SR can be judged by eye
(the library behind ``sd-compare``, the quickstart's picture and the training-time TensorBoard grid).

A grid has one row per crop and one column per panel: HR, bicubic (``sd_plugin.data.bicubic.imresize`` of the LR,
the bicubic of ``sd-eval``), then each model output. Every panel is labelled with its name and its PSNR, measured
by ``sd_plugin.evaluation.protocol.measure`` (Y channel, border = scale) on the WHOLE image, not on the crop: the
number ``sd-eval`` prints for that image. Crops are enlarged by an integer factor with nearest-neighbour, so every
pixel shows as a square block. Images are RGB (H, W, 3) uint8 arrays here (grey ones (H, W)); files are read and
written by the caller.
"""
from os import path as osp

import cv2
import numpy as np

from sd_plugin.data.bicubic import derive_lr, imresize  # noqa: F401  (derive_lr: imported from here too)
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.protocol import as_rgb, measure, model_sr
from sd_plugin.inference import load_sr_network

DEFAULT_CROP = 64  # side (HR pixels) of the default centre crop
DISPLAY = 256  # about this many screen pixels per crop side when the zoom is automatic
GUTTER = 4  # white pixels between panels
LABEL_HEIGHT = 22
FONT = cv2.FONT_HERSHEY_SIMPLEX


def image_scale(hr, lr):
    """The integer scale s with HR = s x LR exactly in both directions; ConfigError otherwise."""
    (h, w), (lh, lw) = hr.shape[:2], lr.shape[:2]
    if lh < 1 or lw < 1 or h % lh or w % lw or h // lh != w // lw or h // lh < 2:
        raise ConfigError(f'HR {w}x{h} is not an integer multiple (2 or more) of LR {lw}x{lh} in both directions')
    return h // lh


def match_hr(hr, lr, scale=None):
    """(HR cropped at the bottom / right to ``scale`` x the LR's size, scale): an HR image that is not a multiple of
    the scale (as the originals of the benchmark sets) is paired with an LR made from its crop. ``scale`` None:
    read off the sizes. ConfigError when the two do not match."""
    (h, w), (lh, lw) = hr.shape[:2], lr.shape[:2]
    s = scale or (h // lh if lh else 0)
    if s < 2 or not (0 <= h - lh * s < s and 0 <= w - lw * s < s):
        which = f'x{scale} ' if scale else ''
        raise ConfigError(f'HR {w}x{h} does not match LR {lw}x{lh} {which}(HR must be scale x LR, up to the scale '
                          f'minus one pixel)')
    return hr[:lh * s, :lw * s], s


def check_names(names):
    """Model panel names: distinct, and neither 'HR' nor 'bicubic' (the two panels always shown)."""
    if len(set(names)) != len(names) or {'HR', 'bicubic'} & set(names):
        raise ConfigError(f'model names {names}: must be distinct and neither "HR" nor "bicubic"')


def parse_crop(text):
    """'X,Y,W,H' (HR pixels) -> (x, y, w, h); ConfigError naming ``--crop`` otherwise."""
    parts = text.split(',')
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f'--crop {text}: expected X,Y,W,H, four integers in HR pixels') from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise ConfigError(f'--crop {text}: X and Y must be >= 0, W and H >= 1')
    return x, y, w, h


def check_crop(crop, hr):
    """``crop`` (x, y, w, h) unchanged if it lies inside ``hr``; ConfigError naming it otherwise."""
    x, y, w, h = crop
    height, width = hr.shape[:2]
    if x < 0 or y < 0 or w < 1 or h < 1 or x + w > width or y + h > height:
        raise ConfigError(f'--crop {x},{y},{w},{h}: not inside the {width}x{height} HR image')
    return crop


def centre_crop(hr, side=DEFAULT_CROP):
    """(x, y, w, h) of the centred square of ``side`` pixels (less in an image smaller than that)."""
    height, width = hr.shape[:2]
    w, h = min(side, width), min(side, height)
    return (width - w) // 2, (height - h) // 2, w, h


def auto_zoom(crops):
    """The integer nearest-neighbour factor that shows the largest crop at about ``DISPLAY`` pixels (at least 1)."""
    return max(1, round(DISPLAY / max(max(w, h) for _, _, w, h in crops)))


def draw_label(cell_width, text):
    """A white (LABEL_HEIGHT, cell_width, 3) band with ``text`` in black, shrunk (and cut) to fit the width."""
    band = np.full((LABEL_HEIGHT, cell_width, 3), 255, np.uint8)
    size = 0.5
    while size > 0.3 and cv2.getTextSize(text, FONT, size, 1)[0][0] > cell_width - 4:
        size -= 0.05
    while text and cv2.getTextSize(text, FONT, size, 1)[0][0] > cell_width - 4:
        text = text[:-1]
    cv2.putText(band, text, (2, LABEL_HEIGHT - 7), FONT, size, (0, 0, 0), 1, cv2.LINE_AA)
    return band


def render_grid(panels, crops, zoom=0):
    """Draw a grid: one row per crop, one column per panel, each cell labelled above.

    Args:
        panels (list[tuple[str, ndarray]]): (label, image) pairs, images of one size, RGB (H, W, 3) or grey (H, W)
            uint8 (shown as grey RGB).
        crops (list[tuple[int, int, int, int]]): (x, y, w, h) regions in image pixels, checked to lie inside.
        zoom (int): nearest-neighbour enlargement; 0: ``auto_zoom(crops)``.
    Returns:
        ndarray: (H, W, 3) RGB uint8 grid on a white background.
    """
    if not panels or not crops:
        raise ConfigError('a comparison grid needs at least one panel and one crop')
    shape = panels[0][1].shape[:2]
    for label, img in panels:
        if img.shape[:2] != shape:
            raise ConfigError(f'panel {label!r}: {img.shape[1]}x{img.shape[0]}, not {shape[1]}x{shape[0]} as the '
                              f'others')
    crops = [check_crop(c, panels[0][1]) for c in crops]
    zoom = zoom or auto_zoom(crops)
    rows = []
    for x, y, w, h in crops:
        cells = []
        for label, img in panels:
            cell = as_rgb(img)[y:y + h, x:x + w].repeat(zoom, axis=0).repeat(zoom, axis=1)
            cells.append(np.concatenate([draw_label(w * zoom, label), cell]))
        gutter = np.full((LABEL_HEIGHT + h * zoom, GUTTER, 3), 255, np.uint8)
        rows.append(np.concatenate([part for cell in cells for part in (cell, gutter)][:-1], axis=1))
    width = max(r.shape[1] for r in rows)
    grid = [np.pad(r, ((0, GUTTER), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.ascontiguousarray(np.concatenate(grid)[:-GUTTER])


def psnr_label(name, psnr):
    return f'{name} {psnr:.2f} dB'


def comparison_grid(hr, lr, outputs, crops=None, zoom=0):
    """The comparison picture of one image: HR, bicubic, then each model output, for every crop.

    Args:
        hr (ndarray): RGB (H, W, 3) or grey (H, W) uint8 ground truth, ``scale`` times the LR in both directions.
        lr (ndarray): its LR image, as ``hr``.
        outputs (list[tuple[str, ndarray]]): (name, SR image) of each model, RGB uint8 of the HR's size (a model's
            output for a grey image is RGB: it is measured on grey, as sd-eval does).
        crops (list[tuple[int, int, int, int]] | None): (x, y, w, h) in HR pixels; None: one ``centre_crop``.
        zoom (int): nearest-neighbour enlargement; 0: automatic.
    Returns:
        tuple[ndarray, list[str], dict[str, float]]: the RGB uint8 grid, the panel labels in order (``'HR'``,
        ``'bicubic 29.37 dB'``, ...) and {name: PSNR} of the whole images (Y, border = scale, ``measure``).
    """
    scale = image_scale(hr, lr)
    check_names([name for name, _ in outputs])
    panels = [('bicubic', imresize(lr, scale)), *outputs]
    psnrs = {name: measure(img, hr, scale)[0] for name, img in panels}
    labelled = [('HR', hr), *((psnr_label(name, psnrs[name]), img) for name, img in panels)]
    grid = render_grid(labelled, crops or [centre_crop(hr)], zoom)
    return grid, [label for label, _ in labelled], psnrs


def parse_model(text):
    """'NAME=CKPT[:EXIT]' -> (name, ckpt, exit or None); ConfigError naming ``--model`` otherwise."""
    name, sep, rest = text.partition('=')
    if not sep or not name or not rest:
        raise ConfigError(f'--model {text}: expected NAME=CKPT or NAME=CKPT:EXIT')
    ckpt, exit = rest, None
    head, colon, tail = rest.rpartition(':')
    if colon and tail.isdigit() and head:
        ckpt, exit = head, int(tail)
    if not osp.isfile(ckpt):
        raise ConfigError(f'--model {text}: no such file {ckpt}')
    return name, ckpt, exit


def load_model(ckpt, exit=None):
    """(network, info) of checkpoint ``ckpt`` at output ``exit`` (None: its plain output), by ``load_sr_network``."""
    return load_sr_network(ckpt, exit)


def model_output(net, lr):
    """The SR image (RGB uint8) of a network ``load_model`` returned for a uint8 LR image (grey replicated to RGB),
    by ``run_network`` and rounded as sd-eval rounds it."""
    return model_sr(net, lr, [net.deploy_exit])[net.deploy_exit]


def tensorboard_grid(gt, outputs, side=96, zoom=2):
    """A small labelled grid for TensorBoard: the centre crop (``side`` pixels, enlarged ``zoom`` times) of the GT
    and of each output.

    Args:
        gt (ndarray): (H, W, 3) BGR uint8 (as ``basicsr.utils.tensor2img`` returns it).
        outputs (list[tuple[str, ndarray]]): (label, BGR uint8 image of the GT's size).
    Returns:
        ndarray: (H', W', 3) RGB uint8, for ``add_image(..., dataformats='HWC')``.
    """
    panels = [('GT', gt[..., ::-1]), *((label, img[..., ::-1]) for label, img in outputs)]
    return render_grid(panels, [centre_crop(gt, side)], zoom)
