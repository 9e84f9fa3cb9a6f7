"""``sd-eval --budget``: PSNR / SSIM, MACs and CPU time of routed mixes of a multi-exit checkpoint's outputs, against
its fixed outputs, on benchmark sets (the protocol of ``sd_plugin.evaluation.protocol``: rounded Y, border = scale).

Per set, each image runs:
* every fixed output on the whole image (one trunk pass for the measures; for the time, each output alone, as
  ``sd-upscale --exit`` runs it: ``forward_exits`` on a channels_last input);
* for each router and budget, ``sd_plugin.routing.plan.route_image`` (trunk, router, allocation, shared-trunk run),
  timed whole, the router included; ``oracle`` gets the true gains from the fixed outputs (its time leaves out
  computing them). The budget-1 run is the teacher everywhere, the same for every router.

Records (``evaluate_budget``'s list, the JSON): fixed outputs ``{"kind": "exit", "dataset", "exit", "share", "psnr",
"ssim", "ms", "psnr_images"}``; routed ``{"kind": "routed", "dataset", "router", "budget", "share" (MACs the tiles'
outputs cost / the teacher's, mean over images), "executed_share" (MACs actually run, the context around deep tiles
and the heads' halos included: ``sd_plugin.routing.execute.planned_macs``; the budget caps this one), "psnr",
"ssim", "ms", "teacher_ms" (the teacher alone on the same images, timed next to it), "tiles" {depth: count},
"psnr_images", "executed_images" (per image), "fixed_images" (images where one output ran on the whole image: at
budget 1 or below the cheapest output, or the best fixed output that fits when no mix predicted more)}``. ``ms`` is the
mean wall time per image with the torch threads in use. ``summary`` adds, per set, router and budget, the share of
the PSNR gap between the cheapest exit and the teacher that the mix recovers, and the comparison with the fixed
outputs at equal MACs: their PSNR linearly interpolated at the MACs the router actually ran (``versus_fixed``).

A router named ``ROUTER+bicubic`` (e.g. ``edge+bicubic``) routes with bicubic as one more choice below the cheapest
exit (``sd_plugin.routing.bicubic``); bicubic alone is then one more fixed record, ``{"kind": "bicubic", "exit": 0,
"share": 0, ...}`` (it runs no network). The gap stays the cheapest exit's to the teacher's, and ``vs_random``
compares with ``random+bicubic``.
"""
import statistics
import time

import numpy as np
import torch
from basicsr.utils import tensor2img
from tqdm import tqdm

from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.protocol import load_pairs, measure
from sd_plugin.inference import as_channels_last, load_sr_network, tile_grid
from sd_plugin.routing.bicubic import BICUBIC, WithBicubic, bicubic
from sd_plugin.routing.calibration import all_outputs, load_calibration, to_input
from sd_plugin.routing.plan import (
    DEFAULT_MARGIN,
    DEFAULT_ROUTE_TILE,
    check_budget,
    check_margin,
    check_route_tile,
    needs_gains,
    route_image,
)
from sd_plugin.routing.routers import ROUTERS, USER_ROUTERS
from sd_plugin.routing.scores import gt_luma, oracle_gains
from sd_plugin.routing.staged import staged

BICUBIC_SUFFIX = '+bicubic'  # a router's name with it: bicubic is one more choice (sd_plugin.routing.bicubic)
EVAL_ROUTERS = (*ROUTERS, *(r + BICUBIC_SUFFIX for r in ROUTERS))


def timed(fn):
    """(result, milliseconds) of ``fn()``."""
    start = time.perf_counter()
    result = fn()
    return result, 1000 * (time.perf_counter() - start)


def to_uint8(sr):
    return tensor2img(sr, rgb2bgr=False, min_max=(0, 1))


@torch.inference_mode()
def evaluate_budget(ckpt, data='datasets', sets=('Set5', 'Set14'), budgets=(0.6, 0.7, 0.85, 1.0),
                    routers=('edge', 'learned', 'random', 'oracle'), route_tile=DEFAULT_ROUTE_TILE, mode='y',
                    param_key=None, seed=0, progress=True, log=print, margin=DEFAULT_MARGIN):
    """The records of the module docstring (fixed outputs first, then routed, per set)."""
    for budget in budgets:
        check_budget(budget)
    check_margin(margin)
    for router in routers:
        if router not in EVAL_ROUTERS:
            raise ConfigError(f'--router {router!r}: must be one of {", ".join(EVAL_ROUTERS)}')
    net, info = load_sr_network(ckpt, param_key=param_key)
    stages = staged(net)
    check_route_tile(stages, route_tile)
    bases = {r: r.removesuffix(BICUBIC_SUFFIX) for r in routers}
    with_bicubic = WithBicubic(stages) if any(r.endswith(BICUBIC_SUFFIX) for r in routers) else None
    needed = any(bases[r] in USER_ROUTERS and needs_gains(with_bicubic if r.endswith(BICUBIC_SUFFIX) else stages, b)
                 for r in routers for b in budgets)  # not at 1, nor below the cheapest output
    calibration = load_calibration(ckpt, stages.depths, info['param_key']) if needed else None
    scale, teacher = stages.scale, stages.depths[-1]
    costs = {d: stages.macs_per_pixel(d) / stages.macs_per_pixel(teacher) for d in stages.depths}
    pairs = {name: load_pairs(data, name, scale) for name in sets}  # every set checked before the slow work
    log(f'sd-eval --budget: {ckpt} [{info["param_key"] or "state dict"}] outputs {stages.depths} (MAC shares '
        f'{", ".join(f"{d}: {c:.3f}" for d, c in costs.items())}); route tile {route_tile} LR px; margin {margin:g}; '
        f'{torch.get_num_threads()} thread(s)')
    if stages.note:
        log(f'sd-eval --budget: {stages.note}')
    records = []
    for name, images in pairs.items():
        fixed = {d: {'scores': [], 'ms': []} for d in ([BICUBIC] if with_bicubic else []) + stages.depths}
        routed = {(r, b): {'scores': [], 'ms': [], 'teacher_ms': [], 'share': [], 'executed': [], 'tiles': {},
                           'fixed': 0}
                  for r in routers for b in budgets}
        bar = tqdm(total=len(images), desc=f'{name} routed', unit='image', disable=not progress)
        for index, (_, gt, lr) in enumerate(images):
            x = as_channels_last(to_input(lr))
            outputs = all_outputs(stages, x)
            for d, sr in zip(stages.depths, outputs):
                fixed[d]['scores'].append(measure(to_uint8(sr), gt, scale, mode))
                fixed[d]['ms'].append(timed(lambda d=d: net.forward_exits(x, [d]))[1])
            if with_bicubic:
                up, ms = timed(lambda: bicubic(x, scale))
                fixed[BICUBIC]['scores'].append(measure(to_uint8(up), gt, scale, mode))
                fixed[BICUBIC]['ms'].append(ms)
                outputs = [up, *outputs]  # the oracle's columns for a WithBicubic network: bicubic first
            oracle = {}
            for router in routers:
                routed_stages = with_bicubic if router.endswith(BICUBIC_SUFFIX) else stages
                for budget in budgets:
                    if bases[router] == 'oracle' and budget < 1 and router not in oracle:
                        grid = tile_grid(*stages.prepare(x).shape[2:], route_tile)  # route_image's grid
                        mine = outputs if routed_stages is with_bicubic else outputs[-len(stages.depths):]
                        oracle[router] = oracle_gains(mine, gt_luma(gt), grid, scale)
                    (sr, plan), ms = timed(lambda r=router, b=budget: route_image(
                        routed_stages, x, b, bases[r], route_tile, calibration, seed=seed + index,
                        gains=oracle.get(r) if b < 1 else None, margin=margin))
                    slot = routed[router, budget]
                    slot['ms'].append(ms)
                    slot['teacher_ms'].append(timed(lambda: net.forward_exits(x, [teacher]))[1])
                    slot['scores'].append(measure(to_uint8(sr), gt, scale, mode))
                    slot['share'].append(plan.spent)
                    slot['executed'].append(plan.executed)
                    slot['fixed'] += plan.fixed is not None
                    for d, n in plan.counts.items():
                        slot['tiles'][d] = slot['tiles'].get(d, 0) + n
            bar.update(1)
        bar.close()
        for d in stages.depths:
            records.append(fixed_record(name, d, costs[d], fixed[d]))
        if with_bicubic:
            records.append({**fixed_record(name, BICUBIC, 0.0, fixed[BICUBIC]), 'kind': 'bicubic'})
        for (router, budget), slot in routed.items():
            records.append(routed_record(name, router, budget, slot))
    return records


def mean_scores(scores):
    psnr, ssim = np.mean(scores, axis=0)
    return round(float(psnr), 4), round(float(ssim), 4)


def fixed_record(dataset, depth, share, slot):
    psnr, ssim = mean_scores(slot['scores'])
    return {'kind': 'exit', 'dataset': dataset, 'exit': depth, 'share': round(share, 4), 'psnr': psnr,
            'ssim': ssim, 'ms': round(statistics.mean(slot['ms']), 2),
            'psnr_images': [round(s[0], 4) for s in slot['scores']]}


def routed_record(dataset, router, budget, slot):
    psnr, ssim = mean_scores(slot['scores'])
    return {'kind': 'routed', 'dataset': dataset, 'router': router, 'budget': budget,
            'share': round(float(statistics.mean(slot['share'])), 4),
            'executed_share': round(float(statistics.mean(slot['executed'])), 4),
            'psnr': psnr, 'ssim': ssim, 'ms': round(statistics.mean(slot['ms']), 2),
            'teacher_ms': round(statistics.mean(slot['teacher_ms']), 2),
            'tiles': {str(d): n for d, n in sorted(slot['tiles'].items())}, 'fixed_images': slot['fixed'],
            'psnr_images': [round(s[0], 4) for s in slot['scores']],
            'executed_images': [round(float(e), 4) for e in slot['executed']]}


def fixed_at_equal_macs(fixed, macs):
    """The fixed outputs' PSNR at ``macs`` (a share of the teacher's MACs): ``fixed`` = [(share, PSNR)] of each
    fixed output, linearly interpolated between the two outputs around ``macs`` (outside them: the nearest one's)."""
    shares, psnrs = zip(*sorted(fixed))
    return float(np.interp(macs, shares, psnrs))


def paired_counts(diffs):
    """{'ahead', 'tied', 'behind'}: how many per-image differences are above, within or below +-1e-4 dB."""
    diffs = np.asarray(diffs)
    return {'ahead': int((diffs > 1e-4).sum()), 'tied': int((abs(diffs) <= 1e-4).sum()),
            'behind': int((diffs < -1e-4).sum())}


def versus_fixed(routed, fixed):
    """(fixed outputs' PSNR at the router's mean share of MACs run, per-image counts against the fixed outputs at
    each image's own MACs run; None for records without ``executed_images``). ``fixed``: the fixed records the
    router could have run instead (the exits and the teacher; with ``+bicubic``, bicubic too)."""
    level = fixed_at_equal_macs([(f['share'], f['psnr']) for f in fixed], routed['executed_share'])
    if 'executed_images' not in routed:  # a JSON written before issue 26
        return level, None
    own = [fixed_at_equal_macs([(f['share'], f['psnr_images'][i]) for f in fixed], macs)
           for i, macs in enumerate(routed['executed_images'])]
    return level, paired_counts(np.subtract(routed['psnr_images'], own))


def summary(records):
    """Per set, router and budget < 1: ``gap_recovered`` = (PSNR - cheapest exit's) / (teacher's - cheapest exit's),
    ``vs_random`` = PSNR minus the random router's at the same budget (None without it), ``images_vs_random`` =
    ``paired_counts`` of the router's PSNR minus the random router's, per image; ``fixed_at_equal_macs`` (the fixed
    outputs' PSNR interpolated at the MACs actually run: ``versus_fixed``), ``vs_fixed`` = PSNR minus it,
    ``images_vs_fixed`` (per image, at its own MACs run), ``fixed_images`` (images where one output ran everywhere);
    ``time_ratio`` = routed ms / teacher ms (same images, timed side by side)."""
    rows = []
    for dataset in dict.fromkeys(r['dataset'] for r in records):
        exits = sorted((r for r in records if r['dataset'] == dataset and r['kind'] == 'exit'), key=lambda r: r['exit'])
        bicubic = [r for r in records if r['dataset'] == dataset and r['kind'] == 'bicubic']
        low, high = exits[0]['psnr'], exits[-1]['psnr']
        routed = [r for r in records if r['dataset'] == dataset and r['kind'] == 'routed' and r['budget'] < 1]
        for r in routed:
            plus = r['router'].endswith(BICUBIC_SUFFIX)
            rand = next((q for q in routed if q['router'] == 'random' + (BICUBIC_SUFFIX if plus else '')
                         and q['budget'] == r['budget']), None)  # the random router with the same choices
            level, images = versus_fixed(r, exits + (bicubic if plus else []))
            rows.append({'dataset': dataset, 'router': r['router'], 'budget': r['budget'], 'share': r['share'],
                         'gap_recovered': round((r['psnr'] - low) / (high - low), 3) if high != low else None,
                         'vs_random': None if rand is None else round(r['psnr'] - rand['psnr'], 4),
                         'images_vs_random': None if rand is None else paired_counts(
                             np.subtract(r['psnr_images'], rand['psnr_images'])),
                         'fixed_at_equal_macs': round(level, 4), 'vs_fixed': round(r['psnr'] - level, 4),
                         'images_vs_fixed': images, 'fixed_images': r.get('fixed_images'),
                         'time_ratio': round(r['ms'] / r['teacher_ms'], 3)})
    return rows
