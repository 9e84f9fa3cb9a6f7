"""sd-calibrate: fit the ``edge`` and ``learned`` routers of a multi-exit checkpoint on training images, for
``sd-upscale --budget`` and ``sd-eval --budget``.

Example::

    sd-calibrate experiments/sd/models/net_g_latest.pth --data ../shared/data/T91/HR ../shared/data/BSD200/HR

Each HR image is cut to a multiple of the scale and shrunk by MATLAB bicubic (as ``sd-prepare``); every output of the
network runs on its LR, and each ``--route-tile`` LR tile gives a sample: its edge score, the trunk's feature
statistics and the true gain of each output (``sd_plugin.routing.calibration``). Calibrate on training images, never
on the benchmark sets you report. The result is written beside the checkpoint as ``CKPT.routing.json`` (with the
checkpoint's SHA-256); the checkpoint itself is only read.
"""
import argparse
import sys
import time

import torch
from tqdm import tqdm

from sd_plugin.cli import one_line_errors
from sd_plugin.errors import ConfigError
from sd_plugin.files import plan_outputs
from sd_plugin.imports import parse_with_imports
from sd_plugin.inference import load_sr_network
from sd_plugin.routing.calibration import calibrate, collect_samples, image_files, routing_path, save_calibration
from sd_plugin.routing.plan import DEFAULT_ROUTE_TILE
from sd_plugin.routing.staged import staged

PROG = 'sd-calibrate'


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0],
                                     epilog='example: sd-calibrate net_g_latest.pth --data ../shared/data/T91/HR '
                                     '../shared/data/BSD200/HR')
    parser.add_argument('ckpt', metavar='CKPT', help='multi-exit checkpoint (net_g_*.pth)')
    parser.add_argument('--data', nargs='+', required=True, metavar='DIR', help='folders of HR training images')
    parser.add_argument('--route-tile', type=int, default=DEFAULT_ROUTE_TILE,
                        help=f'tile side in LR pixels (default: {DEFAULT_ROUTE_TILE})')
    parser.add_argument('--max-images', type=int, default=0, help='use every n-th image so that at most this many '
                        'run (default 0: all)')
    parser.add_argument('--bins', type=int, default=12, help='edge-score bins of the edge table (default: 12)')
    parser.add_argument('--hidden', type=int, default=6, help='hidden units of the learned router (default: 6)')
    parser.add_argument('--steps', type=int, default=2000, help='training steps of the learned router (default: 2000)')
    parser.add_argument('--param-key', default=None,
                        help='weights to use (default: params_ema if present, else params)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing CKPT.routing.json that '
                        'sd-calibrate wrote (listed in .sd-calibrate.written beside it)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


@one_line_errors(PROG)
def main(argv=None):
    args = parse_with_imports(build_parser(), argv)
    for key, value, low in (('--route-tile', args.route_tile, 1), ('--max-images', args.max_images, 0),
                            ('--bins', args.bins, 1), ('--hidden', args.hidden, 1), ('--steps', args.steps, 1)):
        if value < low:
            raise ConfigError(f'{key} {value}: must be >= {low}')
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f'--threads {args.threads}: must be >= 1')
        torch.set_num_threads(args.threads)
    out = routing_path(args.ckpt)
    plan_outputs({'CKPT.routing.json': out}, {'CKPT': args.ckpt, '--data': args.data}, args.overwrite, tool=PROG,
                 companions=False)
    net, info = load_sr_network(args.ckpt, param_key=args.param_key)
    stages = staged(net)
    paths = image_files(args.data)
    if args.max_images and len(paths) > args.max_images:
        paths = paths[::-(-len(paths) // args.max_images)]
    print(f'{PROG}: {args.ckpt} [{info["param_key"] or "state dict"}] outputs {stages.depths}, x{stages.scale}; '
          f'{len(paths)} images, tile {args.route_tile} LR px', flush=True)
    start = time.perf_counter()
    with tqdm(total=len(paths), desc=PROG, unit='image', file=sys.stderr, disable=True if args.quiet else None) as bar:
        samples = collect_samples(stages, paths, args.route_tile, lambda: bar.update(1))
    record = calibrate(samples, args.bins, args.hidden, args.steps, stages)
    record.update(depths=stages.depths, scale=stages.scale, tile=args.route_tile, images=len(paths),
                  param_key=info['param_key'], data=[str(d) for d in args.data])
    save_calibration(args.ckpt, record)
    print(f'wrote {out}: {record["tiles"]} tiles; held-out R2 of the predicted gain: edge '
          f'{record.get("edge_r2", float("nan")):.3f}, learned {record.get("learned_r2", float("nan")):.3f} '
          f'({record["learned"]["params"]} params); of the cheapest exit over bicubic (edge table, --bicubic) '
          f'{record.get("bicubic_r2", float("nan")):.3f}; the margin\'s error (held-out mixes): edge '
          f'{record.get("edge_mix_residual", float("nan")):.1f} ({record.get("edge_mix_count", 0)}), learned '
          f'{record.get("learned_mix_residual", float("nan")):.1f} ({record.get("learned_mix_count", 0)}); '
          f'{time.perf_counter() - start:.0f} s')


if __name__ == '__main__':
    main()
