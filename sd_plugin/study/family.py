"""The family report (issue 23): is every output of one multi-exit run as good as the same network trained alone?

Reads a study whose file names a ``family_arm`` (``options/study/family.yml``). A *recipe* is an arm with the family
arm's outputs (the paper's recipe, or one with a ``train.self_distill`` remedy); a *twin* is an arm with one output
at one of those depths (SRResNet-k alone), which started from exactly the exit's initial weights. For each recipe,
output and validation set, the paired difference "output minus its twin" is taken seed by seed at the last
iteration both validated, then averaged with a Student-t 95 % interval (``report.ci95``). The recipe the plugin
uses by default is the one whose ``train.self_distill`` resolves to ``SELF_DISTILL_DEFAULTS``. Every other recipe's
teacher is compared, paired by seed, with the family arm's (the joint recipe: ``teacher_vs_joint``), and
``meets_bar`` says whether the recipe meets issue 23's bar: every exit's paired mean >= ``BAR_DB`` on every set, and
its teacher's >= ``BAR_DB`` against the joint recipe's, each over at least ``BAR_SEEDS`` seeds (None: fewer seeds).

``summarise`` returns the document written to ``summary.json``::

    {"iters": N, "seeds": [every seed a recipe or twin lists], "protocol": "...",
     "recipes": [{"name": arm, "label": "...", "default": bool, "overrides": {...},
                  "rows": [{"output": "exit 4" | ... | "teacher", "set": "Set5", "paired_mean_db": x, "ci95_db": y,
                            "n": seeds, "per_seed_db": {...}, "paired_ssim": s, "ssim_ci95": z, "iter": i}],
                  "teacher_vs_joint": [{"set": ..., "paired_mean_db": ..., "ci95_db": ..., "n": ...}],
                  "meets_bar": true | false | null,
                  "curves": {"<output>|<set>": {"iters": [...], "mean": [...], "ci95": [...], "n": [...]}}}]}
"""
import json
import os
from os import path as osp

from sd_plugin.files import atomic_write
from sd_plugin.study.report import _band, _crop_border, _curve_stats, ci95, read_scalars
from sd_plugin.study.runner import finished, jobs, run_dir
from sd_plugin.study.spec import arm_depths, merge, run_name
from sd_plugin.text import markdown_table

METRICS = ('psnr', 'ssim')
BAR_DB = -0.02  # issue 23: every exit at least this far from its twin alone, the teacher from the joint recipe's
BAR_SEEDS = 3


def recipes_and_twins(spec):
    """([recipe arm names], {depth: twin arm name}) of a family study."""
    depths = arm_depths(spec, spec['family_arm'])
    recipes = [arm for arm in spec['arms'] if arm_depths(spec, arm) == depths]
    twins = {}
    for arm in spec['arms']:
        own = arm_depths(spec, arm)
        if len(own) == 1 and own[0] in depths:
            twins.setdefault(own[0], arm)
    return recipes, twins


def is_default(spec, arm):
    """True when the arm trains with the plugin's default ``train.self_distill`` (no remedy switched on)."""
    from sd_plugin.models.self_distill_sr_model import self_distill_options
    exits = arm_depths(spec, arm)[:-1]
    train = merge(spec['base'], spec['arms'][arm])['train']
    return self_distill_options(train, exits) == self_distill_options({'self_distill': {}}, exits)


def run_curves(spec, out, arm, seed):
    """{set: {depth: {metric: {iter: value}}}} of a finished run (None when it has not finished)."""
    if not finished(out, arm, seed, spec['iters']):
        return None
    depths = arm_depths(spec, arm)
    curves = {}
    for tag, points in read_scalars(osp.join(run_dir(out, arm, seed), 'tb_logger', run_name(arm, seed))).items():
        parts = tag.split('/')
        if parts[0] != 'metrics' or len(parts) != 3:
            continue
        metric, _, suffix = parts[2].partition('_exit')
        depth = int(suffix) if suffix.isdigit() else depths[-1] if not suffix else None
        if metric in METRICS and depth in depths:
            curves.setdefault(parts[1], {}).setdefault(depth, {})[metric] = {
                i: v for i, v in points.items() if i <= spec['iters']}
    return curves


def paired(mine, theirs, set_name, depth, other_depth, metric):
    """(final iteration, {seed: difference at it}, {iter: [differences]}) over the seeds both have."""
    def curve(runs_of, seed, d):
        return ((runs_of.get(seed) or {}).get(set_name) or {}).get(d, {}).get(metric)

    pairs = {s: (curve(mine, s, depth), curve(theirs, s, other_depth)) for s in mine}
    pairs = {s: pair for s, pair in pairs.items() if pair[0] and pair[1]}
    if not pairs:
        return None, {}, {}
    iters = sorted(set.intersection(*(set(x) & set(y) for x, y in pairs.values())))
    if not iters:
        return None, {}, {}
    per_iter = {i: [x[i] - y[i] for x, y in pairs.values()] for i in iters}
    return iters[-1], {str(s): x[iters[-1]] - y[iters[-1]] for s, (x, y) in pairs.items()}, per_iter


def summarise(spec, out):
    """The family document (see the module docstring) for the finished runs under ``out``."""
    recipes, twins = recipes_and_twins(spec)
    runs = {}
    for arm, seed in jobs(spec):
        curves = run_curves(spec, out, arm, seed)
        if curves is not None:
            runs.setdefault(arm, {})[seed] = curves
    sets = sorted({s for r in runs.values() for c in r.values() for s in c}, key=lambda s: (s != 'Set5', s))
    default = next((arm for arm in recipes if is_default(spec, arm)), None)
    joint = spec['family_arm']
    seeds = sorted({s for arm in recipes + list(twins.values()) for s in spec['arms'][arm]['seeds']})
    doc = {'iters': spec['iters'], 'seeds': seeds,
           'protocol': 'BasicSR validation (Y channel, border '
                       f'{_crop_border(spec)}) from each run\'s TensorBoard log; paired = output minus its twin '
                       'trained alone from the same initial weights and data order, seed by seed, at the last '
                       'iteration both validated; mean and Student-t 95 % interval over seeds',
           'twins': {str(d): a for d, a in twins.items()}, 'recipes': []}
    for arm in recipes:
        depths = arm_depths(spec, arm)
        entry = {'name': arm, 'label': spec['arms'][arm]['label'], 'default': arm == default,
                 'overrides': {k: v for k, v in spec['arms'][arm].items() if k not in ('label', 'seeds')},
                 'seeds_done': sorted(runs.get(arm, {})), 'rows': [], 'teacher_vs_joint': [], 'curves': {}}
        mine = runs.get(arm, {})
        for depth in depths:
            output = 'teacher' if depth == depths[-1] else f'exit {depth}'
            theirs = runs.get(twins.get(depth), {})
            for set_name in sets:
                last, diffs, per_iter = paired(mine, theirs, set_name, depth, depth, 'psnr')
                if last is None:
                    continue
                mean, half, n = ci95(list(diffs.values()))
                _, ssim_diffs, _ = paired(mine, theirs, set_name, depth, depth, 'ssim')
                ssim_mean, ssim_half, _ = ci95(list(ssim_diffs.values()))
                entry['rows'].append({'output': output, 'set': set_name, 'paired_mean_db': mean, 'ci95_db': half,
                                      'n': n, 'per_seed_db': diffs, 'paired_ssim': ssim_mean,
                                      'ssim_ci95': ssim_half, 'iter': last})
                entry['curves'][f'{output}|{set_name}'] = {'iters': list(per_iter),
                                                            **_curve_stats(list(per_iter.values()))}
        if arm != joint:
            for set_name in sets:
                last, diffs, _ = paired(mine, runs.get(joint, {}), set_name, depths[-1], depths[-1], 'psnr')
                if last is not None:
                    mean, half, n = ci95(list(diffs.values()))
                    entry['teacher_vs_joint'].append({'set': set_name, 'paired_mean_db': mean, 'ci95_db': half,
                                                      'n': n, 'iter': last})
        entry['meets_bar'] = meets_bar(entry, depths, sets, arm == joint)
        doc['recipes'].append(entry)
    return doc


def meets_bar(entry, depths, sets, is_joint):
    """Whether a recipe's summary entry meets the bar (see the module docstring): its exits on every set, and its
    teacher against the joint recipe's unless it is the joint recipe; None while one of them has fewer than
    ``BAR_SEEDS`` seeds."""
    rows = {(r['output'], r['set']): r for r in entry['rows']}
    checks = [rows.get((f'exit {d}', s)) for d in depths[:-1] for s in sets]
    if not is_joint:
        teacher = {t['set']: t for t in entry['teacher_vs_joint']}
        checks += [teacher.get(s) for s in sets]
    if not sets or any(c is None or c['n'] < BAR_SEEDS for c in checks):
        return None
    return all(c['paired_mean_db'] >= BAR_DB for c in checks)


def _cell(mean, half, digits, n=None):
    if mean is None:
        return 'n/a'
    text = f'{mean:+.{digits}f} ± {"n/a" if half is None else f"{half:.{digits}f}"}'
    return text if n is None else f'{text} (n={n})'


def _pair_cell(rows):
    """'Set5 cell / Set14 cell' of ``rows`` (one per set): mean ± 95 % half-width (none with one seed), and
    '(n=...)' when the sets' seed counts differ."""
    cells = [f'{r["paired_mean_db"]:+.3f}' + ('' if r['ci95_db'] is None else f' ± {r["ci95_db"]:.3f}') for r in rows]
    counts = sorted({r['n'] for r in rows})
    return ' / '.join(cells) + ('' if len(counts) == 1 else f' (n={"/".join(str(r["n"]) for r in rows)})')


def overview(doc):
    """One row per recipe with a finished pair: ΔPSNR of every exit against its twin and of the teacher against the
    joint recipe's, 'Set5 / Set14' (the README's table), the seeds of those pairs, and its verdict on the bar (the
    teacher against its own twin alone is in the recipe's table below)."""
    recipes = [r for r in doc['recipes'] if r['rows']]
    if not recipes:
        return []
    sets = list(dict.fromkeys(row['set'] for r in recipes for row in r['rows']))
    exits = list(dict.fromkeys(row['output'] for r in recipes for row in r['rows'] if row['output'] != 'teacher'))
    verdict = {None: 'undecided', True: '**met**', False: 'not met'}
    table = []
    for recipe in recipes:
        by_key = {(row['output'], row['set']): row for row in recipe['rows']}
        cells = []
        for output in exits:
            rows = [by_key.get((output, s)) for s in sets]
            cells.append('n/a' if None in rows else _pair_cell(rows))
        joint = {t['set']: t for t in recipe['teacher_vs_joint']}
        rows = [joint.get(s) for s in sets]
        cells.append('(itself)' if not joint else 'n/a' if None in rows else _pair_cell(rows))
        counts = sorted({row['n'] for row in recipe['rows'] if row['output'] != 'teacher'}
                        | {t['n'] for t in recipe['teacher_vs_joint']})
        seeds = str(counts[0]) if len(counts) == 1 else f'{counts[0]}-{counts[-1]}'
        label = recipe['label'] + (' (default)' if recipe['default'] else '')
        table.append([label, seeds, *cells, verdict[recipe['meets_bar']]])
    return [f'ΔPSNR in dB, {" / ".join(sets)}, mean ± Student-t 95 % interval over seeds (none with one seed): each '
            'exit minus its twin alone, the teacher minus the joint recipe\'s.', '',
            *markdown_table(['recipe', 'seeds', *exits, 'teacher vs the joint recipe\'s', 'bar'], table), '']


def markdown(doc):
    """The overview (``overview``), then one table per recipe: each output minus its twin, ΔPSNR / ΔSSIM per set;
    the teacher against the joint recipe's teacher; whether it meets the bar."""
    lines = [f'# The family study: {doc["iters"]} iterations, seeds {doc["seeds"]}', '',
             f'Protocol: {doc["protocol"]}.', '', *overview(doc)]
    waiting = [r['label'] for r in doc['recipes'] if not r['rows']]
    for recipe in doc['recipes']:
        if not recipe['rows']:
            continue
        sets = list(dict.fromkeys(r['set'] for r in recipe['rows']))
        lines += [f'## {recipe["label"]}{" (the default)" if recipe["default"] else ""}: output minus its twin '
                  'alone, mean ± 95 % interval', '']
        outputs = list(dict.fromkeys(r['output'] for r in recipe['rows']))
        rows = []
        for output in outputs:
            cells = [output]
            for s in sets:
                row = next((r for r in recipe['rows'] if r['output'] == output and r['set'] == s), None)
                cells += ['n/a', 'n/a'] if row is None else [_cell(row['paired_mean_db'], row['ci95_db'], 3, row['n']),
                                                             _cell(row['paired_ssim'], row['ssim_ci95'], 4)]
            rows.append(cells)
        lines += markdown_table(['output', *(f'{s} {m}' for s in sets for m in ('ΔPSNR (dB)', 'ΔSSIM'))], rows)
        if recipe['teacher_vs_joint']:
            lines += ['', 'Teacher minus the joint (paper) recipe\'s teacher: ' + '; '.join(
                f'{t["set"]} {_cell(t["paired_mean_db"], t["ci95_db"], 3, t["n"])} dB'
                for t in recipe['teacher_vs_joint'])]
        verdict = {None: f'not yet decided (fewer than {BAR_SEEDS} seeds)', True: 'met', False: 'not met'}
        lines += ['', f'Bar (every exit >= {BAR_DB:+.2f} dB against its twin, teacher >= {BAR_DB:+.2f} dB against '
                  f'the joint recipe\'s, {BAR_SEEDS} seeds): {verdict[recipe["meets_bar"]]}.']
        lines.append('')
    if waiting:
        lines += [f'No finished pair yet: {", ".join(waiting)}.', '']
    return '\n'.join(lines)


def plot(doc, path):
    """One row per output, one column per set: each recipe's paired gap to the twin against iterations."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    keys = list(dict.fromkeys(k for r in doc['recipes'] for k in r['curves']))
    outputs = list(dict.fromkeys(k.split('|')[0] for k in keys)) or ['none']
    sets = list(dict.fromkeys(k.split('|')[1] for k in keys)) or ['none']
    fig, axes = plt.subplots(len(outputs), len(sets), figsize=(6 * len(sets), 3 * len(outputs)), squeeze=False)
    colours = plt.get_cmap('tab10')
    for row, output in zip(axes, outputs):
        for ax, set_name in zip(row, sets):
            for i, recipe in enumerate(doc['recipes']):
                curve = recipe['curves'].get(f'{output}|{set_name}')
                if curve:
                    _band(ax, curve['iters'], curve, colours(i % 10), f'{recipe["label"]} (n={max(curve["n"])})')
            ax.axhline(0, color='black', linewidth=0.8)
            ax.set(title=f'{output}, {set_name}', xlabel='iteration', ylabel='ΔPSNR (dB), output − alone')
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle('Each output minus the same network trained alone (paired by seed; 95 % band where n >= 3)')
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=70, format='png'))
    plt.close(fig)


def write_family_report(spec, out, report_dir):
    """Write summary.json, summary.md and gaps.png of the finished runs under ``out`` to ``report_dir``; returns the
    document."""
    os.makedirs(report_dir, exist_ok=True)
    doc = summarise(spec, out)
    atomic_write(osp.join(report_dir, 'summary.json'), lambda f: json.dump(doc, f, indent=1), mode='w')
    atomic_write(osp.join(report_dir, 'summary.md'), lambda f: f.write(markdown(doc)), mode='w')
    plot(doc, osp.join(report_dir, 'gaps.png'))
    return doc
