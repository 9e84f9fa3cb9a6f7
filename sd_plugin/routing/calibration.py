"""Calibration of the ``edge`` and ``learned`` routers on training images, stored beside the checkpoint.

Samples: every LR tile of every calibration image gives its edge score, its trunk feature statistics
(``scores.feature_stats``) and its true gain per LR pixel for each output (``scores.oracle_gains`` / area: the
reduction of the summed squared Y error, 0-255 scale, over the cheapest output).

* ``edge``: the scores cut into ``bins`` bins of equal counts; per bin, the mean gain of each output. A tile's
  predicted gain is its bin's row times its area.
* ``learned``: a tiny regressor (``GainRegressor``: 2 C + 1 inputs, ``hidden`` units, one output per deeper output;
  a few hundred parameters) from the standardised feature statistics and log edge score to the standardised gains,
  fitted with the network frozen (the samples are computed once, under ``torch.inference_mode``).

Both are checked on held-out images (every ``HOLDOUT``-th image): ``r2`` (coefficient of determination of the gain
per pixel, all deeper outputs together) and ``residual`` (the root mean square of the predicted minus the true gain
per LR pixel, the same columns: ``rms``) are stored with each router in the JSON (``edge_r2``, ``edge_residual``,
...). The error ``plan.against_fixed``'s margin is made of is judged on the decision itself (``mix_errors``): on each
held-out image and budget of ``MIX_BUDGETS`` with a choice, where ``against_fixed`` without a margin would run a mix,
its predicted advantage over the fixed exits at the MACs it runs minus its true one, over the root of the summed
squared areas of the tiles it changes; ``ROUTER_mix_residual`` is their root mean square (per LR pixel, as
``ROUTER_residual``; absent when no held-out mix ran) and ``ROUTER_mix_count`` how many there were.
``plan.route_margin`` takes ``ROUTER_mix_residual`` when the calibration has it, else ``ROUTER_residual`` (which
assumes independent per-tile errors and misjudges the advantage: calibrations made before it have only that).

The file (``routing_path(ckpt)`` = ``CKPT.routing.json``) holds what it depends on, each checked on loading:
``checkpoint`` (file name) and ``checkpoint_sha256``, ``depths``, ``param_key`` (the weights it was fitted on:
params_ema or params); then ``scale``, ``tile`` (LR pixels), ``unit``, ``images``, ``tiles``, ``data``,
``edge`` {``bin_edges``, ``gain`` (bins x outputs), ``bicubic`` (bins,): the cheapest output's gain over bicubic,
for ``--bicubic``}, ``learned`` {``inputs_mean``, ``inputs_std``, ``target_std``,
``hidden``, ``state`` (parameter lists)}, ``mean_gain`` (outputs,) and ``mean_bicubic`` over all tiles.
"""
import hashlib
import json
from os import path as osp

import numpy as np
import torch
from torch import nn

from sd_plugin.errors import ConfigError
from sd_plugin.files import atomic_write
from sd_plugin.routing import scores
from sd_plugin.routing.bicubic import bicubic
from sd_plugin.routing.execute import run_trunk

HOLDOUT = 5
UNIT = 'reduction of the summed squared error of Y (0-255) over the cheapest output, per LR pixel'


def routing_path(ckpt):
    """Where the calibration of checkpoint ``ckpt`` lives: ``CKPT.routing.json``."""
    return str(ckpt) + '.routing.json'


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def to_input(rgb):
    """uint8 (h, w, 3) RGB or (h, w) grey -> (1, 3, h, w) float tensor in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).float().div_(255.)
    return t.expand(1, 3, *t.shape) if t.ndim == 2 else t.permute(2, 0, 1)[None]


@torch.inference_mode()
def all_outputs(stages, x, trunk=None):
    """[(1, 3, H*s, W*s)] every output of ``x``, cheapest first, from one trunk pass on the whole image (``trunk``:
    the features after the first exit's block on ``stages.prepare(x)``, when already computed)."""
    height, width = x.shape[2:]
    x = stages.prepare(x)
    feat = run_trunk(stages, x) if trunk is None else trunk
    outputs, depth = [], stages.trunk_depth
    for d in stages.depths:
        if d > depth:  # (an output below the trunk, bicubic, reads the input only)
            feat, depth = stages.advance(feat, depth, d), d
        outputs.append(stages.head(feat, d, x)[..., :height * stages.scale, :width * stages.scale])
    return outputs


@torch.inference_mode()
def image_samples(stages, lr, gt, grid):
    """Per tile of ``grid`` on the uint8 LR image ``lr`` with ground truth ``gt``: {'edge': (n,), 'stats': (n, 2C),
    'gain': (n, outputs) true gain per LR pixel over the cheapest output, 'bicubic': (n,) true gain per LR pixel of
    the cheapest output over bicubic (``sd_plugin.routing.bicubic``)}, with the image's 'grid', 'height' and 'width'
    (LR pixels), which ``mix_errors`` plans on."""
    x = to_input(lr)
    trunk = run_trunk(stages, stages.prepare(x))
    outputs = all_outputs(stages, x, trunk.clone())
    gains = scores.oracle_gains([bicubic(x, stages.scale), *outputs], scores.gt_luma(gt), grid, stages.scale)
    gains /= scores.tile_areas(grid)[:, None]
    return {'edge': scores.edge_scores(x, grid), 'stats': scores.feature_stats(trunk, grid),
            'gain': gains[:, 1:] - gains[:, 1:2], 'bicubic': gains[:, 1], 'grid': list(grid), 'height': lr.shape[0],
            'width': lr.shape[1]}


# ----------------------------------------------------------------------------------------------- edge


def fit_edge(edge, gain, bins=12):
    """{'bin_edges': inner edges (ascending), 'gain': (bins, outputs) mean gain per LR pixel in each bin}."""
    inner = np.unique(np.quantile(edge, np.linspace(0, 1, bins + 1)[1:-1]))
    index = np.searchsorted(inner, edge, side='right')
    table = [gain[index == b].mean(0) if (index == b).any() else np.zeros(gain.shape[1]) for b in range(len(inner) + 1)]
    return {'bin_edges': inner.tolist(), 'gain': np.array(table).tolist()}


def edge_gains(table, edge, key='gain'):
    """(tiles, outputs) predicted gain per LR pixel of tiles with edge scores ``edge`` (``key='bicubic'``: (tiles,)
    gain of the cheapest output over bicubic)."""
    gain = np.asarray(table[key])
    return gain[np.searchsorted(np.asarray(table['bin_edges']), edge, side='right')]


# ----------------------------------------------------------------------------------------------- learned


class GainRegressor(nn.Module):
    """(N, inputs) standardised tile features -> (N, outputs - 1) standardised gains of the deeper outputs."""

    def __init__(self, inputs, hidden, outputs):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))

    def forward(self, features):
        return self.layers(features)


def learned_inputs(stats, edge):
    """(n, 2C + 1): the feature statistics and log(1 + edge score)."""
    return np.concatenate([stats, np.log1p(edge)[:, None]], 1)


def fit_learned(stats, edge, gain, hidden=6, steps=2000, lr=1e-2, seed=0):
    """Fit a ``GainRegressor`` (full batch, Adam, mean squared error on standardised gains); return its JSON dict."""
    inputs = learned_inputs(stats, edge)
    mean, std = inputs.mean(0), inputs.std(0) + 1e-8
    target_std = gain[:, 1:].std(0) + 1e-8
    torch.manual_seed(seed)
    model = GainRegressor(inputs.shape[1], hidden, gain.shape[1] - 1)
    features = torch.from_numpy((inputs - mean) / std).float()
    target = torch.from_numpy(gain[:, 1:] / target_std).float()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = ((model(features) - target) ** 2).mean()
        loss.backward()
        optimiser.step()
    return {'inputs_mean': mean.tolist(), 'inputs_std': std.tolist(), 'target_std': target_std.tolist(),
            'hidden': hidden, 'params': sum(p.numel() for p in model.parameters()),
            'state': {k: v.tolist() for k, v in model.state_dict().items()}}


def learned_gains(learned, stats, edge):
    """(tiles, outputs) predicted gain per LR pixel (the cheapest output's column: 0)."""
    inputs = learned_inputs(stats, edge)
    if inputs.shape[1] != len(learned['inputs_mean']):
        raise ConfigError(f'the calibration\'s learned router takes {len(learned["inputs_mean"])} tile features, this '
                          f'network gives {inputs.shape[1]} (a calibration of another network: rerun sd-calibrate)')
    inputs = (inputs - np.asarray(learned['inputs_mean'])) / np.asarray(learned['inputs_std'])
    model = GainRegressor(inputs.shape[1], learned['hidden'], len(learned['target_std']))
    model.load_state_dict({k: torch.tensor(v) for k, v in learned['state'].items()})
    with torch.inference_mode():
        deeper = model(torch.from_numpy(inputs).float()).double().numpy() * np.asarray(learned['target_std'])
    return np.concatenate([np.zeros((len(deeper), 1)), deeper], 1)


# ----------------------------------------------------------------------------------------------- both


def r2(predicted, true):
    """Coefficient of determination of the deeper outputs' gains (columns 1..), all together."""
    predicted, true = predicted[:, 1:], true[:, 1:]
    return float(1 - ((predicted - true) ** 2).sum() / max(((true - true.mean(0)) ** 2).sum(), 1e-12))


def rms(predicted, true):
    """Root mean square of the deeper outputs' (columns 1..) predicted minus true gain per LR pixel."""
    return float(np.sqrt(((predicted[:, 1:] - true[:, 1:]) ** 2).mean()))


MIX_BUDGETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # where ``mix_errors`` decides (those with a choice)


def mix_errors(stages, samples, predicted, budgets=MIX_BUDGETS):
    """(mixes,) the error of the decision ``plan.against_fixed``'s margin guards, on images whose true gains are known:
    for each ``image_samples`` of ``samples`` (with its grid) and each budget of ``budgets`` with a choice to make
    (``plan.needs_gains``), the plan ``against_fixed`` chooses without a margin from the router's predicted gains
    per LR pixel ``predicted`` (one (tiles, outputs) array per image; times the tile areas, as
    ``routers.predict_gains``); where it is a mix (a tile off the best fixed output), its predicted advantage (its
    predicted gain minus ``versus['level']``) minus its true advantage (its tiles' true gains, exact for a network
    whose tiles are exact, minus the same level from the true gains: the fixed output's true total plus the true
    ``best_fixed`` slope from it, times the same extra MACs), over the root of the summed squared areas of the tiles it
    changes (the unit of ``against_fixed``'s ``error``)."""
    from sd_plugin.routing.execute import planned_macs
    from sd_plugin.routing.plan import against_fixed, fixed_slope, needs_gains  # (plan imports this module, late)

    index = {d: i for i, d in enumerate(stages.depths)}
    errors = []
    for sample, per_pixel in zip(samples, predicted):
        grid, height, width = sample['grid'], sample['height'], sample['width']
        areas, tiles = scores.tile_areas(grid), np.arange(len(grid))
        gains, truth = np.asarray(per_pixel) * areas[:, None], np.asarray(sample['gain']) * areas[:, None]
        macs = np.array([stages.macs_per_pixel(d) for d in stages.depths]) * height * width
        totals = truth.sum(0)
        for budget in budgets:
            if not needs_gains(stages, budget):
                continue
            (route, _, executed, _), versus = against_fixed(stages, gains, grid, budget, height, width)
            fixed, levels = index[versus['depth']], np.array([index[d] for d in route])
            changed = areas[levels != fixed]
            if not len(changed):  # the fixed output: no mix to judge
                continue
            extra = executed * macs[-1] - planned_macs(stages, grid, [versus['depth']] * len(grid), height, width)
            true = truth[tiles, levels].sum() - (totals[fixed] + fixed_slope(totals, macs, fixed) * extra)
            guess = gains[tiles, levels].sum() - versus['level']
            errors.append((guess - true) / np.sqrt((changed ** 2).sum()))
    return np.array(errors, dtype=np.float64)


def calibrate(samples, bins=12, hidden=6, steps=2000, stages=None, budgets=MIX_BUDGETS):
    """The ``edge`` and ``learned`` entries (each with its held-out ``r2`` and ``residual``, then refitted on every
    image) and ``mean_gain``, from a list of per-image ``image_samples``. With the network's ``stages`` (and the
    samples' grids), also each router's ``mix_count`` and, when it is > 0, ``mix_residual``: the RMS of
    ``mix_errors`` at ``budgets`` on the held-out images, the router fitted on the others."""
    def cat(items, key):
        return np.concatenate([s[key] for s in items])

    held = [s for i, s in enumerate(samples) if i % HOLDOUT == HOLDOUT - 1]
    fit = [s for i, s in enumerate(samples) if i % HOLDOUT != HOLDOUT - 1] or samples
    result = {}
    if held:
        edge = fit_edge(cat(fit, 'edge'), cat(fit, 'gain'), bins)
        learned = fit_learned(cat(fit, 'stats'), cat(fit, 'edge'), cat(fit, 'gain'), hidden, steps)
        truth = cat(held, 'gain')
        per_image = {'edge': [edge_gains(edge, s['edge']) for s in held],
                     'learned': [learned_gains(learned, s['stats'], s['edge']) for s in held]}
        for name, predicted in per_image.items():
            predicted = np.concatenate(predicted)
            result[f'{name}_r2'], result[f'{name}_residual'] = r2(predicted, truth), rms(predicted, truth)
        if stages is not None and all('grid' in s for s in held):
            for name, predicted in per_image.items():
                errors = mix_errors(stages, held, predicted, budgets)
                result[f'{name}_mix_count'] = len(errors)
                if len(errors):
                    result[f'{name}_mix_residual'] = float(np.sqrt((errors ** 2).mean()))
        bic = fit_edge(cat(fit, 'edge'), cat(fit, 'bicubic')[:, None], bins)
        truth = cat(held, 'bicubic')[:, None]
        result['bicubic_r2'] = r2(np.c_[0 * truth, edge_gains(bic, cat(held, 'edge'))], np.c_[0 * truth, truth])
    edge, stats, gain = cat(samples, 'edge'), cat(samples, 'stats'), cat(samples, 'gain')
    result['edge'] = fit_edge(edge, gain, bins)
    bic = cat(samples, 'bicubic')[:, None]
    result['edge']['bicubic'] = np.asarray(fit_edge(edge, bic, bins)['gain'])[:, 0].tolist()
    result['learned'] = fit_learned(stats, edge, gain, hidden, steps)
    result['mean_gain'] = gain.mean(0).tolist()
    result['mean_bicubic'] = float(bic.mean())
    result['tiles'] = len(edge)
    return result


def save_calibration(ckpt, record):
    """Write ``record`` to ``routing_path(ckpt)`` atomically, with the checkpoint's name and SHA-256."""
    record = {'checkpoint': osp.basename(ckpt), 'checkpoint_sha256': sha256(ckpt), 'unit': UNIT, **record}
    path = routing_path(ckpt)
    atomic_write(path, lambda f: json.dump(record, f, indent=1), mode='w')
    return path


def load_calibration(ckpt, depths, param_key=None):
    """The calibration JSON of ``ckpt``, an input checked as a checkpoint is: ConfigError when it is missing, not a
    calibration (``check_calibration``: every key's type, shape and finite values), or made for what this run does
    not use: another version of the checkpoint, other outputs (``depths``), other weights (``param_key``, the run's:
    params_ema or params)."""
    path = routing_path(ckpt)
    if not osp.isfile(path):
        raise ConfigError(f'{path}: no calibration for this checkpoint (make it with: sd-calibrate {ckpt} --data '
                          '<training HR images>)')
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as err:
        raise ConfigError(f'{path}: not a readable calibration ({type(err).__name__})') from None
    if not isinstance(record, dict):
        raise ConfigError(f'{path}: not a calibration (a JSON object expected, found a {type(record).__name__})')
    if record.get('checkpoint_sha256') != sha256(ckpt):
        raise ConfigError(f'{path}: calibrated on another version of {osp.basename(ckpt)} (its SHA-256 differs); '
                          f'rerun sd-calibrate {ckpt}')
    if record.get('depths') != list(depths):
        raise ConfigError(f'{path}: calibrated for outputs {record.get("depths")}, the checkpoint has {list(depths)}')
    if record.get('param_key', 'unknown') != param_key:
        fitted = record['param_key'] if 'param_key' in record else 'none recorded (an older sd-calibrate)'
        raise ConfigError(f'{path}: param_key: calibrated on the weights {fitted}, this run uses {param_key} (rerun '
                          f'sd-calibrate {ckpt} --param-key {param_key} --overwrite, or run with the calibrated '
                          '--param-key)')
    check_calibration(record, len(depths), path)
    return record


def _numbers(record, key, shape, path, positive=False):
    """``record[key]`` (``key`` 'edge.*' / 'learned.*': inside that router's entry) as a float64 array, after
    checking that it holds numbers of ``shape`` (None: any length), all finite (and > 0 with ``positive``); a
    ConfigError naming ``path`` and ``key``."""
    head, _, rest = key.partition('.')  # 'edge.gain' -> record['edge']['gain']; 'layers.0.weight' is one key
    entry = record.get(head) if isinstance(record.get(head), dict) else {}
    value = record.get(key) if head not in ('edge', 'learned') else entry.get(rest)
    try:
        array = np.asarray(value)
    except ValueError:  # ragged
        array = np.asarray(None)
    if array.dtype.kind not in 'iuf' or array.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(array.shape, shape)):
        want = f'{" x ".join("n" if n is None else str(n) for n in shape)} numbers' if shape else 'a number'
        raise ConfigError(f'{path}: {key}: must be {want} ({len(shape)}-D), found {str(value)[:60]}')
    if not np.isfinite(array).all() or (positive and (array <= 0).any()):
        raise ConfigError(f'{path}: {key}: holds {"NaN or Inf" if not np.isfinite(array).all() else "values <= 0"}')
    return array.astype(np.float64)


def check_calibration(record, outputs, path):
    """ConfigError naming ``path`` and the key unless ``record`` holds the ``edge`` and ``learned`` routers of a
    network with ``outputs`` outputs in the layout ``calibrate`` writes (the module docstring), finite everywhere."""
    bins = len(_numbers(record, 'edge.bin_edges', (None,), path)) + 1
    if (np.diff(record['edge']['bin_edges']) < 0).any():
        raise ConfigError(f'{path}: edge.bin_edges: must be ascending')
    _numbers(record, 'edge.gain', (bins, outputs), path)
    if 'bicubic' in record['edge']:
        _numbers(record, 'edge.bicubic', (bins,), path)
    _numbers(record, 'mean_gain', (outputs,), path)
    _numbers(record, 'mean_bicubic', (), path)
    for router in ('edge', 'learned'):  # the held-out errors --margin scales (absent in older calibrations)
        for key in (f'{router}_residual', f'{router}_mix_residual'):
            if record.get(key) is not None:
                if _numbers(record, key, (), path) < 0:
                    raise ConfigError(f'{path}: {key}: must be >= 0, found {record[key]!r}')
        count = record.get(f'{router}_mix_count')
        if f'{router}_mix_count' in record and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ConfigError(f'{path}: {router}_mix_count: must be a whole number >= 0, found {count!r}')
    learned = record.get('learned')
    hidden = learned.get('hidden') if isinstance(learned, dict) else None
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ConfigError(f'{path}: learned.hidden: must be a whole number >= 1, found {hidden!r}')
    inputs = len(_numbers(record, 'learned.inputs_mean', (None,), path))
    _numbers(record, 'learned.inputs_std', (inputs,), path, positive=True)
    _numbers(record, 'learned.target_std', (outputs - 1,), path, positive=True)
    shapes = {'layers.0.weight': (hidden, inputs), 'layers.0.bias': (hidden,), 'layers.2.weight': (outputs - 1, hidden),
              'layers.2.bias': (outputs - 1,)}
    if not isinstance(learned.get('state'), dict) or set(learned['state']) != set(shapes):
        raise ConfigError(f'{path}: learned.state: must hold {", ".join(shapes)}')
    for name, shape in shapes.items():
        _numbers(learned['state'], name, shape, f'{path}: learned.state')


def image_files(folders):
    """Sorted image files directly inside each folder (not sub-folders), folder by folder; ConfigError naming a
    folder that is missing or holds no image."""
    import os

    from sd_plugin.imageio import is_image_file
    paths = []
    for folder in folders:
        if not osp.isdir(folder):
            raise ConfigError(f'--data {folder}: no such folder')
        found = sorted(osp.join(folder, f) for f in os.listdir(folder) if is_image_file(f) and not f.startswith('.'))
        if not found:
            raise ConfigError(f'--data {folder}: no images in this folder')
        paths += found
    return paths


def collect_samples(stages, paths, tile, progress=None):
    """``image_samples`` of each HR image file in ``paths``, on its MATLAB-bicubic LR (``sd-prepare``'s, by
    ``sd_plugin.data.bicubic.derive_lr``); ``progress()`` after each image."""
    from sd_plugin.data.bicubic import derive_lr
    from sd_plugin.imageio import read_rgb
    from sd_plugin.inference import tile_grid

    samples = []
    for path in paths:
        try:
            hr, lr = derive_lr(read_rgb(path), stages.scale)
        except ConfigError as err:  # an image too small for the scale: named
            raise ConfigError(err if str(path) in str(err) else f'{path}: {err}') from None
        samples.append(image_samples(stages, lr, hr, tile_grid(lr.shape[0], lr.shape[1], tile)))
        if progress:
            progress()
    return samples
