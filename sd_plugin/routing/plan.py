"""One routed upscale: trunk, router, allocation, shared-trunk run (the steps of ``sd_plugin.routing``, in order)."""
from dataclasses import dataclass, field

import numpy as np
import torch

from sd_plugin.errors import ConfigError
from sd_plugin.inference import tile_grid
from sd_plugin.routing.context import allocate_in_context
from sd_plugin.routing.execute import planned_macs, run_routed, run_trunk
from sd_plugin.routing.routers import predict_gains
from sd_plugin.routing.scores import tile_areas

DEFAULT_ROUTE_TILE = 32  # LR pixels (128 HR pixels at x4); see the README's routing section for the measurement
DEFAULT_MARGIN = 1.0  # standard errors of the predicted gain the mix must be ahead by (``against_fixed``)


@dataclass
class RoutePlan:
    """What a routed upscale chose: ``grid`` (LR tiles (y0, y1, x0, x1)), ``route`` (the output depth of each tile),
    ``depths`` (the network's outputs), ``spent`` (the share of the teacher's MACs on this image that the tiles'
    outputs cost), ``executed`` (the share actually run: ``spent`` plus the context deep tiles read around them and
    the heads' halos; what the budget caps), ``budget``, ``router``, ``note`` (a line when the budget could not be
    met as asked), ``counts`` {depth: tiles}, ``unit``, what a depth counts (the arch adapter's word), ``fixed``
    (the output that ran on the whole image, when one output ran everywhere; None: a mix ran) and ``versus`` (None,
    or the comparison ``route_image`` made: the predicted gains of the routed mix, of the mix upgraded from the best
    fitting fixed output and of that output, and its depth: ``against_fixed``)."""
    grid: list
    route: list
    depths: list
    spent: float
    executed: float
    budget: float
    router: str
    note: str = None
    counts: dict = field(default_factory=dict)
    unit: str = 'block'
    fixed: int = None
    versus: dict = None


def fit_route(stages, gains, grid, budget, height, width, retries=3, start=0, min_ratio=0.0):
    """(route, spent, executed, note): the output depth of each tile, the share of the teacher's MACs the tiles'
    own outputs cost, the share actually run (``execute.planned_macs``: context and halos included) and a note.

    Budget 1: the teacher everywhere. Below the cheapest output: the cheapest everywhere, and a note saying so.
    Otherwise ``context.allocate_in_context`` (greedy by predicted gain per MAC run, at least ``min_ratio``, every
    tile starting from output index ``start``, which must fit). Its estimate leaves crop halos out: when the exact
    count is over the budget, the greedy runs again with the budget lowered by the excess (up to ``retries`` times),
    and the longest prefix of the full-budget run's upgrades that fits is found (bisection on the exact count); of
    these, the one that spends most on the tiles' own outputs."""
    areas = tile_areas(grid)
    costs = np.array([stages.macs_per_pixel(d) for d in stages.depths])
    teacher = costs[-1] * height * width

    def result(levels):
        route = [stages.depths[i] for i in levels]
        return (route, float((areas * costs[levels]).sum() / teacher),
                planned_macs(stages, grid, route, height, width) / teacher, None)

    if budget >= 1:
        return [stages.depths[-1]] * len(grid), 1.0, 1.0, None
    cheapest = result(np.full(len(grid), start))
    if not needs_gains(stages, budget):
        return (*cheapest[:3], f'budget {budget:g} is below the cheapest output ({costs[0] / costs[-1]:.3f} of the '
                               'teacher): the cheapest output runs everywhere')
    fitting, target, sequence = [cheapest], budget, None
    for attempt in range(retries + 1):
        levels, _, upgrades = allocate_in_context(gains, grid, stages, height, width, target, start, min_ratio)
        sequence = sequence or upgrades  # the longest: from the full budget
        trial = result(levels)
        if trial[2] <= budget:
            if attempt == 0:
                return trial
            fitting.append(trial)
            break
        target -= trial[2] - budget

    def prefix(n):
        levels = np.full(len(grid), start)
        for t, option in sequence[:n]:
            levels[t] = option
        return result(levels)

    low, high = 0, len(sequence)  # prefix(low) fits, prefix(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        trial = prefix(middle)
        if trial[2] <= budget:
            low = middle
            fitting.append(trial)
        else:
            high = middle
    return max(fitting, key=lambda r: r[1])  # the most MACs on the tiles' own outputs


def needs_gains(stages, budget):
    """Whether routing under ``budget`` has a choice to make, so needs the router's gains (and an ``edge`` or
    ``learned`` router its calibration): not at 1 (the teacher everywhere) nor below the cheapest output (it runs
    everywhere)."""
    return stages.macs_per_pixel(stages.depths[0]) / stages.macs_per_pixel(stages.depths[-1]) <= budget < 1


def best_fixed(stages, gains, grid, budget, height, width):
    """(depth, predicted gain, slope) of the best fixed output that fits ``budget``: of the outputs that, run on the
    whole image (exactly, without context), cost at most ``budget``, the one with the most predicted gain (summed
    over the tiles: ``gains``' column; ties: the cheaper). The cheapest output is always a candidate (``fit_route``
    runs it when nothing fits). ``slope``: the most predicted gain per MAC that moving the whole image from it to a
    deeper output would bring (0 when none gains)."""
    macs = np.array([stages.macs_per_pixel(d) for d in stages.depths]) * height * width
    totals = gains.sum(0)
    best = 0
    for i, depth in enumerate(stages.depths[1:], 1):
        if macs[i] > budget * macs[-1]:
            break  # it cannot fit, nor can the deeper ones
        if planned_macs(stages, grid, [depth] * len(grid), height, width) <= budget * macs[-1] and \
                totals[i] > totals[best]:
            best = i
    return stages.depths[best], float(totals[best]), fixed_slope(totals, macs, best)


def fixed_slope(totals, macs, i):
    """The most gain per MAC that moving the whole image from output ``i`` to a deeper one brings (0 when none
    gains): ``totals`` and ``macs``, (outputs,) each, are every output's whole-image gain and MACs."""
    return float(max([0.0, *((totals[i + 1:] - totals[i]) / (macs[i + 1:] - macs[i]))]))


def against_fixed(stages, gains, grid, budget, height, width, error=0.0):
    """(the fit to run, versus). Two greedy mixes (``fit_route``), each taking only upgrades that bring at least the
    predicted gain per MAC of moving the whole image deeper from the best fixed output that fits (``best_fixed``):
    one from the cheapest output, one from that fixed output, upgrading tiles from it. The one that predicts more
    gain runs (ties: the latter). The latter is that fixed output on the whole image, exactly, when no upgrade pays
    or fits, so the plan that runs never predicts less than the best fixed output.

    The safety margin: a mix's predicted gain is an estimate, so it runs only when it is ahead of the fixed exits'
    predicted gain at the MACs it runs (``level``: the fixed output's gain plus ``slope`` times the MACs the mix runs
    beyond it; what ``sd-eval --vs-fixed`` compares with, in PSNR) by more than ``error`` (the router's error of the
    gain per LR pixel, in the units the margin asks for: see ``route_margin``) times the root of the summed squared
    areas of the tiles it changes (the standard error of a sum of independent per-tile errors: error x tile area x
    sqrt(tiles) for equal tiles); otherwise the fixed output
    runs on the whole image. ``error`` 0: no margin (a mix runs when it predicts more). ``versus`` = {'mix',
    'upgraded', 'fixed': the predicted gains of the three, 'depth': the fixed output, 'level' and 'margin': of the
    better mix}."""
    index = {d: i for i, d in enumerate(stages.depths)}

    def predicted(route):
        return float(gains[np.arange(len(grid)), [index[d] for d in route]].sum())

    depth, gain, slope = best_fixed(stages, gains, grid, budget, height, width)
    mix = fit_route(stages, gains, grid, budget, height, width, min_ratio=slope)
    upgraded = (fit_route(stages, gains, grid, budget, height, width, start=index[depth], min_ratio=slope)
                if index[depth] else mix)  # (from the cheapest output: the same greedy)
    versus = {'mix': predicted(mix[0]), 'upgraded': predicted(upgraded[0]), 'fixed': gain, 'depth': depth}
    chosen = mix if versus['mix'] > versus['upgraded'] else upgraded
    changed = tile_areas(grid)[np.array(chosen[0]) != depth]
    teacher = stages.macs_per_pixel(stages.depths[-1]) * height * width
    extra = chosen[2] * teacher - planned_macs(stages, grid, [depth] * len(grid), height, width)
    versus.update(level=gain + slope * extra, margin=error * float(np.sqrt((changed ** 2).sum())))
    if error > 0 and predicted(chosen[0]) - versus['level'] <= versus['margin']:  # not surely ahead: the fixed output
        chosen = fit_route(stages, gains, grid, budget, height, width, start=index[depth], min_ratio=np.inf)
    return chosen, versus


def route_margin(router, calibration, margin=DEFAULT_MARGIN):
    """The ``error`` ``against_fixed`` takes: ``margin`` (standard errors; 0: none) times the router's held-out
    error of the decision (the calibration's ``ROUTER_mix_residual``: RMS of a chosen mix's predicted minus true
    advantage over the fixed exits, per root summed squared area of its changed tiles; ``calibration.mix_errors``),
    or, in a calibration without it, its held-out residual (``ROUTER_residual``: RMS of its predicted minus true gain
    per LR pixel, per tile); ``oracle`` and ``random``: 0, their gains are not predicted."""
    if router not in ('edge', 'learned') or not margin:
        return 0.0
    if calibration.get(f'{router}_mix_residual') is not None:
        return margin * calibration[f'{router}_mix_residual']
    if calibration.get(f'{router}_residual') is None:
        raise ConfigError(f'--margin {margin:g} needs the calibration\'s {router}_residual: rerun sd-calibrate '
                          '(calibrations made before --margin have none), or pass --margin 0')
    return margin * calibration[f'{router}_residual']


def check_route_tile(stages, tile):
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise ConfigError(f'--route-tile {tile!r}: must be an integer >= 1')
    if tile % stages.tile_multiple:
        raise ConfigError(f'--route-tile {tile}: must be a multiple of {stages.tile_multiple} (this network\'s '
                          'window: tiles lie on its window grid)')


def check_margin(margin):
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ConfigError(f'--margin {margin!r}: must be a number >= 0 (standard errors of the predicted gain)')


def check_budget(budget):
    if not 0 < budget <= 1:
        raise ConfigError(f'--budget {budget}: must be a share of the teacher\'s MACs in (0, 1]')


@torch.inference_mode()
def route_image(stages, x, budget, router='edge', tile=DEFAULT_ROUTE_TILE, calibration=None, gt=None, seed=0,
                gains=None, margin=DEFAULT_MARGIN):
    """Upscale ``x`` (1, 3, H, W in [0, 1]) with each ``tile`` x ``tile`` LR tile routed under ``budget`` (a share
    of the teacher's MACs in (0, 1], on the MACs actually run: ``fit_route``) by ``router``
    (``routers.predict_gains``; ``gains``: (tiles, outputs) gains already known, e.g. the oracle's from outputs
    the caller computed anyway). A mix runs instead of the best fixed output that fits only when its predicted gain
    is ahead by ``margin`` standard errors (``against_fixed``, ``route_margin``).

    Returns:
        tuple[Tensor, RoutePlan]: the (1, 3, H*s, W*s) output and the plan.
    """
    check_budget(budget)
    check_route_tile(stages, tile)
    check_margin(margin)
    height, width = x.shape[2:]
    x = stages.prepare(x)  # SwinIR: padded to whole windows; the tiles cover the padded image, the output is cropped
    grid = tile_grid(x.shape[2], x.shape[3], tile)
    trunk = run_trunk(stages, x)
    if not needs_gains(stages, budget):
        gains = np.zeros((len(grid), len(stages.depths)))  # one output everywhere: nothing to predict
    elif gains is None:
        gains = predict_gains(router, stages, x, grid, trunk, calibration, gt, seed)
    if needs_gains(stages, budget) and router != 'random':  # random: a baseline of random tiles, kept as drawn
        (route, spent, executed, note), versus = against_fixed(stages, gains, grid, budget, x.shape[2], x.shape[3],
                                                               route_margin(router, calibration, margin))
    else:
        (route, spent, executed, note), versus = fit_route(stages, gains, grid, budget, x.shape[2], x.shape[3]), None
    sr = run_routed(stages, x, grid, route, trunk)[..., :height * stages.scale, :width * stages.scale]
    counts = {d: route.count(d) for d in stages.depths}
    return sr, RoutePlan(grid, route, list(stages.depths), spent, executed, budget, router, note, counts, stages.unit,
                         route[0] if len(set(route)) == 1 else None, versus)
