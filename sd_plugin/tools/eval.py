"""sd-eval: PSNR/SSIM of every exit, the teacher, any other SRResNet checkpoint and bicubic on benchmark sets, with
parameters, MACs and (``--complexity``) CPU latency.

Example::

    sd-prepare benchmark --hr ../shared/data/Set5/HR --name Set5 --out datasets/Set5 --scale 4
    sd-prepare benchmark --hr ../shared/data/Set14/HR --name Set14 --out datasets/Set14 --scale 4
    sd-eval experiments/my_sd/models/net_g_latest.pth baseline_srresnet8.pth --data datasets --sets Set5 Set14 \\
        --scale 4 --json results.json --plot psnr_vs_macs.png --complexity

Checkpoints: a ``SRResNetMultiExit`` one (keys ``exit_heads.*``) gives one row per exit plus the teacher; a stock
BasicSR ``MSRResNet`` one or an ``sd-export``-ed student gives one row. The architecture is read off the state dict;
the weights are ``params_ema`` when the file has them, else ``params`` (``--param-key`` forces one). A bicubic row is
always added. Benchmark sets are read in the layout ``sd-prepare benchmark`` writes: ``DATA/<set>/GTmod<s>/<name>.png``
(HR cropped to a multiple of s) and ``DATA/<set>/LRbicx<s>/<name>.png`` (same names).

Measurement protocol (default), the one behind the published SR tables (e.g. bicubic x4: Set5 28.42 dB / 0.8104,
Set14 26.00 dB / 0.7027, which this reproduces):

* every SR image is uint8: bicubic SR is MATLAB-style bicubic (``sd_plugin.data.bicubic.imresize``) of the LR file
  by s, rounded to uint8; a model's output is rounded to uint8 by BasicSR's ``tensor2img``;
* PSNR and SSIM are measured on the Y channel of BT.601 YCbCr as MATLAB's ``rgb2ycbcr`` computes it on uint8
  images: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (R, G, B in [0, 1]), ROUNDED to uint8;
* a single-channel (grey) image, such as Set14's ``bridge``, is measured on its grey values, not converted to Y
  (the MATLAB scripts only convert 3-channel images). Bicubic resizes the grey image itself. A model gets the grey
  LR replicated to 3 channels, and its RGB output is brought back to grey with the same BT.601 luma weights on the
  full 0-255 range, ``grey = 0.299 R + 0.587 G + 0.114 B`` (= (Y - 16) * 255 / 219), rounded to uint8. That is the
  exact inverse of the replication (an output with R = G = B = v gives v back), so a model is measured on the same
  grey scale as its ground truth and as the bicubic row; Y itself (16-235) would not be comparable with the 0-255
  grey ground truth;
* a border of ``scale`` pixels is cropped on every side; SSIM is the MATLAB one (11x11 Gaussian, sigma 1.5, valid
  mode: BasicSR's ``_ssim``) on the float64 of those uint8 values; both are averaged over the images of a set.
  The same protocol is applied to every row, bicubic or model.

``--rgb`` measures PSNR/SSIM on the three RGB channels (border ``scale``), as BasicSR's model zoo reports them;
grey images are expanded to 3 channels, as BasicSR reads them.

Note on BasicSR's numbers: BasicSR's validation (``calculate_psnr`` / ``calculate_ssim`` with
``test_y_channel: true``, during training and in ``basicsr/test.py``) uses the UNROUNDED Y and reads grey images as
3 equal channels, so its values differ from this protocol's: by about 0.01 dB on RGB images (bicubic x4 Set5: 28.430
vs 28.418 dB) and more on sets with grey images (bicubic x4 Set14: 26.09 vs 25.99 dB, because of ``bridge``).
``--basicsr-y`` measures exactly as BasicSR does, to compare with its logs.

Complexity: ``params`` counts the parameters that run for that output (exit k: the first conv, k blocks and exit
head k, i.e. an ``MSRResNet(num_block=k)``; the teacher: without the exit heads). ``macs`` are counted by
``torch.utils.flop_counter.FlopCounterMode`` (convolutions: MACs = FLOPs / 2) on a ``--lr-size`` input (default
320x180, a 1280x720 output at x4), running only the first k blocks for exit k. The counter counts convolutions only:
the bilinear global skip, pixel shuffle, activations, biases and additions are not counted (a few MACs per output
pixel, against ~1.4 M per LR pixel in the convolutions). ``--complexity`` adds CPU latency: the median over
``--repeats`` runs after ``--warmup`` runs, at ``--lr-size``, with ``--threads`` (reported) torch threads.

Output: ``--json PATH`` writes the results as a list of records ``{"model", "exit", "dataset", "scale", "psnr",
"ssim", "params", "macs", "threads", "precision", ...}`` (PSNR / SSIM unrounded; ``threads`` and ``precision``: what
the networks ran with; ``exit``: the depth for a multi-exit checkpoint, the teacher included, null for a
single-exit model; ``model`` is ``"bicubic"`` for the bicubic rows); the markdown table printed and the ``--plot``
PNG (PSNR against MACs) are drawn from those records.

Routing (issue 17): ``sd-eval CKPT --budget 0.6 0.7 0.85 1 --router edge learned random oracle`` evaluates routed
mixes of one multi-exit checkpoint's outputs instead (``sd_plugin.evaluation.budget``): per set, router and budget,
the share of the teacher's MACs spent, PSNR / SSIM (this protocol), the fixed exits' PSNR at the MACs actually run
(linearly interpolated) and the difference, with the images ahead / tied / behind, and CPU ms per image next to the
teacher's; ``--json`` / ``--markdown`` / ``--plot`` (PSNR against the MAC share: fixed exits as points, routers as
curves) / ``--vs-fixed`` (the comparison with the fixed exits alone).
"""
import argparse
import json
from os import path as osp

from sd_plugin.cli import one_line_errors
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.budget import EVAL_ROUTERS, evaluate_budget
from sd_plugin.evaluation.budget_report import write_budget
from sd_plugin.evaluation.protocol import evaluate
from sd_plugin.evaluation.report import markdown_table, plot
from sd_plugin.files import atomic_write, plan_outputs
from sd_plugin.imports import parse_with_imports
from sd_plugin.routing.plan import DEFAULT_MARGIN, DEFAULT_ROUTE_TILE
from sd_plugin.routing.routers import ROUTERS
from sd_plugin.threads import apply_threads, parse_threads  # noqa: F401  (parse_threads: imported from here)


def parse_size(text):
    try:
        w, h = (int(v) for v in text.lower().split('x'))
        if w < 1 or h < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f'--lr-size {text!r}: must be WIDTHxHEIGHT, e.g. 320x180') from None
    return w, h


def build_parser():
    parser = argparse.ArgumentParser(prog='sd-eval', description=__doc__.split('\n\n')[0],
                                     epilog='example: sd-eval net_g_latest.pth --data datasets --sets Set5 Set14 '
                                     '--scale 4 --json results.json --plot psnr_vs_macs.png --complexity')
    parser.add_argument('ckpts', nargs='*', metavar='CKPT', help='checkpoints (multi-exit, MSRResNet or exported)')
    parser.add_argument('--data', default='datasets', help='folder of <set>/GTmod<s> and <set>/LRbicx<s> '
                        '(sd-prepare benchmark; default: datasets)')
    parser.add_argument('--sets', nargs='*', default=['Set5', 'Set14'],
                        help='benchmark sets (default: Set5 Set14; none: complexity only)')
    parser.add_argument('--scale', type=int, default=None, help="scale (default: the checkpoints')")
    metric = parser.add_mutually_exclusive_group()
    metric.add_argument('--rgb', action='store_const', const='rgb', dest='mode', default='y',
                        help='RGB PSNR/SSIM (BasicSR model zoo) instead of the rounded Y channel')
    metric.add_argument('--basicsr-y', action='store_const', const='basicsr-y', dest='mode',
                        help="BasicSR validation's Y (unrounded, grey images as 3 channels), to compare with its logs")
    parser.add_argument('--names', nargs='+', default=None, help='model names (default: checkpoint file stems)')
    parser.add_argument('--param-key', default=None, help='weights to use (default: params_ema if present, else '
                        'params)')
    parser.add_argument('--json', default=None, metavar='PATH', help='write the records here')
    parser.add_argument('--plot', default=None, metavar='PATH', help='write a PSNR-vs-MACs PNG here')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --json / --plot / '
                        '--markdown file that sd-eval wrote (listed in .sd-eval.written beside it)')
    parser.add_argument('--complexity', action='store_true', help='also measure CPU latency')
    parser.add_argument('--lr-size', default='320x180', help='LR WIDTHxHEIGHT for MACs and latency '
                        '(default: 320x180, 1280x720 output at x4)')
    parser.add_argument('--threads', default='auto', help='torch CPU threads for the networks and the latency, or '
                        'auto (default): OMP_NUM_THREADS if set, else the cores idle at the start, at least 1 (on '
                        'cores busy with other work, one thread per core is several times slower)')
    parser.add_argument('--precision', default='fp32', choices=['fp32', 'bf16'],
                        help='fp32 (default: the protocol), or bf16 autocast: ~2x faster forward on CPUs with bf16 '
                        'instructions, PSNR off by a few thousandths of a dB')
    parser.add_argument('--warmup', type=int, default=1, help='latency warm-up runs (default: 1)')
    parser.add_argument('--repeats', type=int, default=5, help='latency runs, median reported (default: 5)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    routing = parser.add_argument_group('routing under a MAC budget (sd_plugin.evaluation.budget; one multi-exit CKPT)')
    routing.add_argument('--budget', type=float, nargs='+', default=None, metavar='F',
                         help="shares of the teacher's MACs, e.g. 0.6 0.7 0.85 1: evaluate routed mixes instead")
    routing.add_argument('--router', nargs='+', default=list(ROUTERS), choices=EVAL_ROUTERS, metavar='ROUTER',
                         help=f'routers to compare, of {", ".join(EVAL_ROUTERS)} (default: edge learned random '
                         'oracle; edge and learned need sd-calibrate CKPT; ROUTER+bicubic: with bicubic as one more '
                         'choice)')
    routing.add_argument('--route-tile', type=int, default=DEFAULT_ROUTE_TILE,
                         help=f'routing tile in LR pixels (default: {DEFAULT_ROUTE_TILE})')
    routing.add_argument('--markdown', default=None, metavar='PATH', help='also write the markdown table here')
    routing.add_argument('--vs-fixed', default=None, metavar='PATH', help='also write every router and budget '
                         'against the fixed exits at equal MACs here (JSON; docs/routing/vs_fixed.json)')
    routing.add_argument('--margin', type=float, default=DEFAULT_MARGIN, metavar='Z',
                         help='a mix runs instead of the best fixed output that fits only when its predicted gain is '
                         f'ahead by Z standard errors of the calibration (default: {DEFAULT_MARGIN:g}; 0: none)')
    routing.add_argument('--seed', type=int, default=0, help='seed of the random router (default: 0)')
    return parser


@one_line_errors('sd-eval')
def main(argv=None):
    args = parse_with_imports(build_parser(), argv)
    lr_size = parse_size(args.lr_size)
    if args.repeats < 1 or args.warmup < 0:
        raise ConfigError('--repeats must be >= 1 and --warmup >= 0')
    if args.vs_fixed and not args.budget:
        raise ConfigError(f'--vs-fixed {args.vs_fixed}: compares routed mixes with the fixed exits; it needs --budget')
    plan_outputs({'--json': args.json, '--plot': args.plot, '--markdown': args.markdown, '--vs-fixed': args.vs_fixed},
                 {'CKPT': args.ckpts, '--data': args.data},
                 args.overwrite, read_folders={'--sets': [osp.join(args.data, name) for name in args.sets or []]},
                 tool='sd-eval')
    apply_threads(args.threads, prog='sd-eval')  # --threads N, else OMP_NUM_THREADS, else the idle cores
    if args.budget:  # routed mixes of one multi-exit checkpoint's outputs
        if len(args.ckpts) != 1:
            raise ConfigError(f'--budget: give one multi-exit CKPT ({len(args.ckpts)} given)')
        records = evaluate_budget(args.ckpts[0], args.data, args.sets, args.budget, args.router, args.route_tile,
                                  args.mode, args.param_key, args.seed, progress=not args.quiet, margin=args.margin)
        write_budget(records, args.json, args.markdown, args.plot, args.vs_fixed)
        return
    records = evaluate(args.ckpts, args.data, args.sets, args.scale, args.mode, args.names, args.param_key, lr_size,
                       args.complexity, args.warmup, args.repeats, progress=not args.quiet, precision=args.precision)
    if args.json:
        atomic_write(args.json, lambda f: json.dump(records, f, indent=1), mode='w')
        print(f'wrote {args.json}')
    if args.plot:
        plot(records, args.plot)
        print(f'wrote {args.plot}')
    protocol = {'y': 'Y (BT.601, rounded; grey images on grey values)', 'rgb': 'RGB',
                'basicsr-y': "Y as BasicSR's validation (unrounded)"}[args.mode]
    if args.sets:
        print(f'\nPSNR / SSIM: {protocol}, border {records[0]["scale"]} px cropped')
    print(markdown_table(records))


if __name__ == '__main__':
    main()
