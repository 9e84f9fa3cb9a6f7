"""One routed upscale: trunk, router, allocation, shared-trunk run (the steps of ``sd_plugin.routing``, in order)."""
from dataclasses import dataclass, field

import numpy as np
import torch

from sd_plugin.errors import ConfigError
from sd_plugin.inference import tile_grid
from sd_plugin.routing.allocate import allocate
from sd_plugin.routing.execute import run_routed, run_trunk
from sd_plugin.routing.routers import predict_gains
from sd_plugin.routing.scores import tile_areas

DEFAULT_ROUTE_TILE = 32  # LR pixels (128 HR pixels at x4); see the README's routing section for the measurement


@dataclass
class RoutePlan:
    """What a routed upscale chose: ``grid`` (LR tiles (y0, y1, x0, x1)), ``route`` (the output depth of each tile),
    ``depths`` (the network's outputs), ``spent`` (share of the teacher's MACs on this image), ``budget``,
    ``router``, and ``note`` (a line when the budget could not be met as asked)."""
    grid: list
    route: list
    depths: list
    spent: float
    budget: float
    router: str
    note: str = None
    counts: dict = field(default_factory=dict)


def check_budget(budget):
    if not 0 < budget <= 1:
        raise ConfigError(f'--budget {budget}: must be a share of the teacher\'s MACs in (0, 1]')


@torch.inference_mode()
def route_image(stages, x, budget, router='edge', tile=DEFAULT_ROUTE_TILE, calibration=None, gt=None, seed=0,
                gains=None):
    """Upscale ``x`` (1, 3, H, W in [0, 1]) with each ``tile`` x ``tile`` LR tile routed under ``budget`` (a share
    of the teacher's MACs in (0, 1]) by ``router`` (``routers.predict_gains``; ``gains``: (tiles, outputs) gains
    already known, e.g. the oracle's from outputs the caller computed anyway).

    Returns:
        tuple[Tensor, RoutePlan]: the (1, 3, H*s, W*s) output and the plan.
    """
    check_budget(budget)
    if tile < 1:
        raise ConfigError(f'--route-tile {tile}: must be >= 1')
    grid = tile_grid(x.shape[2], x.shape[3], tile)
    trunk = run_trunk(stages, x)
    costs = [stages.macs_per_pixel(d) for d in stages.depths]
    if budget >= 1:
        gains = np.zeros((len(grid), len(costs)))  # the teacher everywhere: nothing to predict
    elif gains is None:
        gains = predict_gains(router, stages, x, grid, trunk, calibration, gt, seed)
    levels, spent, note = allocate(gains, tile_areas(grid), costs, budget)
    route = [stages.depths[i] for i in levels]
    sr = run_routed(stages, x, grid, route, trunk)
    counts = {d: route.count(d) for d in stages.depths}
    return sr, RoutePlan(grid, route, list(stages.depths), spent, budget, router, note, counts)
