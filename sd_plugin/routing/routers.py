"""The routers: per tile and output, the predicted gain over the cheapest output (a reduction of the summed squared
Y error, 0-255 scale; see ``sd_plugin.routing.scores``), which the allocation spends MACs on.

* ``edge``: the calibrated table of the tile's edge score (zero network cost);
* ``learned``: the calibrated tiny regressor on the trunk's feature statistics (the trunk runs anyway);
* ``random``: a random share (uniform in [0, 1), seeded) of the calibration's mean gain of each output (without a
  calibration: of each output's extra MACs): random tiles at the same MACs. Evaluation only;
* ``oracle``: the true gains, from every output and the ground truth. Evaluation only.
"""
import numpy as np

from sd_plugin.errors import ConfigError
from sd_plugin.routing import scores
from sd_plugin.routing.bicubic import WithBicubic
from sd_plugin.routing.calibration import all_outputs, edge_gains, learned_gains

ROUTERS = ('edge', 'learned', 'random', 'oracle')
USER_ROUTERS = ('edge', 'learned')  # the ones that need no ground truth and no dice
DEFAULT_ROUTER = 'edge'  # sd-upscale's and the Upscaler's


def predict_gains(router, stages, x, grid, trunk, calibration=None, gt=None, seed=0):
    """(tiles, outputs) predicted gains of the tiles of ``grid``.

    Args:
        router (str): one of ``ROUTERS``.
        stages: the staged network; x (Tensor): (1, 3, H, W) LR input in [0, 1].
        trunk (Tensor): (1, C, H, W) features after the first exit's block (``execute.run_trunk``).
        calibration (dict | None): ``calibration.load_calibration``'s record; needed by ``edge`` and ``learned``.
        gt (ndarray | None): the uint8 ground truth ((H*s, W*s, 3) RGB or grey), for ``oracle``.
        seed (int): the ``random`` router's seed.
    """
    if router not in ROUTERS:
        raise ConfigError(f'--router {router!r}: must be one of {", ".join(ROUTERS)}')
    if router in USER_ROUTERS and calibration is None:
        raise ConfigError(f'--router {router} needs a calibration (sd-calibrate CKPT --data DIR)')
    areas = scores.tile_areas(grid)[:, None]
    if isinstance(stages, WithBicubic) and router != 'oracle':
        return with_bicubic_gains(router, stages, x, grid, trunk, calibration, seed)
    if router == 'oracle':
        if gt is None:
            raise ConfigError('--router oracle needs the ground truth (evaluation only)')
        return scores.oracle_gains(all_outputs(stages, x), scores.gt_luma(gt), grid, stages.scale)
    if router == 'edge':
        return edge_gains(calibration['edge'], scores.edge_scores(x, grid)) * areas
    if router == 'learned':
        stats = scores.feature_stats(trunk, grid)
        return learned_gains(calibration['learned'], stats, scores.edge_scores(x, grid)) * areas
    if calibration is not None:
        mean = np.asarray(calibration['mean_gain'])
    else:
        mean = np.array([stages.macs_per_pixel(d) - stages.macs_per_pixel(stages.depths[0]) for d in stages.depths])
    return np.random.default_rng(seed).random((len(grid), 1)) * mean * areas


def with_bicubic_gains(router, stages, x, grid, trunk, calibration, seed):
    """(tiles, 1 + outputs) gains over bicubic for a ``WithBicubic`` network: the router's gains of the network's
    outputs over its cheapest, plus the cheapest output's gain over bicubic from the ``edge`` table (``random``: the
    same random share of the calibration's mean)."""
    inner = predict_gains(router, stages.inner, x, grid, trunk, calibration, seed=seed)
    areas = scores.tile_areas(grid)
    if router == 'random':
        share = np.random.default_rng(seed).random(len(grid))  # the share the inner call drew for each tile
        mean = calibration['mean_bicubic'] if calibration else stages.inner.head_macs_per_pixel(stages.depths[1])
        below = share * mean * areas
    else:
        if 'bicubic' not in calibration['edge']:
            raise ConfigError('--bicubic needs a calibration with a bicubic table: rerun sd-calibrate on this '
                              'checkpoint (calibrations made before --bicubic existed have none)')
        below = edge_gains(calibration['edge'], scores.edge_scores(x, grid), 'bicubic') * areas
    return np.concatenate([np.zeros((len(grid), 1)), inner + below[:, None]], 1)
