"""What routers look at, per LR tile of a ``tile_grid`` (tiles (y0, y1, x0, x1), row by row).

* ``edge_scores``: the mean absolute Laplacian of the tile's luma (0-255 scale): flat tiles score ~0, edges and
  texture high (ARM's score). Zero network cost.
* ``feature_stats``: per channel, the mean and standard deviation over the tile of the features after the first
  exit's block (the shared trunk), the input of the ``learned`` router.
* ``tile_errors``: per tile and output, the summed squared error of the output's Y channel against the ground truth
  (0-255 scale, output rounded to uint8 as the evaluation rounds it). ``oracle_gains`` = the cheapest output's error
  minus each output's: the true gain, which needs the ground truth (evaluation and calibration only).

Gains are reductions of the summed squared error: the image's PSNR follows the sum over its tiles, so gains of
tiles add up, and the greedy allocation can compare them across tiles. Per LR pixel (``/ area``) they are what the
calibration stores.
"""
import numpy as np
import torch
from torch.nn import functional as F

LUMA = (0.299, 0.587, 0.114)
Y_WEIGHTS = (65.481 / 255., 128.553 / 255., 24.966 / 255.)  # BT.601 Y of RGB in [0, 255], as sd-eval (offset 16
# dropped: a constant does not change errors)
LAPLACIAN = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]])


def tile_areas(grid):
    """(tiles,) LR pixels of each tile."""
    return np.array([(y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in grid], np.float64)


def tile_means(t, grid, scale=1):
    """(tiles, C) mean over each tile (``scale``: tiles in LR pixels, ``t`` at ``scale`` x resolution) of a
    (1, C, H, W) tensor."""
    return torch.stack([t[0, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale].mean(dim=(1, 2))
                        for y0, y1, x0, x1 in grid])


def edge_scores(x, grid):
    """(tiles,) mean absolute Laplacian of the luma (0-255) of the (1, 3, H, W) LR input in [0, 1], per tile; the
    Laplacian reads replicated border pixels."""
    luma = (x[0] * x.new_tensor(LUMA).view(3, 1, 1)).sum(0, keepdim=True)[None] * 255.
    lap = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode='replicate'), LAPLACIAN.to(x).view(1, 1, 3, 3)).abs()
    return tile_means(lap, grid)[:, 0].double().cpu().numpy()


def feature_stats(trunk, grid):
    """(tiles, 2 C) per-channel mean and standard deviation over each tile of the (1, C, H, W) trunk features."""
    mean = tile_means(trunk, grid)
    std = (tile_means(trunk * trunk, grid) - mean * mean).clamp_min(0).sqrt()
    return torch.cat([mean, std], 1).double().cpu().numpy()


def sr_luma(sr):
    """(H*s, W*s) float64 Y (0-255, no offset) of a (1, 3, H*s, W*s) SR output in [0, 1], rounded to uint8 first."""
    rgb = sr[0].clamp(0, 1).mul(255.).round().double()
    return (rgb * rgb.new_tensor(Y_WEIGHTS).view(3, 1, 1)).sum(0)


def tile_errors(outputs, gt_y, grid, scale):
    """(tiles, outputs) summed squared error of each output's Y against ``gt_y`` per tile (a tile reaching past the
    ground truth, e.g. over SwinIR's padding, sums the pixels it has).

    Args:
        outputs (list[Tensor]): the (1, 3, H*s, W*s) SR outputs, cheapest first (larger ones are cropped to ``gt_y``).
        gt_y (Tensor): (H*s, W*s) float64 Y of the ground truth, the same scale as ``sr_luma``.
    """
    columns = []
    for sr in outputs:
        sq = (sr_luma(sr)[:gt_y.shape[0], :gt_y.shape[1]] - gt_y) ** 2
        columns.append(torch.stack([sq[y0 * scale:y1 * scale, x0 * scale:x1 * scale].sum()
                                    for y0, y1, x0, x1 in grid]))
    return torch.stack(columns, 1).numpy()


def oracle_gains(outputs, gt_y, grid, scale):
    """(tiles, outputs) true reduction of the summed squared Y error of each output over the cheapest one."""
    errors = tile_errors(outputs, gt_y, grid, scale)
    return errors[:, :1] - errors


def gt_luma(gt):
    """(H, W) float64 Y (0-255, no offset) of a uint8 (H, W, 3) RGB or (H, W) grey ground truth (grey: its values,
    measured against the output's luma, as sd-eval does for grey images)."""
    gt = torch.from_numpy(np.ascontiguousarray(gt)).double()
    if gt.ndim == 2:
        return gt * (219. / 255.)  # grey = Y * 255 / 219 (no offset) on the output side; compare on Y's scale
    return (gt * gt.new_tensor(Y_WEIGHTS)).sum(-1)
