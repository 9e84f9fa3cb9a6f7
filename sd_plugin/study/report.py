"""What a study found: learning curves and paired differences with 95 % confidence intervals.

Every run's validation metrics are read back from its TensorBoard log (``metrics/<set>/<metric>``, written by
BasicSR's validation: Y-channel PSNR / SSIM with the study file's ``crop_border``). For each arm, at each validated
iteration, the student's values over seeds give a mean and a Student-t 95 % interval; the paired difference
"arm minus baseline" is taken seed by seed (the same data order and the same initial student weights), then
averaged the same way. The compute axis is the training MACs per iteration (forward of every output on one
training batch, times 3 for the backward pass), counted by ``torch.utils.flop_counter``.

Writes ``study.json``, ``study.md`` and ``study.png`` to the report folder, and copies the exported students there.
"""
import copy
import json
import math
import os
import shutil
import statistics
from os import path as osp

import torch

from sd_plugin.files import atomic_write
from sd_plugin.study.runner import finished, jobs, run_dir
from sd_plugin.study.spec import has_student, merge, run_name
from sd_plugin.text import markdown_table

METRICS = ('psnr', 'ssim')


def ci95(values):
    """(mean, half width of the 95 % Student-t interval, n); the half width is None for fewer than 2 values."""
    from scipy.stats import t
    n = len(values)
    if n == 0:
        return None, None, 0
    mean = statistics.fmean(values)
    if n < 2:
        return mean, None, n
    return mean, t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n), n


def read_scalars(folder):
    """{tag: {step: value}} of every scalar in the TensorBoard event files under ``folder`` (later events of the
    same step, e.g. after a resume, replace earlier ones)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    if not osp.isdir(folder):
        return {}
    events = EventAccumulator(folder, size_guidance={'scalars': 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()['scalars']}


def output_names(spec, arm):
    """{'student': metric suffix, 'teacher': metric suffix} of the arm's outputs: '' for the network's last output,
    '_exit<k>' for exit k; an arm without the student's depth has no 'student', one whose last output is the
    student has no 'teacher'."""
    network = merge(spec['base'], spec['arms'][arm])['network_g']
    from sd_plugin.archs.multi_exit_arch import output_depths
    k, depth = spec['student_depth'], output_depths(network)[-1]
    names = {}
    if has_student(spec, arm):
        names['student'] = '' if depth == k else f'_exit{k}'
    if depth != k:
        names['teacher'] = ''
    return names


def train_gmacs_per_iter(spec, arm):
    """Training GMACs of one iteration of the arm: 3 x the forward of every output on one batch of LR patches."""
    from torch.utils.flop_counter import FlopCounterMode

    from sd_plugin.preflight import build_network
    opt = merge(spec['base'], spec['arms'][arm])
    train = opt['datasets']['train']
    lr = train['gt_size'] // opt['scale']
    net = build_network(opt['network_g']).to('meta')
    x = torch.empty(train['batch_size_per_gpu'], opt['network_g'].get('num_in_ch', 3), lr, lr, device='meta')
    with FlopCounterMode(display=False) as counter:
        net(x, all_exits=True)
    return 3 * counter.get_total_flops() / 2 / 1e9


def collect(spec, out):
    """{arm: {seed: {'sets': {set: {output: {metric: {iter: value}}}}, 'seconds': float, 'threads': int}}} for the
    finished runs (seconds: wall time of every segment of a resumed run; threads: its torch threads)."""
    runs = {}
    for arm, seed in jobs(spec):
        record = finished(out, arm, seed, spec['iters'])
        if record is None:
            continue
        scalars = read_scalars(osp.join(run_dir(out, arm, seed), 'tb_logger', run_name(arm, seed)))
        sets = {}
        for tag, points in scalars.items():
            parts = tag.split('/')
            if parts[0] != 'metrics' or len(parts) != 3:
                continue
            for output, suffix in output_names(spec, arm).items():
                for metric in METRICS:
                    if parts[2] == metric + suffix:
                        curve = {i: v for i, v in points.items() if i <= spec['iters']}
                        sets.setdefault(parts[1], {}).setdefault(output, {})[metric] = curve
        runs.setdefault(arm, {})[seed] = {'sets': sets, 'seconds': record['seconds'], 'threads': record.get('threads')}
    return runs


def summarise(spec, runs):
    """The document written to study.json (see the module docstring)."""
    baseline = spec['baseline']
    doc = {'name': spec['name'], 'iters': spec['iters'], 'val_freq': spec['val_freq'], 'seeds': spec['seeds'],
           'student_depth': spec['student_depth'], 'baseline': baseline,
           'protocol': 'BasicSR validation metrics (calculate_psnr / calculate_ssim, Y channel, border '
                       f'{_crop_border(spec)}) read from each run\'s TensorBoard log; mean and Student-t 95 % '
                       'interval over seeds; paired = arm minus baseline, seed by seed',
           'arms': {}}
    base_runs = runs.get(baseline, {})
    for arm, arm_spec in spec['arms'].items():
        mine = runs.get(arm, {})
        entry = {'label': arm_spec['label'], 'seeds_done': sorted(mine),
                 'overrides': {k: v for k, v in arm_spec.items() if k not in ('label', 'seeds')},
                 'train_gmacs_per_iter': round(train_gmacs_per_iter(spec, arm), 4),
                 'seconds': {str(s): round(r['seconds'], 1) for s, r in mine.items()},
                 'threads': {str(s): r['threads'] for s, r in mine.items()}, 'sets': {}}
        set_names = sorted({name for r in mine.values() for name in r['sets']})
        for set_name in set_names:
            result = entry['sets'][set_name] = {}
            for output in output_names(spec, arm):
                for metric in METRICS:
                    curves = {s: r['sets'].get(set_name, {}).get(output, {}).get(metric, {}) for s, r in mine.items()}
                    iters = sorted(set.intersection(*(set(c) for c in curves.values()))) if curves else []
                    if not iters:
                        continue
                    key = f'{output}_{metric}'
                    final = {str(s): c[iters[-1]] for s, c in curves.items()}
                    mean, half, n = ci95(list(final.values()))
                    result[key] = {'final': {'iter': iters[-1], 'per_seed': final, 'mean': mean, 'ci95': half,
                                             'n': n},
                                   'curve': {'iters': iters, **_curve_stats([[c[i] for c in curves.values()]
                                                                             for i in iters])}}
                    if output != 'student' or arm == baseline:
                        continue
                    base = {s: r['sets'].get(set_name, {}).get('student', {}).get(metric, {})
                            for s, r in base_runs.items()}
                    pairs = [s for s in curves if s in base and base[s]]
                    p_iters = [i for i in iters if all(i in base[s] for s in pairs)] if pairs else []
                    if not p_iters:
                        continue
                    diffs = {str(s): curves[s][p_iters[-1]] - base[s][p_iters[-1]] for s in pairs}
                    mean, half, n = ci95(list(diffs.values()))
                    result[f'paired_{metric}'] = {
                        'final': {'iter': p_iters[-1], 'per_seed': diffs, 'mean': mean, 'ci95': half, 'n': n,
                                  'positive': sum(d > 0 for d in diffs.values())},
                        'curve': {'iters': p_iters, **_curve_stats([[curves[s][i] - base[s][i] for s in pairs]
                                                                    for i in p_iters])}}
        doc['arms'][arm] = entry
    return doc


def _crop_border(spec):
    metrics = (spec['base'].get('val') or {}).get('metrics') or {}
    return next((m.get('crop_border') for m in metrics.values()), 'n/a')


def _curve_stats(rows):
    stats = [ci95(row) for row in rows]
    return {'mean': [m for m, _, _ in stats], 'ci95': [h for _, h, _ in stats], 'n': [n for _, _, n in stats]}


def _pm(entry, digits):
    if entry is None:
        return 'n/a'
    final = entry['final']
    half = 'n/a' if final['ci95'] is None else f'{final["ci95"]:.{digits}f}'
    return f'{final["mean"]:.{digits}f} ± {half}'


def markdown(doc):
    """Tables: the student's final PSNR / SSIM per arm and set (mean ± 95 % interval), the paired differences to the
    baseline, and the teachers."""
    sets = sorted({s for arm in doc['arms'].values() for s in arm['sets']}, key=lambda s: (s != 'Set5', s))
    arms = doc['arms']
    lines = [f'# Study `{doc["name"]}`: {doc["iters"]} iterations, seeds {doc["seeds"]}', '',
             f'Protocol: {doc["protocol"]}.', '',
             f'## Student (depth {doc["student_depth"]}): final PSNR (dB) / SSIM, mean ± 95 % interval', '']
    rows = []
    for name, arm in arms.items():
        if not any('student_psnr' in arm['sets'].get(s, {}) for s in sets):
            continue
        cells = [arm['label'], str(len(arm['seeds_done'])), f'{arm["train_gmacs_per_iter"]:.2f}']
        for s in sets:
            result = arm['sets'].get(s, {})
            cells += [_pm(result.get('student_psnr'), 3), _pm(result.get('student_ssim'), 4)]
        rows.append(cells)
    lines += markdown_table(['arm', 'seeds', 'train GMACs/iter', *(f'{s} {m}' for s in sets for m in ('PSNR', 'SSIM'))],
                            rows)
    lines += ['', f'## Paired difference to `{arms[doc["baseline"]]["label"]}`, seed by seed: mean ± 95 % interval '
              '(seeds where the arm is ahead / pairs)', '']
    rows = []
    for name, arm in arms.items():
        if name == doc['baseline'] or not any('paired_psnr' in arm['sets'].get(s, {}) for s in sets):
            continue
        cells = [arm['label']]
        for s in sets:
            for metric, digits in (('psnr', 3), ('ssim', 4)):
                entry = arm['sets'].get(s, {}).get(f'paired_{metric}')
                cells.append('n/a' if entry is None else
                             f'{_signed(entry, digits)} ({entry["final"]["positive"]}/{entry["final"]["n"]})')
        rows.append(cells)
    lines += markdown_table(['arm', *(f'{s} {m}' for s in sets for m in ('ΔPSNR (dB)', 'ΔSSIM'))], rows)
    lines += ['', '## Teachers: final PSNR (dB) / SSIM, mean ± 95 % interval', '']
    rows = []
    for name, arm in arms.items():
        if not any('teacher_psnr' in arm['sets'].get(s, {}) for s in sets):
            continue
        cells = [arm['label'], str(len(arm['seeds_done']))]
        for s in sets:
            result = arm['sets'].get(s, {})
            cells += [_pm(result.get('teacher_psnr'), 3), _pm(result.get('teacher_ssim'), 4)]
        rows.append(cells)
    lines += markdown_table(['arm', 'seeds', *(f'{s} {m}' for s in sets for m in ('PSNR', 'SSIM'))], rows)
    return '\n'.join(lines) + '\n'


def _signed(entry, digits):
    final = entry['final']
    half = 'n/a' if final['ci95'] is None else f'{final["ci95"]:.{digits}f}'
    return f'{final["mean"]:+.{digits}f} ± {half}'


def plot(doc, path):
    """One row per validation set: the student's PSNR against iterations and against training compute (mean and
    95 % band over seeds), and the paired difference to the baseline against iterations."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    sets = sorted({s for arm in doc['arms'].values() for s in arm['sets']}, key=lambda s: (s != 'Set5', s))
    fig, axes = plt.subplots(max(1, len(sets)), 3, figsize=(17, 4.3 * max(1, len(sets))), squeeze=False)
    colours = plt.get_cmap('tab10')
    for row, set_name in zip(axes, sets):
        for i, (name, arm) in enumerate(doc['arms'].items()):
            result = arm['sets'].get(set_name, {})
            colour = colours(i % 10)
            student = result.get('student_psnr')
            if student:
                curve = student['curve']
                label = f'{arm["label"]} (n={student["final"]["n"]})'
                for ax, scale in ((row[0], 1), (row[1], arm['train_gmacs_per_iter'] / 1e3)):
                    xs = [it * scale for it in curve['iters']]
                    _band(ax, xs, curve, colour, label, dashed=name == doc['baseline'])
            paired = result.get('paired_psnr')
            if paired:
                _band(row[2], paired['curve']['iters'], paired['curve'], colour, arm['label'])
        row[0].set(xlabel='iteration', ylabel='student PSNR (dB)', title=f'{set_name}: equal iterations')
        row[1].set(xlabel='training compute (TMACs)', ylabel='student PSNR (dB)', title=f'{set_name}: equal compute')
        row[2].axhline(0, color='black', linewidth=0.8)
        row[2].set(xlabel='iteration', ylabel='ΔPSNR (dB), arm − baseline',
                   title=f'{set_name}: paired difference to {doc["arms"][doc["baseline"]]["label"]}')
        for ax in row:
            ax.grid(alpha=0.3)
            _zoom(ax, 0.15)
        row[0].legend(fontsize=7)
        row[2].legend(fontsize=7)
    fig.suptitle(f'Study {doc["name"]}: student at depth {doc["student_depth"]}; mean over seeds, 95 % band where '
                 'n >= 3; y axis zoomed on the curves after their first point')
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=80, format='png'))
    plt.close(fig)


def _band(ax, xs, curve, colour, label, dashed=False):
    """The mean curve, and its 95 % band when it rests on 3 seeds or more (with 2, Student's t of 12.7 makes a band
    that says nothing and hides the others)."""
    means = curve['mean']
    ax.plot(xs, means, '--' if dashed else '-', color=colour, label=label, linewidth=1.4)
    if all(h is not None for h in curve['ci95']) and min(curve['n']) >= 3:
        ax.fill_between(xs, [m - h for m, h in zip(means, curve['ci95'])],
                        [m + h for m, h in zip(means, curve['ci95'])], color=colour, alpha=0.12)


def _zoom(ax, margin):
    """Limit the y axis to the plotted mean curves after their first point, plus ``margin``."""
    values = [y for line in ax.get_lines() for y in line.get_ydata()[1:] if line.get_label()[:1] != '_']
    if values:
        ax.set_ylim(min(values) - margin, max(values) + margin)


REPORT_FILES = ('study.json', 'study.md', 'study.png')


def write_report(spec, out, report_dir=None):
    """Summarise the finished runs under ``out`` into ``report_dir`` (default ``out``): study.json, study.md,
    study.png, and students/ (copied from ``out`` when the folders differ). Returns the paths written."""
    report_dir = report_dir or out
    os.makedirs(report_dir, exist_ok=True)
    doc = summarise(copy.deepcopy(spec), collect(spec, out))
    paths = [osp.join(report_dir, name) for name in REPORT_FILES]
    atomic_write(paths[0], lambda f: json.dump(doc, f, indent=1), mode='w')
    atomic_write(paths[1], lambda f: f.write(markdown(doc)), mode='w')
    plot(doc, paths[2])
    students = osp.join(out, 'students')
    if osp.isdir(students) and osp.realpath(report_dir) != osp.realpath(out):
        os.makedirs(osp.join(report_dir, 'students'), exist_ok=True)
        for name in sorted(os.listdir(students)):  # copied whole or not at all, as every other write
            with open(osp.join(students, name), 'rb') as source:
                atomic_write(osp.join(report_dir, 'students', name), lambda f: shutil.copyfileobj(source, f))
        paths.append(osp.join(report_dir, 'students'))
    return paths
