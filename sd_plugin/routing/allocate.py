"""The greedy allocation: which output each tile gets under a MAC budget, by predicted gain per MAC."""
import heapq

import numpy as np


def allocate(gains, areas, costs, budget):
    """Choose one output per tile.

    Every tile starts at the cheapest output (index 0). Upgrades are then taken in decreasing order of predicted gain
    per extra MAC (from a tile's current output to any deeper one), as long as the MACs spent stay within the budget;
    an upgrade that does not fit is replaced by the best one of that tile that still fits. Upgrades with no
    predicted gain are never taken. The spent MACs therefore never exceed the budget, except below the cheapest
    output's cost.

    Args:
        gains (ndarray): (tiles, outputs) predicted gain of each output over the cheapest (any additive unit, e.g.
            the reduction of the summed squared error); column 0 is the cheapest output.
        areas (ndarray): (tiles,) LR pixels of each tile.
        costs (list[float]): (outputs,) MACs per LR pixel of each output, increasing; the last is the teacher.
        budget (float): share of the teacher's MACs on the whole image, in (0, 1].
    Returns:
        tuple[ndarray, float, str | None]: (tiles,) output index of each tile, the share of the teacher's MACs spent,
        and a note when the budget could not be met as asked (below the cheapest output), else None.
    """
    gains, areas = np.asarray(gains, np.float64), np.asarray(areas, np.float64)
    costs = np.asarray(costs, np.float64)
    teacher = areas.sum() * costs[-1]
    if budget >= 1:
        return np.full(len(areas), len(costs) - 1), 1.0, None
    level = np.zeros(len(areas), int)
    spent, cap = areas.sum() * costs[0], budget * teacher
    if spent > cap:
        return level, spent / teacher, (f'budget {budget:g} is below the cheapest output ({costs[0] / costs[-1]:.3f} '
                                        f'of the teacher): the cheapest output runs everywhere')

    def best_upgrade(t, room):
        """(-gain per MAC, tile, output, extra MACs) of tile t's best upgrade costing at most ``room``, or None."""
        now = level[t]
        extra = (costs[now + 1:] - costs[now]) * areas[t]
        gain = gains[t, now + 1:] - gains[t, now]
        ok = (extra <= room) & (gain > 0)
        if not ok.any():
            return None
        ratio = np.where(ok, gain / extra, -np.inf)
        j = int(np.argmax(ratio))
        return -ratio[j], t, now + 1 + j, extra[j]

    heap = [u for u in (best_upgrade(t, cap - spent) for t in range(len(areas))) if u]
    heapq.heapify(heap)
    while heap:
        _, t, j, extra = heapq.heappop(heap)
        if spent + extra > cap:
            upgrade = best_upgrade(t, cap - spent)
            if upgrade:
                heapq.heappush(heap, upgrade)
            continue
        level[t], spent = j, spent + extra
        upgrade = best_upgrade(t, cap - spent)
        if upgrade:
            heapq.heappush(heap, upgrade)
    return level, spent / teacher, None
