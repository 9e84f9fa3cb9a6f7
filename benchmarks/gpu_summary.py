"""Per-exit PSNR and training time of the gpu_check.sh trainings, read off BasicSR's training logs.

For each experiment (``experiments/<name>/train_<name>_*.log``, the newest), prints the last validation of every
dataset, one row per output (``psnr`` = the network's final output, the teacher for SelfDistillSRModel;
``psnr_exit8`` = its exit 8), with the best value and its iteration, and the training time: BasicSR's
"Time consumed" (validation included) and its last averaged iteration and data times.

Example::

    python benchmarks/gpu_summary.py gpu_check_sd32_exit8_x4 gpu_check_msrresnet8_x4 --json results/summary.json
"""
import argparse
import glob
import json
import os
import re
from os import path as osp

VALIDATION = re.compile(r'Validation (\S+)\n((?:\s+# \S+: [-\d.]+(?:\tBest: [-\d.]+ @ \d+ iter)?\n?)+)')
METRIC = re.compile(r'# (\S+): ([-\d.]+)(?:\tBest: ([-\d.]+) @ (\d+) iter)?')
ITER = re.compile(r'iter:\s*([\d,]+), lr:.*?time \(data\): ([\d.]+) \(([\d.]+)\)')
CONSUMED = re.compile(r'End of training\. Time consumed: (\S+)')


def seconds(text):
    parts = [float(p) for p in text.split(', ')[-1].split(':')]
    days = int(text.split(' day')[0]) if 'day' in text else 0
    return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def read_log(root, name):
    logs = sorted(glob.glob(osp.join(root, 'experiments', name, f'train_{name}_*.log')), key=osp.getmtime)
    if not logs:
        raise SystemExit(f'{name}: no training log under {osp.join(root, "experiments", name)}')
    text = open(logs[-1]).read()
    result = {'experiment': name, 'log': logs[-1], 'validation': {}, 'iter': None, 'iter_time_s': None,
              'data_time_s': None, 'consumed_s': None}
    for dataset, block in VALIDATION.findall(text):
        metrics = {}
        for metric, value, best, best_iter in METRIC.findall(block):
            metrics[metric] = {'value': float(value), 'best': float(best) if best else None,
                               'best_iter': int(best_iter) if best_iter else None}
        result['validation'][dataset] = metrics  # the last validation of each dataset wins
    iters = ITER.findall(text)
    if iters:
        it, iter_time, data_time = iters[-1]
        result.update(iter=int(it.replace(',', '')), iter_time_s=float(iter_time), data_time_s=float(data_time))
    consumed = CONSUMED.findall(text)
    if consumed:
        result['consumed_s'] = seconds(consumed[-1])
    return result


def table(results):
    datasets = list(dict.fromkeys(d for r in results for d in r['validation']))
    rows = [('experiment', 'output', *[f'{d} PSNR (best @ iter)' for d in datasets], 'iter s (data s)',
             'trained s')]
    for r in results:
        metrics = list(dict.fromkeys(m for d in r['validation'].values() for m in d))
        for metric in metrics:
            cells = []
            for d in datasets:
                v = r['validation'].get(d, {}).get(metric)
                cells.append('-' if v is None else f'{v["value"]:.3f} ({v["best"]:.3f} @ {v["best_iter"]})'
                             if v['best'] is not None else f'{v["value"]:.3f}')
            output = 'final output' if metric == 'psnr' else metric.replace('psnr_', '')
            timing = '-' if r['iter_time_s'] is None else f'{r["iter_time_s"]:.4f} ({r["data_time_s"]:.4f})'
            trained = '-' if r['consumed_s'] is None else f'{r["consumed_s"]:.0f}'
            rows.append((r['experiment'], output, *cells, timing, trained))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('names', nargs='+', help='experiment names (the YAML name)')
    parser.add_argument('--root', default='.', help='folder holding experiments/ (default: .)')
    parser.add_argument('--json', default=None, metavar='PATH', help='write the results here')
    args = parser.parse_args(argv)
    results = [read_log(args.root, name) for name in args.names]
    print('Last validation (BasicSR: Y channel, border 4 cropped), per output; training time from the log')
    print(table(results))
    missing = [r['experiment'] for r in results if not r['validation']]
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
        print(f'wrote {args.json}')
    if missing:
        raise SystemExit(f'no validation in the log of {", ".join(missing)}')


if __name__ == '__main__':
    main()
