"""sd-reproduce: the paper's tables as runs of the options/ files, evaluated with sd-eval's protocol.

Table 1: the control SRResNet-8 trained alone, self-distillation SD-32 (exit 8) and the deep-supervision ablation
DS-32 (exit 8), at equal iterations and seed. Table 2: SD with teachers of 32, 50 and 100 blocks (exit 8), beside
the control. Each run is ``sd-train -opt <template> --auto_resume`` on a copy of an options file whose budget and
data paths are set from the command line, so an interrupted run resumes and a finished one is skipped on rerun.
Every run is then evaluated on every benchmark set found under ``--data`` (``<set>/GTmod<s>`` + ``<set>/LRbicx<s>``).
Writes ``OUT/table<N>.json`` (the records, the runs and their wall times), ``OUT/table<N>.md`` and
``OUT/table<N>.png`` (PSNR against MACs).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from os import path as osp

import yaml

from sd_plugin.cli import one_line_errors
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.protocol import evaluate
from sd_plugin.evaluation.report import plot
from sd_plugin.files import atomic_write, plan_outputs, shipped_options
from sd_plugin.imports import parse_with_imports
from sd_plugin.text import markdown_table
from sd_plugin.yamlio import load_yaml

PAPER_SETS = ['Set5', 'Set14', 'BSD100', 'Urban100']  # the paper's column order; other sets follow by name
TABLES = {  # table -> [(options file stem, row label)]
    1: [('baseline_sr8', 'SRResNet-8 alone'), ('sd_sr32', 'SD-32'), ('ds_sr32', 'DS-32')],
    2: [('baseline_sr8', 'SRResNet-8 alone'), ('sd_sr32', 'SD-32'), ('sd_sr50', 'SD-50'), ('sd_sr100', 'SD-100')],
}


def benchmark_sets(data, scale):
    """Names of the folders under ``data`` in ``sd-prepare benchmark`` layout for ``scale``, sorted."""
    if not osp.isdir(data):
        raise ConfigError(f'--data {data}: no such folder')
    sets = sorted((d for d in os.listdir(data)
                   if osp.isdir(osp.join(data, d, f'GTmod{scale}')) and osp.isdir(osp.join(data, d, f'LRbicx{scale}'))),
                  key=lambda d: (PAPER_SETS.index(d) if d in PAPER_SETS else len(PAPER_SETS), d))
    if not sets:
        raise ConfigError(f'--data {data}: no benchmark set (<set>/GTmod{scale} and <set>/LRbicx{scale}) found')
    return sets


def run_options(template, iters, data, sets):
    """The option dict of one run: ``template`` with ``iters`` iterations (constant learning rate, validation and a
    checkpoint at the end), its ``datasets/`` paths moved under ``data``, and validation on ``sets``."""
    opt = load_yaml(template, '--options')
    opt['name'] = f'{opt["name"]}_{iters}it'
    train = opt['train']
    train.update(total_iter=iters)
    train['scheduler']['milestones'] = [iters]
    opt['val']['val_freq'] = iters + 1  # validate once, after training (train_pipeline always does)
    opt['logger'].update(save_checkpoint_freq=min(opt['logger']['save_checkpoint_freq'], iters), use_tb_logger=True)
    for key in ('dataroot_gt', 'dataroot_lq'):
        root = opt['datasets']['train'][key]
        if root.startswith('datasets/'):
            opt['datasets']['train'][key] = osp.join(data, root[len('datasets/'):])
    template_val = next(v for k, v in opt['datasets'].items() if k.startswith('val'))
    for key in [k for k in opt['datasets'] if k.startswith('val')]:
        del opt['datasets'][key]
    for i, name in enumerate(sets, 1):
        opt['datasets'][f'val_{i}'] = {**template_val, 'name': name,
                                       'dataroot_gt': osp.join(data, name, f'GTmod{opt["scale"]}'),
                                       'dataroot_lq': osp.join(data, name, f'LRbicx{opt["scale"]}')}
    return opt


def read_paper(path):
    """The ``--paper`` JSON: {row label: {set name: "PSNR / SSIM"}}; a ConfigError naming the file, and the line of
    a syntax error, for anything else."""
    try:
        with open(path) as f:
            paper = json.load(f)
    except json.JSONDecodeError as err:
        raise ConfigError(f'--paper {path}: not valid JSON at line {err.lineno}, column {err.colno} ({err.msg})') \
            from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f'--paper {path}: cannot read it ({type(err).__name__}: {getattr(err, "strerror", "")})') \
            from None
    if not isinstance(paper, dict) or not all(isinstance(row, dict) for row in paper.values()):
        raise ConfigError(f'--paper {path}: must be a JSON object of row label -> {{set name: "PSNR / SSIM"}}, e.g. '
                          '{"SD-32 exit 8": {"Set5": "31.80 / 0.8900"}}')
    return paper


def train(opt, out):
    """Train (or resume, or skip when finished) the run ``opt`` under ``out``; return its final checkpoint path and
    the wall time this call spent (0 when skipped)."""
    ckpt = osp.join(out, 'experiments', opt['name'], 'models', 'net_g_latest.pth')
    if osp.isfile(ckpt):
        print(f'{opt["name"]}: finished earlier, skipped')
        return ckpt, 0.0
    opt_path = osp.join(out, 'options', f'{opt["name"]}.yml')
    os.makedirs(osp.dirname(opt_path), exist_ok=True)
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    log_path = osp.join(out, 'logs', f'{opt["name"]}.log')
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    print(f'{opt["name"]}: training {opt["train"]["total_iter"]} iterations (log: {log_path})', flush=True)
    start = time.time()
    with open(log_path, 'a') as log:
        code = subprocess.call([sys.executable, '-c', 'from sd_plugin.train import main; main()', '-opt', opt_path,
                                '--auto_resume'], cwd=out, stdout=log, stderr=subprocess.STDOUT)  # rooted at out
    if code != 0 or not osp.isfile(ckpt):
        raise ConfigError(f'{opt["name"]}: training failed (exit {code}); see {log_path}')
    return ckpt, time.time() - start


def markdown(table, records, runs, paper):
    """Table in the paper's layout: one row per model output, PSNR/SSIM per set, paper values beside ours."""
    sets = list(dict.fromkeys(r['dataset'] for r in records))
    labels = {run['model']: run['label'] for run in runs}
    head = ['model', 'blocks run', 'params'] + [f'{s} {who}' for s in sets for who in ('ours', 'paper')]
    lines = [f'Table {table}: x{records[0]["scale"]} PSNR (dB) / SSIM, Y channel, border {records[0]["scale"]} '
             f'(sd-eval protocol); {runs[0]["iters"] if runs else 0} iterations per run.', '']
    body = []
    rows = dict.fromkeys((r['model'], r['exit']) for r in records)
    teacher_depth = {m: max(r['depth'] or 0 for r in records if r['model'] == m) for m, _ in rows}
    for model, exit_ in rows:
        mine = {r['dataset']: r for r in records if (r['model'], r['exit']) == (model, exit_)}
        first = next(iter(mine.values()))
        if model == 'bicubic':
            label = 'Bicubic'
        elif exit_ is None:
            label = labels[model]
        else:
            label = f'{labels[model]} {"teacher" if exit_ == teacher_depth[model] else f"exit {exit_}"}'
        cells = [label, str(first['depth'] or '-'), f'{first["params"]:,}' if first['params'] else '-']
        for s in sets:
            cells += [f'{mine[s]["psnr"]:.2f} / {mine[s]["ssim"]:.4f}', paper.get(label, {}).get(s, 'n/a')]
        body.append(cells)
    times = ', '.join(f'{r["label"]} {r["seconds"] / 60:.1f} min' for r in runs)
    lines += [*markdown_table(head, body), '', f'Run wall times: {times}.']
    if not paper:
        lines.append('Paper values: not given (pass --paper FILE with '
                     '{"<row label>": {"<set>": "PSNR / SSIM"}}).')
    return '\n'.join(lines) + '\n'


def reproduce(table, iters, data, out, options_dir=None, paper=None):
    """Train, evaluate and report one table; returns the JSON document written to ``OUT/table<N>.json``."""
    if table not in TABLES:
        raise ConfigError(f'--table {table}: must be one of {sorted(TABLES)}')
    if iters < 1:
        raise ConfigError(f'--iters {iters}: must be >= 1')
    data, out = osp.abspath(data), osp.abspath(out)
    options_dir = options_dir or shipped_options('cpu')
    tables = {ext: osp.join(out, f'table{table}.{ext}') for ext in ('json', 'md', 'png')}
    plan_outputs({f'--out table{table}.{ext}': path for ext, path in tables.items()},  # each rerun rewrites them
                 {'--data': data, '--options': options_dir}, overwrite=True)
    os.makedirs(out, exist_ok=True)
    runs, ckpts = [], []
    for stem, label in TABLES[table]:
        template = osp.join(options_dir, f'{stem}.yml')
        if not osp.isfile(template):
            raise ConfigError(f'--options {options_dir}: no {stem}.yml')
        scale = (load_yaml(template, '--options') or {}).get('scale')
        opt = run_options(template, iters, data, benchmark_sets(data, scale))
        ckpt, seconds = train(opt, out)
        runs.append({'model': opt['name'], 'label': label, 'options': template, 'iters': iters, 'seconds': seconds,
                     'scale': scale})
        ckpts.append(ckpt)
    run_scales = sorted({r['scale'] for r in runs})
    if len(run_scales) != 1:
        raise ConfigError(f'--options {options_dir}: the templates of table {table} mix scales {run_scales}')
    scale = run_scales[0]
    records = evaluate(ckpts, data, benchmark_sets(data, scale), scale=scale, names=[r['model'] for r in runs])
    doc = {'table': table, 'iters': iters, 'data': data, 'runs': runs, 'records': records}
    atomic_write(tables['json'], lambda f: json.dump(doc, f, indent=2), mode='w')
    atomic_write(tables['md'], lambda f: f.write(markdown(table, records, runs, paper or {})), mode='w')
    plot(records, tables['png'])
    return doc


@one_line_errors('sd-reproduce')
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='sd-reproduce', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example (CPU budget, data from scripts/prepare_cpu_data.sh):\n'
        '  sd-reproduce --table 1 --iters 3000 --data datasets --out results/')
    parser.add_argument('--table', type=int, required=True, help='1 (SD vs DS vs alone) or 2 (teacher depth)')
    parser.add_argument('--iters', type=int, required=True, help='training iterations of every run')
    parser.add_argument('--data', required=True, help='folder with the training set (291/) and benchmark sets')
    parser.add_argument('--out', default='results', help='output folder (default: results)')
    parser.add_argument('--options', default=None, help='folder of option templates (default: the cpu/ options '
                        'shipped with sd_plugin)')
    parser.add_argument('--paper', default=None, help='JSON of the paper\'s values to print beside ours')
    args = parse_with_imports(parser, argv)
    paper = read_paper(args.paper) if args.paper else None
    reproduce(args.table, args.iters, args.data, args.out, args.options, paper)
    print(open(osp.join(osp.abspath(args.out), f'table{args.table}.md')).read())


if __name__ == '__main__':
    main()
