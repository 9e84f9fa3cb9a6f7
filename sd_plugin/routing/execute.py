"""The shared-trunk routed run: every LR tile gets the pixels of its own output, exactly, for the MACs of a mix.

1. The stem and the blocks up to the first exit run ONCE, on the whole image (one batched pass: every tile shares
   it, without any overlap).
2. Deeper, block by block, features are computed only where a tile routed deeper needs them: tile t routed to depth
   D needs the features after block j (j <= D) on the tile widened by ``block_halo * (D - j) + head_halo`` pixels
   (its receptive field from there on). Each grid tile takes the bounding box of what is needed inside it; boxes of
   neighbouring tiles are merged into strips (``merge_boxes``), each run from a crop ``block_halo`` wider (clamped
   at the image border, where the convolutions' own zero padding is the whole image's); crops of one shape run as
   one batch. Two feature buffers alternate, so a block reads only the previous block's values; a block needed on
   the whole image runs on it directly.
3. At depth D, the strips of tiles routed to D run head D on their features and LR widened by ``head_halo``; the
   head trims its context layer by layer (``staged``) and returns the strip's own pixels.

Every pixel that reaches an output was computed from real neighbours over its whole receptive field, so each tile
equals the same region of its output run on the whole image (float rounding aside: ``tests/test_routing.py``
checks 1e-5). ``crop_plan`` lists the crops without running them, so ``planned_macs`` (what the budget caps) is the
count ``executed_macs`` measures with ``torch.utils.flop_counter``.
"""
from collections import defaultdict
from itertools import groupby

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

MAX_BATCH = 64  # crops per batched call


def widen(box, margin, height, width):
    """``box`` = (y0, y1, x0, x1) widened by ``margin`` pixels on every side, clamped to the image."""
    y0, y1, x0, x1 = box
    return max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin)


def intersect(a, b):
    y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def needed_boxes(grid, route, depth, stages, height, width):
    """Per grid tile, the bounding box (or None) of the pixels whose features after block ``depth`` some tile routed
    to ``depth`` or deeper needs: the tile widened by ``block_halo * (D - depth) + head_halo``, clamped."""
    cells = np.asarray(grid, np.int64).reshape(-1, 4)
    deep = np.asarray(route) >= depth
    if not deep.any():
        return [None] * len(grid)
    margin = stages.block_halo * (np.asarray(route)[deep] - depth) + stages.head_halo
    wanted = cells[deep] + margin[:, None] * np.array([-1, 1, -1, 1])
    wanted = np.clip(wanted, 0, [height, height, width, width])
    lo = np.maximum(cells[:, None, [0, 2]], wanted[None, :, [0, 2]])  # (cells, wanted, (y0, x0))
    hi = np.minimum(cells[:, None, [1, 3]], wanted[None, :, [1, 3]])
    hit = (lo < hi).all(-1)
    big = np.iinfo(np.int64).max
    y0 = np.where(hit, lo[..., 0], big).min(1)
    x0 = np.where(hit, lo[..., 1], big).min(1)
    y1 = np.where(hit, hi[..., 0], -1).max(1)
    x1 = np.where(hit, hi[..., 1], -1).max(1)
    return [(int(a), int(b), int(c), int(d)) if h else None for a, b, c, d, h in zip(y0, y1, x0, x1, hit.any(1))]


def merge_boxes(grid, boxes):
    """Fewer, larger boxes covering ``boxes`` (one box or None per grid tile, each inside its tile): the boxes of
    neighbouring tiles of a row joined into one (their bounding box), then runs of rows with the same column span
    joined. Fewer crops mean fewer halos computed twice: with every tile deep, one box is the whole image."""
    rows = {}
    for cell, box in zip(grid, boxes):
        rows.setdefault((cell[0], cell[1]), []).append((cell, box))
    strips = []
    for cells in rows.values():
        run = []
        for cell, box in cells + [(None, None)]:
            if box is not None and (not run or run[-1][1] == cell[2]):
                run.append((box, cell[3]))
                continue
            if run:
                parts = [b for b, _ in run]
                strips.append((min(b[0] for b in parts), max(b[1] for b in parts), parts[0][2], parts[-1][3]))
            run = [(box, cell[3])] if box is not None else []
    merged = []
    for box in strips:
        last = merged[-1] if merged else None
        if last and last[1] == box[0] and (last[2], last[3]) == (box[2], box[3]):
            merged[-1] = (last[0], box[1], box[2], box[3])
        else:
            merged.append(box)
    return merged


def batched(jobs, fn):
    """Run ``fn`` on the crops of ``jobs`` = [(crop box, keep box, payload)], grouping crops of one shape and one
    relative keep box into batches of at most ``MAX_BATCH``; calls ``fn(crops, [payload...], keep slices)``."""
    groups = defaultdict(list)
    for crop, keep, payload in jobs:
        rel = (keep[0] - crop[0], keep[1] - crop[0], keep[2] - crop[2], keep[3] - crop[2])
        groups[(crop[1] - crop[0], crop[3] - crop[2], rel)].append((crop, keep, payload))
    for (_, _, rel), items in groups.items():
        for i in range(0, len(items), MAX_BATCH):
            fn(items[i:i + MAX_BATCH], rel)


def gather(t, boxes):
    """The (len(boxes), C, h, w) batch of the same-sized crops ``boxes`` of a (1, C, H, W) tensor (one crop: a
    view, no copy)."""
    if len(boxes) == 1:
        a, b, c, d = boxes[0]
        return t[..., a:b, c:d]
    return torch.cat([t[..., a:b, c:d] for a, b, c, d in boxes])


def margins(item):
    """(top, bottom, left, right) pixels of context of a (crop box, keep box, ...) job."""
    crop, keep = item[0], item[1]
    return keep[0] - crop[0], crop[1] - keep[1], keep[2] - crop[2], crop[3] - keep[3]


def run_trunk(stages, x):
    """(1, C, H, W) features after the first exit's block: the shared trunk, once on the whole image."""
    return stages.advance(stages.stem(x), 0, stages.trunk_depth)


def run_routed(stages, x, grid, route, trunk=None):
    """The routed SR output of ``x``.

    Args:
        stages: a staged adapter (``sd_plugin.routing.staged``).
        x (Tensor): (1, 3, H, W) LR input in [0, 1].
        grid (list[tuple]): LR tiles (y0, y1, x0, x1) covering the image without overlap
            (``sd_plugin.inference.tile_grid``).
        route (list[int]): the output depth of each tile, one of ``stages.depths``.
        trunk (Tensor | None): the features after the first exit's block on the whole image (``trunk``), when the
            router already computed them (the buffer is reused: overwritten); None: computed here.
    Returns:
        Tensor: (1, 3, H*s, W*s), each tile equal to its output's pixels.
    """
    if x.shape[0] != 1:
        raise ValueError(f'run_routed takes one image, got a batch of {x.shape[0]}')
    _, _, height, width = x.shape
    s = stages.scale
    out = x.new_empty((1, 3, height * s, width * s))
    feat = run_trunk(stages, x) if trunk is None else trunk  # the shared trunk: once, for every tile
    spare = None
    for (kind, depth), crops in groupby(crop_plan(stages, grid, route, height, width), key=lambda c: c[:2]):
        jobs = [(crop, keep, None) for _, _, crop, keep in crops]
        if kind == 'strip':
            def fn(items, rel, depth=depth):
                boxes = [c for c, _, _ in items]
                deep = stages.advance(gather(feat, boxes), stages.trunk_depth, depth)
                sr = stages.head(deep, depth, gather(x, boxes), margins(items[0]))
                for i, (_, (y0, y1, x0, x1), _) in enumerate(items):
                    out[..., y0 * s:y1 * s, x0 * s:x1 * s] = sr[i:i + 1]
            batched(jobs, fn)
            continue
        if kind == 'head':
            def fn(items, rel, depth=depth):
                boxes = [c for c, _, _ in items]
                sr = stages.head(gather(feat, boxes), depth, gather(x, boxes), margins(items[0]))
                for i, (_, (y0, y1, x0, x1), _) in enumerate(items):
                    out[..., y0 * s:y1 * s, x0 * s:x1 * s] = sr[i:i + 1]
            batched(jobs, fn)
            continue
        if len(jobs) == 1 and jobs[0][0] == (0, height, 0, width):  # the whole image: no copies
            feat = stages.advance(feat, depth - 1, depth)
            continue
        nxt = spare if spare is not None else torch.zeros_like(feat)

        def fn(items, rel, depth=depth, nxt=nxt):
            boxes = [c for c, _, _ in items]
            new = stages.advance(gather(feat, boxes), depth - 1, depth)
            for i, (_, (y0, y1, x0, x1), _) in enumerate(items):
                nxt[..., y0:y1, x0:x1] = new[i:i + 1, :, rel[0]:rel[1], rel[2]:rel[3]]
        batched(jobs, fn)
        feat, spare = nxt, feat
    return out


def crop_plan(stages, grid, route, height, width):
    """The crops ``run_routed`` runs, without running them: [(kind, depth, crop box, keep box)] with kind 'head'
    (head ``depth`` on the crop), 'block' (block ``depth``, from the features after block ``depth - 1``) or, for an
    arch that is not ``exact``, 'strip' (blocks after the first exit up to ``depth``, then head ``depth``)."""
    plan = []
    first = stages.trunk_depth
    for depth in [d for d in stages.depths if d < first]:  # outputs below the trunk (bicubic): heads only
        boxes = merge_boxes(grid, [t if d == depth else None for t, d in zip(grid, route)])
        plan += [('head', depth, widen(b, stages.head_halo, height, width), b) for b in boxes]
    if not stages.exact:
        for depth in [d for d in stages.depths if d >= first]:
            boxes = merge_boxes(grid, [t if d == depth else None for t, d in zip(grid, route)])
            plan += [('strip', depth, widen(b, stages.head_halo, height, width), b) for b in boxes]
        return plan
    for depth in range(first, max(route) + 1):
        if depth > first:
            boxes = needed_boxes(grid, route, depth, stages, height, width)
            plan += [('block', depth, widen(b, stages.block_halo, height, width), b) for b in merge_boxes(grid, boxes)]
        if depth in stages.depths:
            boxes = merge_boxes(grid, [t if d == depth else None for t, d in zip(grid, route)])
            plan += [('head', depth, widen(b, stages.head_halo, height, width), b) for b in boxes]
    return plan


def planned_macs(stages, grid, route, height, width):
    """Multiply-accumulates ``run_routed`` runs for this route (``executed_macs`` without running it): the trunk on
    the whole image, then each crop of ``crop_plan`` at its stage's MACs per pixel."""
    total = height * width * stages.trunk_macs_per_pixel()
    for kind, depth, crop, keep in crop_plan(stages, grid, route, height, width):
        crop_height, crop_width = crop[1] - crop[0], crop[3] - crop[2]
        if kind != 'block':
            total += stages.head_macs(depth, crop_height, crop_width, margins((crop, keep)))
        if kind == 'strip':
            total += crop_height * crop_width * stages.block_macs_per_pixel() * (depth - stages.trunk_depth)
        elif kind == 'block':
            total += crop_height * crop_width * stages.block_macs_per_pixel()
    return total


def executed_macs(stages, x, grid, route):
    """Multiply-accumulates ``run_routed`` actually runs (convolutions, ``torch.utils.flop_counter``; FLOPs / 2):
    the tiles' own MACs plus the context around deep tiles and the heads' halos."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        run_routed(stages, x, grid, route)
    return counter.get_total_flops() // 2
