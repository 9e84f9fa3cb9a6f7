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


def box_sums(integral, layers, boxes):
    """Sum of mask ``layers[k]`` inside box ``boxes[k]`` = (y0, y1, x0, x1), from the masks' integral images
    (masks, H + 1, W + 1); ``layers`` and ``boxes`` broadcast together."""
    y0, y1, x0, x1 = np.moveaxis(boxes, -1, 0)
    return (integral[layers, y1, x1] - integral[layers, y0, x1] - integral[layers, y1, x0]
            + integral[layers, y0, x0])


def allocate_in_context(gains, grid, stages, height, width, budget, start=0, min_ratio=0.0):
    """(levels, MACs estimated, upgrades) for the tiles of ``grid``: the output index of each tile by the greedy of
    the module docstring, its estimated MACs, and the upgrades [(tile, output index)] in the order taken (so a caller
    can keep a prefix). ``gains``: (tiles, outputs) predicted gains; ``budget``: share of the teacher's MACs;
    ``start``: the output index every tile starts from (0: the cheapest; else a fixed output whose context is the
    whole image, which the greedy upgrades tiles from); ``min_ratio``: the least predicted gain per MAC run an upgrade
    must bring to be taken.

    The masks are kept in units of ``unit`` pixels (2 when both halos and the tiles' starts are even: margins and
    tile edges then fall on units, except tile ends at the image border, rounded up), which makes the estimate 4
    times cheaper."""
    depths, first = stages.depths, stages.trunk_depth
    cells = np.asarray(grid, np.int64).reshape(-1, 4)
    even = stages.block_halo % 2 == 0 and stages.head_halo % 2 == 0 and not (cells[:, [0, 2]] % 2).any()
    unit = 2 if even else 1
    areas = (cells[:, 1] - cells[:, 0]) * (cells[:, 3] - cells[:, 2])
    units = -(-cells // unit)
    units[:, [0, 2]] = cells[:, [0, 2]] // unit
    rows, cols = -(-height // unit), -(-width // unit)
    block = stages.block_macs_per_pixel() * unit * unit
    heads = np.array([stages.head_macs_per_pixel(d) for d in depths])
    cap = budget * stages.macs_per_pixel(depths[-1]) * height * width
    blocks = max(0, depths[start] - first)  # blocks after the trunk that every tile starts with
    spent = height * width * (stages.trunk_macs_per_pixel() + heads[start] + blocks * stages.block_macs_per_pixel())
    need = np.zeros((depths[-1] - first, rows, cols), bool)  # need[j - first - 1]: features after block j
    need[:blocks] = True
    integral = np.zeros((len(need), rows + 1, cols + 1), np.int64)
    integral[:, 1:, 1:] = need.cumsum(1).cumsum(2)
    level = np.full(len(cells), start)
    sign, limits = np.array([-1, 1, -1, 1]), np.array([rows, rows, cols, cols])
    index = np.arange(len(cells))

    def context_boxes(depth, which=slice(None)):
        """(blocks, tiles, 4) unit boxes the tiles need after each block first+1 .. depth, when routed to depth."""
        margins = (stages.block_halo * (depth - np.arange(first + 1, depth + 1)) + stages.head_halo) // unit
        return np.clip(units[which][None] + margins[:, None, None] * sign, 0, limits)

    candidates = []
    for option in range(1, len(depths)):
        boxes = context_boxes(depths[option])
        layers = np.arange(len(boxes))[:, None]
        candidates.append((option, boxes, layers, ((boxes[..., 1] - boxes[..., 0])
                                                   * (boxes[..., 3] - boxes[..., 2])).sum(0)))
    upgrades = []
    while True:
        best, best_ratio = None, min_ratio
        for option, boxes, layers, box_area in candidates:
            deeper = level < option
            if not deeper.any():
                continue
            extra = (box_area - box_sums(integral, layers, boxes).sum(0)) * block
            extra = extra + areas * (heads[option] - heads[level])
            gain = gains[index, option] - gains[index, level]
            ok = deeper & (gain > 0) & (spent + extra <= cap) & (extra > 0)
            ratio = np.where(ok, gain / np.maximum(extra, 1e-9), -np.inf)
            t = int(np.argmax(ratio))
            if ratio[t] > best_ratio:
                best, best_ratio = (t, option, extra[t]), ratio[t]
        if best is None:
            return level, spent, upgrades
        t, option, extra = best
        level[t], spent = option, spent + extra
        upgrades.append((t, option))
        boxes = context_boxes(depths[option], [t])[:, 0]
        for k, (y0, y1, x0, x1) in enumerate(boxes):
            need[k, y0:y1, x0:x1] = True
        integral[:len(boxes), 1:, 1:] = need[:len(boxes)].cumsum(1).cumsum(2)
