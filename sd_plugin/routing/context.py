"""The allocation that pays for context: greedy by predicted gain per MAC actually run.

Exact tiles make a deep tile expensive beyond its own MACs: its features after block j must be right on the tile
widened by ``block_halo * (D - j) + head_halo`` pixels (``sd_plugin.routing.execute``), so an isolated teacher tile
of 32 LR pixels in a 32-block network runs several times its own blocks as context, while a tile next to deep ones
shares theirs. This greedy counts, for every candidate upgrade (tile t from its output to a deeper one), the block
pixels not yet needed by the tiles already routed deep (per block, from integral images of the needed-pixel masks)
plus the change of its own head, and takes the upgrade with the most predicted gain per such MAC that still fits
the budget, until none fits or none gains. Halos at crop edges are left out of the estimate; ``plan.fit_route``
checks the exact count (``execute.planned_macs``) and tightens the budget when it is over.
"""
import numpy as np


def box_sums(integral, boxes):
    """Sum of a mask inside each (y0, y1, x0, x1) row of ``boxes`` (n, 4), from its (H + 1, W + 1) integral image."""
    y0, y1, x0, x1 = boxes.T
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def allocate_in_context(gains, grid, stages, height, width, budget):
    """(levels, MACs estimated) for the tiles of ``grid``: output index per tile, by the greedy of the module
    docstring. ``gains``: (tiles, outputs) predicted gains; ``budget``: share of the teacher's MACs, below 1 and at
    least the cheapest output's."""
    depths, first = stages.depths, stages.depths[0]
    cells = np.asarray(grid, np.int64).reshape(-1, 4)
    areas = (cells[:, 1] - cells[:, 0]) * (cells[:, 3] - cells[:, 2])
    block = stages.block_macs_per_pixel()
    heads = np.array([stages.head_macs_per_pixel(d) for d in depths])
    cap = budget * stages.macs_per_pixel(depths[-1]) * height * width
    spent = height * width * (stages.trunk_macs_per_pixel() + heads[0])
    need = np.zeros((depths[-1] - first, height, width), bool)  # need[j - first - 1]: features after block j
    level = np.zeros(len(cells), int)
    sign = np.array([-1, 1, -1, 1])
    limits = np.array([height, height, width, width])
    while True:
        integral = np.zeros((len(need), height + 1, width + 1), np.int64)
        integral[:, 1:, 1:] = need.cumsum(1).cumsum(2)
        best, best_ratio = None, 0.0
        for option in range(1, len(depths)):
            deeper = level < option
            if not deeper.any():
                continue
            depth, extra = depths[option], np.zeros(len(cells))
            for j in range(first + 1, depth + 1):
                boxes = np.clip(cells + (stages.block_halo * (depth - j) + stages.head_halo) * sign, 0, limits)
                box_area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
                extra += box_area - box_sums(integral[j - first - 1], boxes)
            extra = extra * block + areas * (heads[option] - heads[level])
            gain = gains[np.arange(len(cells)), option] - gains[np.arange(len(cells)), level]
            ok = deeper & (gain > 0) & (spent + extra <= cap) & (extra > 0)
            ratio = np.where(ok, gain / np.maximum(extra, 1e-9), -np.inf)
            t = int(np.argmax(ratio))
            if ratio[t] > best_ratio:
                best, best_ratio = (t, option, extra[t]), ratio[t]
        if best is None:
            return level, spent
        t, option, extra = best
        level[t], spent = option, spent + extra
        for j in range(first + 1, depths[option] + 1):
            y0, y1, x0, x1 = np.clip(cells[t] + (stages.block_halo * (depths[option] - j) + stages.head_halo) * sign,
                                     0, limits)
            need[j - first - 1, y0:y1, x0:x1] = True
