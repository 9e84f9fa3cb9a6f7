"""Shared helpers of the benchmark scripts: interleaved timing, per-round ratios with their spread, MAC bounds from
the project's MAC counter (``sd_plugin.complexity.count_macs``), goal checks, tables and JSON.

Timing protocol: every round runs each variant once (``reps`` calls, then a device sync), in an order rotated by one
each round (A B C, B C A, C A B, ...), so slow drifts and neighbours' load hit all variants alike. A ratio is taken
per round (variant X's time / variant Y's time in the same round); we report the median of those per-round ratios,
their inter-quartile range (25-75 %) and their min-max.

Judging (``judge``): a ratio is UNSTABLE, neither PASS nor MISS, when its spread is too wide to decide: its IQR is
wider than ``MAX_REL_IQR`` (20 %) of its median, or a goal's boundary lies inside the IQR (the first and third
quartiles would give different verdicts), or it has fewer than ``MIN_ROUNDS`` (5) per-round values. A ratio without
a goal is flagged UNSTABLE on the first and last rules alone.
"""
import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from os import path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch import nn  # noqa: E402

import sd_plugin  # noqa: E402,F401  (compat fixes and registrations, before basicsr)
from sd_plugin.complexity import count_macs  # noqa: E402

DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
MAX_REL_IQR = 0.20  # UNSTABLE above this IQR / median (--max-rel-iqr)
MIN_ROUNDS = 5  # UNSTABLE with fewer per-round values: their quartiles say little


# ----------------------------------------------------------------------------------------------- command line


def base_parser(description, precision=True, compile_=True):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--quick', action='store_true', help='smaller inputs and fewer rounds (< 1 min on 2 cores)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu', help='default: cpu')
    if precision:
        parser.add_argument('--precision', choices=list(DTYPES), default='fp32',
                            help='fp32 (default), or torch.autocast to bf16 / fp16 (fp16: CUDA only)')
    if compile_:
        parser.add_argument('--compile', action='store_true', help='torch.compile the networks')
    parser.add_argument('--rounds', type=int, default=None, help='timed rounds (default: per script, fewer with '
                        '--quick)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--max-rel-iqr', type=float, default=MAX_REL_IQR, metavar='R',
                        help=f'a ratio whose IQR is wider than R x its median is UNSTABLE (default: {MAX_REL_IQR})')
    parser.add_argument('--json', default=None, metavar='PATH', help='write the results here')
    return parser


def setup(args):
    """Check --device / --precision, set threads, silence BasicSR's INFO log; return the torch.device."""
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: CUDA is not available on this machine')
    if getattr(args, 'precision', 'fp32') == 'fp16' and args.device != 'cuda':
        raise SystemExit('--precision fp16: CUDA only (use bf16 on the CPU)')
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.rounds is not None and args.rounds < 2:
        raise SystemExit('--rounds: at least 2')
    global MAX_REL_IQR
    if not args.max_rel_iqr > 0:
        raise SystemExit(f'--max-rel-iqr {args.max_rel_iqr}: must be > 0')
    MAX_REL_IQR = args.max_rel_iqr
    from basicsr.utils import get_root_logger
    get_root_logger().setLevel(logging.WARNING)  # build_model prints every network otherwise
    logging.getLogger('torch._dynamo').setLevel(logging.ERROR)
    if args.device == 'cuda':
        torch.backends.cudnn.benchmark = True  # as basicsr.train does
    return torch.device(args.device)


def environment(device):
    env = {'torch': torch.__version__, 'device': str(device), 'threads': torch.get_num_threads(),
           'python': platform.python_version(), 'cpu_count': os.cpu_count()}
    if device.type == 'cuda':
        env['gpu'] = torch.cuda.get_device_name(device)
    return env


# ----------------------------------------------------------------------------------------------- timing


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def interleaved(variants, rounds, device, reps=1, warmup=1):
    """Time ``variants`` ({name: zero-argument callable}) interleaved.

    Every variant first runs ``warmup`` times (compilation, cudnn autotuning, allocator). Then ``rounds`` rounds,
    each running every variant ``reps`` times in a rotated order.

    Returns:
        (dict, dict): {name: [seconds per call, one per round]}, {name: seconds of the warm-up (first call incl.)}.
    """
    names = list(variants)
    warm = {}
    for name in names:
        start = time.perf_counter()
        for _ in range(warmup):
            variants[name]()
        sync(device)
        warm[name] = time.perf_counter() - start
    times = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            sync(device)
            start = time.perf_counter()
            for _ in range(reps):
                variants[name]()
            sync(device)
            times[name].append((time.perf_counter() - start) / reps)
    return times, warm


def spread(values):
    """{'median', 'q1', 'q3', 'min', 'max'} of a list of numbers (quartiles: inclusive method)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method='inclusive')
    return {'median': statistics.median(values), 'q1': q1, 'q3': q3, 'min': min(values), 'max': max(values)}


def judge(per_round, goal=None, max_rel_iqr=None, min_rounds=None):
    """Spread and verdict of a list of per-round ratios.

    Args:
        per_round (list[float]): the ratio of each round.
        goal (tuple | None): ('<=' or '>=', value, text), or ('in', (low, high), text): what the median must meet.
        max_rel_iqr (float | None): UNSTABLE when (q3 - q1) / median exceeds it; None: ``MAX_REL_IQR``.
        min_rounds (int | None): UNSTABLE with fewer values; None: ``MIN_ROUNDS``.
    Returns:
        dict: ``spread``'s keys, ``rel_iqr``, ``unstable`` (a list of reasons, empty when the spread allows a
        verdict), ``verdict`` ('PASS', 'MISS', 'UNSTABLE', or '' for a stable ratio without a goal) and ``result``
        (the table's text); with a goal also ``goal``, ``goal_text``, ``goal_value``, ``goal_op``, ``margin`` (> 0:
        the median is inside the goal, as a share of the goal) and ``passed`` (True / False; None when UNSTABLE).
    """
    max_rel_iqr = MAX_REL_IQR if max_rel_iqr is None else max_rel_iqr
    min_rounds = MIN_ROUNDS if min_rounds is None else min_rounds
    out = spread(per_round)
    med, q1, q3 = out['median'], out['q1'], out['q3']
    out['rel_iqr'] = (q3 - q1) / abs(med) if med else float('inf')
    reasons = []
    if len(per_round) < min_rounds:
        reasons.append(f'{len(per_round)} rounds, fewer than {min_rounds}')
    if out['rel_iqr'] > max_rel_iqr:
        reasons.append(f'IQR {q1:.3f}-{q3:.3f}, {100 * out["rel_iqr"]:.0f} % of the median')
    if goal is not None:
        op, value, text = goal
        if op == 'in':  # margin: distance to the nearer end, relative to it; > 0 inside
            low, high = value
            margin = min((med - low) / low, (high - med) / high)
            shown, edges = f'in [{low:.3f}, {high:.3f}]', (low, high)
        elif op in ('<=', '>='):
            margin = (value - med) / value if op == '<=' else (med - value) / value  # > 0: inside the goal
            shown, edges = f'{op} {value:.3f}', (value,)
        else:
            raise ValueError(f'goal {goal!r}: the operator must be <=, >= or in')
        inside = [e for e in edges if q1 < e < q3]
        if inside:
            reasons.append(f'goal {inside[0]:.3f} inside IQR {q1:.3f}-{q3:.3f}')
        out.update(goal=shown, goal_text=text, goal_value=value, goal_op=op, margin=margin,
                   passed=None if reasons else margin >= 0)
    out['unstable'] = reasons
    if reasons:
        out['verdict'], out['result'] = 'UNSTABLE', f'UNSTABLE ({"; ".join(reasons)})'
    elif goal is not None:
        out['verdict'] = 'PASS' if out['passed'] else 'MISS'
        out['result'] = f'{out["verdict"]} (margin {100 * out["margin"]:+.1f} %)'
    else:
        out['verdict'], out['result'] = '', ''
    return out


def ratio(times, num, den, name, bound=None, goal=None, note=''):
    """Per-round ratio ``times[num] / times[den]`` with its spread and verdict (``judge``); ``num``/``den``: a
    variant, or a list of variants whose times are added up in each round.

    Args:
        bound (float | None): the MAC-bound value of the same ratio.
        goal (tuple | None): ('<=' or '>=', value, text), or ('in', (low, high), text): what the median must meet.
    """
    nums, dens = ([v] if isinstance(v, str) else list(v) for v in (num, den))
    per_round = [sum(times[n][i] for n in nums) / sum(times[d][i] for d in dens) for i in range(len(times[nums[0]]))]
    return {'name': name, 'num': num, 'den': den, **judge(per_round, goal), 'per_round': per_round, 'bound': bound,
            'note': note}


def ms_table(times, warm):
    rows = [('variant', 'median ms', 'IQR ms', 'min-max ms', 'warm-up s')]
    for name, values in times.items():
        s = spread(values)
        rows.append((name, f'{1e3 * s["median"]:.2f}', f'{1e3 * s["q1"]:.2f}-{1e3 * s["q3"]:.2f}',
                     f'{1e3 * s["min"]:.2f}-{1e3 * s["max"]:.2f}', f'{warm[name]:.1f}'))
    return format_rows(rows)


def ratio_table(ratios):
    rows = [('ratio', 'median', 'IQR', 'min-max', 'MAC bound', 'goal', 'result')]
    for r in ratios:
        result = r.get('result', '')
        rows.append((r['name'], f'{r["median"]:.3f}', f'{r["q1"]:.3f}-{r["q3"]:.3f}', f'{r["min"]:.3f}-{r["max"]:.3f}',
                     '-' if r['bound'] is None else f'{r["bound"]:.3f}',
                     r.get('goal', '') + (f' ({r["goal_text"]})' if r.get('goal_text') else ''), result))
    text = format_rows(rows)
    notes = [f'  {r["name"]}: {r["note"]}' for r in ratios if r.get('note')]
    return text + ('\nnotes:\n' + '\n'.join(notes) if notes else '')


def format_rows(rows):
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def report(title, config, times, warm, ratios, macs, device, json_path):
    print(f'\n{title}')
    print('config: ' + ', '.join(f'{k}={v}' for k, v in config.items()))
    print('MACs per LR pixel: ' + ', '.join(f'{k} {v / 1e6:.3f}M' for k, v in macs.items()))
    print(ms_table(times, warm))
    print()
    print(ratio_table(ratios))
    if json_path:
        result = {'title': title, 'config': config, 'environment': environment(device), 'macs_per_lr_pixel': macs,
                  'seconds': times, 'warmup_seconds': warm, 'ratios': ratios}
        os.makedirs(osp.dirname(osp.abspath(json_path)), exist_ok=True)
        with open(json_path, 'w') as f:
            json.dump(result, f, indent=1)
        print(f'wrote {json_path}')


# ----------------------------------------------------------------------------------------------- networks and MACs


class AllExits(nn.Module):
    """``net(x, all_exits=True)`` as a plain ``forward(x)``, so that ``count_macs`` counts the one-pass cost of every
    output (the training step's and validation's forward)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    @property
    def conv_first(self):
        return self.net.conv_first

    def forward(self, x):
        return self.net(x, all_exits=True)


def macs_per_lr_pixel(net, depth=None, all_exits=False, size=64):
    """MACs per LR pixel of ``net`` by ``sd_plugin.complexity.count_macs`` (conv MACs; exact per pixel
    with padding).
    ``depth``: run ``forward_exits(x, [depth])``; ``all_exits``: the one-pass all-exits forward; else ``net(x)``."""
    net = AllExits(net) if all_exits else net
    return count_macs(net, depth, (size, size)) / (size * size)


def arch(num_block, exits=None, deploy_exit=None, num_feat=64):
    """Option dict of ``MSRResNet`` (``exits`` None) or ``SRResNetMultiExit``, x4, RGB."""
    opt = {'type': 'MSRResNet' if exits is None else 'SRResNetMultiExit', 'num_in_ch': 3, 'num_out_ch': 3,
           'num_feat': num_feat, 'num_block': num_block, 'upscale': 4}
    if exits is not None:
        opt['exits'] = list(exits)
        if deploy_exit is not None:
            opt['deploy_exit'] = deploy_exit
    return opt


def model_options(network_g, device, model_type=None, **train_overrides):
    """The option dict ``basicsr.models.build_model`` takes (as after ``parse_options``), for a training model:
    ``SelfDistillSRModel`` for an ``SRResNetMultiExit``, else ``SRModel``; Adam 1e-4, L1, no EMA."""
    sd = network_g['type'] == 'SRResNetMultiExit'
    train = {'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': 1e-4, 'weight_decay': 0, 'betas': [0.9, 0.99]},
             'scheduler': {'type': 'MultiStepLR', 'milestones': [10**9], 'gamma': 0.5}, 'total_iter': 10**9,
             'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}}
    train.update(train_overrides)
    return {'name': 'bench', 'model_type': model_type or ('SelfDistillSRModel' if sd else 'SRModel'), 'scale': 4,
            'num_gpu': 1 if torch.device(device).type == 'cuda' else 0, 'manual_seed': 0, 'is_train': True,
            'dist': False, 'rank': 0, 'world_size': 1, 'auto_resume': False, 'network_g': network_g,
            'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None}, 'train': train,
            'val': {'val_freq': 10**9, 'save_img': False}, 'logger': {'print_freq': 10**9}}


def autocast(device, precision):
    """A ``torch.autocast`` context for ``precision`` ('bf16' / 'fp16'), or a no-op one for 'fp32'."""
    import contextlib
    dtype = DTYPES[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
