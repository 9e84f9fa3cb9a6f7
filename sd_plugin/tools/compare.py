"""sd-compare: one PNG that shows the same regions of HR, bicubic and model outputs side by side, each labelled with
its name and its PSNR on the whole image (Y channel, border = scale: sd-eval's number for that image).

Example::

    sd-compare --hr datasets/Set5/GTmod4/butterfly.png --model alone=srresnet8.pth --model sd=sd.pth:8 \\
        --model teacher=sd.pth --crop 100,60,64,64 --crop 20,150,48,48 --out butterfly_grid.png

--model NAME=CKPT[:EXIT]: any checkpoint ``sd-upscale`` and ``sd-eval`` read (an ``sd-export``-ed student, a stock
BasicSR ``MSRResNet``, a multi-exit ``SRResNetMultiExit`` checkpoint, whose output EXIT is shown; default its
teacher); repeat it for each model. The LR image is ``--lr``, or the MATLAB bicubic down-scaling of the HR (cropped
to a multiple of the scale), as ``sd-prepare`` makes it. Bicubic is MATLAB bicubic up-scaling of the LR, as in
sd-eval. ``--crop X,Y,W,H`` (HR pixels, repeatable) picks the regions, one row each; default one centred 64 x 64 crop.
Crops are enlarged with nearest-neighbour (``--zoom``, default about 256 screen pixels per crop side).
"""
import argparse
from os import path as osp

import numpy as np

from sd_plugin.cli import one_line_errors
from sd_plugin.compare import (
    check_crop,
    check_names,
    comparison_grid,
    derive_lr,
    match_hr,
    parse_crop,
    parse_model,
)
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.protocol import read_image
from sd_plugin.files import plan_outputs
from sd_plugin.imageio import check_writable, write_image
from sd_plugin.imports import parse_with_imports
from sd_plugin.threads import apply_threads
from sd_plugin.upscaler import Upscaler

PROG = 'sd-compare'


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0],
                                     epilog='example: sd-compare --hr butterfly.png --model sd=sd.pth:8 '
                                     '--model teacher=sd.pth --crop 100,60,64,64 --out grid.png')
    parser.add_argument('--hr', required=True, help='ground-truth HR image')
    parser.add_argument('--lr', default=None, help='its LR image (default: MATLAB bicubic down-scaling of --hr)')
    parser.add_argument('--model', action='append', default=[], metavar='NAME=CKPT[:EXIT]',
                        help='a panel: a checkpoint and, for a multi-exit one, the exit (default: its teacher); '
                        'repeatable')
    parser.add_argument('--crop', action='append', default=[], metavar='X,Y,W,H',
                        help='a region in HR pixels, one row each; repeatable (default: one centred 64x64 crop)')
    parser.add_argument('--scale', type=int, default=None, help='scale (default: the models\', or HR / --lr; 4 '
                        'without either)')
    parser.add_argument('--zoom', type=int, default=0, help='nearest-neighbour enlargement of the crops (default: '
                        'about 256 screen pixels per crop side)')
    parser.add_argument('--out', required=True, help='the PNG (or other image file) to write')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file that '
                        'sd-compare wrote (listed in .sd-compare.written beside it)')
    parser.add_argument('--threads', default='auto', help='torch CPU threads, or auto (default): OMP_NUM_THREADS if '
                        'set, else the cores idle at the start, at least 1')
    return parser


@one_line_errors(PROG)
def main(argv=None):
    args = parse_with_imports(build_parser(), argv)
    if args.zoom < 0:
        raise ConfigError(f'--zoom {args.zoom}: must be >= 0 (0: automatic)')
    if args.scale is not None and args.scale < 2:
        raise ConfigError(f'--scale {args.scale}: must be >= 2')
    crops = [parse_crop(c) for c in args.crop]
    models = [parse_model(m) for m in args.model]
    check_names([name for name, _, _ in models])
    plan_outputs({'--out': args.out}, {'--hr': args.hr, '--lr': args.lr, '--model': [ckpt for _, ckpt, _ in models]},
                 args.overwrite, tool=PROG)
    try:
        check_writable(np.zeros((1, 1, 3), np.uint8), osp.splitext(args.out)[1] or '(no extension)')
    except ConfigError as err:
        raise ConfigError(f'--out {args.out}: {err}') from None
    apply_threads(args.threads, prog=PROG)  # --threads N, else OMP_NUM_THREADS, else the idle cores
    nets = []
    for spec, (name, ckpt, exit) in zip(args.model, models):
        try:
            upscaler = Upscaler(ckpt, exit)  # the per-image work sd-upscale does
            nets.append((name, upscaler, upscaler.info))
        except ConfigError as err:
            raise ConfigError(f'--model {spec}: {err}') from None
    scales = {info['scale'] for _, _, info in nets}
    if args.scale is not None:
        scales.add(args.scale)
    if len(scales) > 1:
        raise ConfigError(f'scales disagree: {", ".join(f"x{s}" for s in sorted(scales))} (the models and --scale '
                          'must agree)')
    scale = scales.pop() if scales else None
    hr = read_image(args.hr)
    if args.lr is None:
        try:
            hr, lr = derive_lr(hr, scale or 4)
        except ConfigError as err:
            raise ConfigError(f'--hr {args.hr}: {err}') from None
    else:
        lr = read_image(args.lr)
        try:
            hr, scale = match_hr(hr, lr, scale)
        except ConfigError as err:
            raise ConfigError(f'--hr {args.hr}, --lr {args.lr}: {err}') from None
    for crop in crops:
        check_crop(crop, hr)
    outputs = []
    for name, net, info in nets:
        unit = info.get('unit', 'block')  # an ONNX file's info has none
        print(f'{PROG}: {name}: {info["path"]}, {info["depth"]} {unit}s, x{info["scale"]}', flush=True)
        outputs.append((name, net.sr_rgb(lr)))
    grid, labels, _ = comparison_grid(hr, lr, outputs, crops, args.zoom)
    write_image(args.out, np.ascontiguousarray(grid[..., ::-1]))
    print(f'{PROG}: wrote {args.out} ({grid.shape[1]}x{grid.shape[0]}; {" | ".join(labels)})')


if __name__ == '__main__':
    main()
