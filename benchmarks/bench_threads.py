"""Threads: is the default thread choice (``sd_plugin.threads``: the cores idle at the start) as fast as the best
fixed count, on an idle machine and with one core busy with another program?

Two workloads, each timed interleaved (benchlib) with torch's intra-op threads set to the default choice, to 1 and
to 2:

  train    one SelfDistillSRModel step (``basicsr.models.build_model``; feed_data + optimize_parameters) of the
           quickstart's model: SRResNetMultiExit 32 features, 16 blocks, exit 4, batch 4, GT 64
  upscale  ``sd_plugin.inference.upscale_array`` (the sd-upscale path) of a 160x120 RGB image by that network's
           exit 4 (the exported student), sd-upscale's default tile

in two conditions: ``idle`` (nothing else should run: pause other work first) and ``busy`` (a process started by
this script spins on CPU 0, pinned there with ``os.sched_setaffinity``, and is stopped after). The default is
decided at the start of each condition, as a command decides it (``sd_plugin.threads.auto_threads``: the cores idle
over 0.2 s). Ratios: default / the best fixed count (the fixed count with the lower median time; per-round ratio
against it), goal <= 1.15, with the UNSTABLE rule (benchmarks/README.md); and, idle, 2 threads / 1 thread (< 1: two
threads win, as they should on an idle 2-core machine).

``--sd-train`` instead times whole ``sd-train`` runs (subprocesses, ``--train-iters`` iterations of the same model
on datasets/291's LMDB, no validation) with one core busy: the default (no OMP_NUM_THREADS) against
``OMP_NUM_THREADS=1``, interleaved, goal default / 1 thread <= 1.25 (issue 18's "Done when").

Examples::

    python benchmarks/bench_threads.py --quick
    python benchmarks/bench_threads.py --rounds 10 --json results/bench_threads.json
    python benchmarks/bench_threads.py --sd-train --rounds 5 --train-iters 30
"""
import benchlib  # noqa: I001  (first: imports sd_plugin before basicsr)
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from os import path as osp

import numpy as np
import torch
import yaml
from basicsr.models import build_model

from sd_plugin import threads
from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.inference import upscale_array
from sd_plugin.tools.upscale import DEFAULT_TILE

GOAL_DEFAULT = 1.15  # default / best fixed count
GOAL_SD_TRAIN = 1.25  # sd-train default / OMP_NUM_THREADS=1, one core busy
FEAT, BLOCKS, EXIT, BATCH, GT = 32, 16, 4, 4, 64


def spin(cpu):
    """A tight loop on one CPU: another program keeping a core busy."""
    os.sched_setaffinity(0, {cpu})
    while True:
        pass


class BusyCore:
    """``with BusyCore(cpu):`` a process spins on ``cpu`` for the block (nothing when ``cpu`` is None)."""

    def __init__(self, cpu):
        self.cpu, self.process = cpu, None

    def __enter__(self):
        if self.cpu is not None:
            self.process = multiprocessing.get_context('fork').Process(target=spin, args=(self.cpu,), daemon=True)
            self.process.start()
            time.sleep(0.5)  # started and spinning
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.terminate()
            self.process.join()


def default_threads():
    """What a command picks now when the user set nothing: (threads, its one-line description)."""
    count, idle, cores = threads.auto_threads()
    return count, f'{count} thread(s) ({idle if idle is None else round(idle, 2)} idle cores of {cores})'


def train_step():
    network = benchlib.arch(BLOCKS, exits=[EXIT], num_feat=FEAT)
    opt = benchlib.model_options(network, 'cpu', self_distill={
        'student_pixel_weight': 0.9, 'distill_opt': {'type': 'L1DistillLoss', 'loss_weight': 0.1}})
    model = build_model(opt)
    gen = torch.Generator().manual_seed(0)
    data = {'lq': torch.rand(BATCH, 3, GT // 4, GT // 4, generator=gen),
            'gt': torch.rand(BATCH, 3, GT, GT, generator=gen)}

    def step():
        model.feed_data(data)
        model.optimize_parameters(1)
    return step


def upscale_call():
    torch.manual_seed(0)
    net = SRResNetMultiExit(num_feat=FEAT, num_block=BLOCKS, exits=[EXIT], deploy_exit=EXIT).eval()
    img = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    return lambda: upscale_array(net, img, tile=DEFAULT_TILE)


def with_threads(call, count):
    """``call`` with ``count`` torch threads. A command keeps one count throughout; here the count changes between
    the interleaved variants, so a small parallel op first brings OpenMP's pool to the new size (< 1 ms)."""
    probe = torch.ones(128, 128)

    def run():
        torch.set_num_threads(count)
        for _ in range(3):
            probe @ probe
        call()
    return run


def condition(name, busy_cpu, workloads, rounds, reps):
    """Time every workload with the default, 1 and 2 threads; returns the ratio dicts and the times."""
    results, all_times = [], {}
    with BusyCore(busy_cpu):
        default, line = default_threads()
        print(f'\n== {name}: the default picks {line}', flush=True)
        for workload, call in workloads.items():
            variants = {f'default ({default})': with_threads(call, default), '1 thread': with_threads(call, 1),
                        '2 threads': with_threads(call, 2)}
            times, warm = benchlib.interleaved(variants, rounds, torch.device('cpu'), reps=reps[workload])
            names = list(variants)
            best = min(names[1:], key=lambda n: benchlib.spread(times[n])['median'])
            ratios = [benchlib.ratio(times, names[0], best, f'{workload}: default / best fixed ({best})',
                                     goal=('<=', GOAL_DEFAULT, 'issue 18'))]
            if busy_cpu is None:
                ratios.append(benchlib.ratio(times, '2 threads', '1 thread', f'{workload}: 2 threads / 1 thread',
                                             goal=('<=', 1.0, 'idle: 2 threads win')))
            print(f'\n{name} / {workload} (seconds per call = {reps[workload]} {workload} calls)')
            print(benchlib.ms_table(times, warm))
            print(benchlib.ratio_table(ratios))
            results += [{**r, 'condition': name, 'default_threads': default, 'default_line': line} for r in ratios]
            all_times[f'{name}/{workload}'] = times
    return results, all_times


def sd_train_options(folder, iters):
    """A training option file of the quickstart's model on datasets/291's LMDB, no validation, no checkpoints."""
    root = benchlib.ROOT
    opt = {'name': 'bench_threads', 'model_type': 'SelfDistillSRModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 0,
           'datasets': {'train': {
               'name': '291', 'type': 'PairedImageDataset', 'io_backend': {'type': 'lmdb'},
               'dataroot_gt': osp.join(root, 'datasets', '291', 'HR_sub.lmdb'),
               'dataroot_lq': osp.join(root, 'datasets', '291', 'LR_bicubic_X4_sub.lmdb'), 'filename_tmpl': '{}',
               'gt_size': GT, 'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 0,
               'batch_size_per_gpu': BATCH, 'dataset_enlarge_ratio': 1}},
           'network_g': benchlib.arch(BLOCKS, exits=[EXIT], num_feat=FEAT),
           'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
           'train': {'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': 5e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
                     'scheduler': {'type': 'MultiStepLR', 'milestones': [10**6], 'gamma': 0.5}, 'total_iter': iters,
                     'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
                     'self_distill': {'student_pixel_weight': 0.9,
                                      'distill_opt': {'type': 'L1DistillLoss', 'loss_weight': 0.1}}},
           'logger': {'print_freq': 10, 'save_checkpoint_freq': 10**6, 'use_tb_logger': False}}
    path = osp.join(folder, 'bench_threads.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def sd_train(args):
    """Whole sd-train runs with one core busy: default against OMP_NUM_THREADS=1, interleaved."""
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')}
    variants = {'default': env, 'OMP_NUM_THREADS=1': {**env, 'OMP_NUM_THREADS': '1'}}
    command = osp.join(osp.dirname(sys.executable), 'sd-train')
    times = {name: [] for name in variants}
    chosen = []
    with tempfile.TemporaryDirectory() as folder, BusyCore(0):
        opt = sd_train_options(folder, args.train_iters)
        for r in range(args.rounds or 5):
            names = list(variants)[r % 2:] + list(variants)[:r % 2]
            for name in names:
                start = time.perf_counter()
                proc = subprocess.run([command, '-opt', opt], cwd=folder, env=variants[name], capture_output=True,
                                      text=True)
                times[name].append(time.perf_counter() - start)
                if proc.returncode != 0:
                    raise SystemExit(f'sd-train failed:\n{proc.stderr[-2000:]}')
                chosen += [line for line in proc.stdout.splitlines() if line.startswith('sd-train: ')][:1]
                print(f'round {r + 1} {name}: {times[name][-1]:.1f} s; {chosen[-1] if chosen else ""}', flush=True)
    ratio = benchlib.ratio(times, 'default', 'OMP_NUM_THREADS=1', 'sd-train default / OMP_NUM_THREADS=1, one core busy',
                           goal=('<=', GOAL_SD_TRAIN, 'issue 18'))
    print(f'\nsd-train, {args.train_iters} iterations of SRResNetMultiExit {FEAT}f/{BLOCKS}b/exit {EXIT}, '
          f'batch {BATCH}, GT {GT}, a process spinning on CPU 0 (whole runs, startup included)')
    print(benchlib.ms_table(times, {name: 0. for name in times}))
    print(benchlib.ratio_table([ratio]))
    print('choices seen: ' + '; '.join(sorted(set(chosen))))
    return [ratio], times


def main():
    parser = benchlib.base_parser(__doc__.split('\n\n')[0], precision=False, compile_=False)
    parser.add_argument('--sd-train', action='store_true', help='time whole sd-train runs with one core busy')
    parser.add_argument('--train-iters', type=int, default=30, help='iterations per sd-train run (default: 30)')
    args = parser.parse_args()
    device = benchlib.setup(args)
    if os.environ.get('OMP_NUM_THREADS'):
        raise SystemExit('unset OMP_NUM_THREADS: this benchmark compares thread counts itself')
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit('needs at least 2 CPUs')
    print(f'torch {torch.__version__}, {os.cpu_count()} CPUs, torch default {threads.TORCH_DEFAULT} threads; '
          f'load average {", ".join(f"{v:.2f}" for v in os.getloadavg())}', flush=True)
    if args.sd_train:
        ratios, times = sd_train(args)
    else:
        rounds = args.rounds or (5 if args.quick else 10)
        workloads = {'train': train_step(), 'upscale': upscale_call()}
        reps = {'train': 2, 'upscale': 1}
        ratios, times = [], {}
        for name, cpu in (('idle', None), ('busy', 0)):
            more, t = condition(name, cpu, workloads, rounds, reps)
            ratios += more
            times.update(t)
        print('\nsummary')
        print(benchlib.ratio_table([{**r, 'name': f'{r["condition"]}: {r["name"]}'} for r in ratios]))
    print(f'load average after: {", ".join(f"{v:.2f}" for v in os.getloadavg())}')
    if args.json:
        import json
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump({'environment': benchlib.environment(device), 'ratios': ratios, 'seconds': times}, f, indent=1)
        print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
