"""sd-upscale: upscale your own images with a trained student, or any SRResNet checkpoint.

Example::

    sd-upscale photos/ extra/*.jpg --model student_x4.pth --out upscaled
    sd-upscale big.png --model experiments/sd/models/net_g_latest.pth --exit 8 --out up --tile 256

--model: an ``sd-export``-ed student or any stock BasicSR ``MSRResNet`` checkpoint (``params`` / ``params_ema``,
fp16 parameters too), or a multi-exit ``SRResNetMultiExit`` checkpoint with ``--exit k`` (default: the teacher), of
which only the first k blocks run; with ``--backend onnxruntime``, an ``sd-export --onnx`` file.

Inputs: files, folders (their images, not sub-folders) and glob patterns; PNG, JPEG, BMP, TIFF, WebP. Each output
is ``--out/<name><suffix>.<ext>``, of the same kind as its input: grey stays grey (run as R = G = B, written back as
the BT.601 luma 0.299 R + 0.587 G + 0.114 B of the output, which sd-eval uses too), RGBA stays RGBA (colour
through the network, alpha upscaled bicubically, or with ``--alpha network`` through the network as grey), 16-bit
stays 16-bit. Outputs are written atomically; an input is never overwritten, and an existing output only with
``--overwrite`` and only when sd-upscale wrote it (it lists what it wrote in ``--out/.sd-upscale.written``); images
that it wrote are left out when a folder or a pattern names them as inputs.

Tiling (``--tile``, in LR pixels) bounds memory: each tile runs with ``--tile-pad`` real neighbouring pixels on every
side (default: the network's receptive field, 2 x blocks + 3), so the result equals the untiled one.

Exit status: 0; 1 when some inputs failed, to read or to write (each named on one line, the others are still
written); 2 for bad arguments; 130 when interrupted (one line says what was written).
"""
import argparse
import glob
import os
import re
import sys
import time
from os import path as osp

import numpy as np
import torch
from tqdm import tqdm

from sd_plugin.cli import one_line_errors
from sd_plugin.errors import ConfigError, WriteError
from sd_plugin.files import plan_outputs, record_written, writable_folder, written_by
from sd_plugin.imageio import IMAGE_EXTENSIONS, check_writable, is_image_file, read_image, write_image
from sd_plugin.imports import parse_with_imports
from sd_plugin.inference import (
    ALPHA_MODES,
    GREY_WEIGHTS,
    PRECISIONS,
    OnnxNetwork,
    autocast,
    count_tiles,
    load_sr_network,
    output_too_large,
    receptive_field,
    upscale_array,
)
from sd_plugin.routing.plan import DEFAULT_MARGIN, DEFAULT_ROUTE_TILE
from sd_plugin.routing.routers import DEFAULT_ROUTER
from sd_plugin.threads import apply_threads
from sd_plugin.upscaler import report_route, routed_network

PROG = 'sd-upscale'
DEFAULT_TILE = 512
EXTENSIONS = sorted({e[1:] for e in IMAGE_EXTENSIONS})


def expand_inputs(args):
    """(paths, errors, own): the image files that the INPUT arguments name, in order and without repeats (one file
    named twice runs once); a one-line error for each argument that names nothing readable; and the files a folder
    or a pattern matched that an earlier sd-upscale wrote there (``files.written_by``): its own outputs, left out."""
    paths, errors, own, seen = [], [], [], set()
    for arg in args:
        if osp.isdir(arg):
            found = sorted(osp.join(arg, f) for f in os.listdir(arg)  # hidden files (e.g. a stale temporary) left out
                           if is_image_file(f) and not f.startswith('.') and osp.isfile(osp.join(arg, f)))
            if not found:
                errors.append(f'{arg}: no images ({"/".join(EXTENSIONS)}) in this folder')
        elif osp.isfile(arg):
            found = [arg]
        elif glob.has_magic(arg):
            found = sorted(p for p in glob.glob(arg) if osp.isfile(p) and is_image_file(p))
            if not found:
                errors.append(f'{arg}: matches no image files')
        else:
            errors.append(f'{arg}: no such file or folder')
            found = []
        if not osp.isfile(arg):
            written = [p for p in found if osp.basename(p) in written_by(osp.dirname(p) or '.', PROG)]
            own += written
            found = [p for p in found if p not in written]
        for p in found:
            key = osp.realpath(p)
            if key not in seen:
                seen.add(key)
                paths.append(p)
    return paths, errors, own


def output_path(path, out_dir, suffix, ext):
    """``out_dir/<stem of path><suffix>.<ext>``; ``ext`` 'auto' keeps the input's extension."""
    stem, own_ext = osp.splitext(osp.basename(path))
    return osp.join(out_dir, stem + suffix + (own_ext if ext == 'auto' else '.' + ext))


def file_id(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def allocation(message):
    """'could not allocate 7.63 GiB' from a torch allocator's error message (CPU: '... allocate 8192000000 bytes',
    CUDA: '... allocate 2.00 GiB'), else its first line."""
    found = re.search(r'allocate (\d+) bytes', message)
    if found:
        return f'could not allocate {int(found.group(1)) / 2**30:.2f} GiB'
    found = re.search(r'allocate ([\d.]+ [KMGT]i?B)', message)
    return f'could not allocate {found.group(1)}' if found else message.strip().splitlines()[0][:200]


def pick_device(name):
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('--device cuda: CUDA is not available here (use --device cpu)')
    return torch.device(name)


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0],
                                     epilog='example: sd-upscale photos/ --model student_x4.pth --out upscaled')
    parser.add_argument('inputs', nargs='+', metavar='INPUT', help='image files, folders (not recursive) or glob '
                        f'patterns ({"/".join(EXTENSIONS)})')
    parser.add_argument('--model', required=True, metavar='CKPT', help='exported student, MSRResNet checkpoint, '
                        'multi-exit checkpoint (with --exit) or, with --backend onnxruntime, an .onnx file')
    parser.add_argument('--out', required=True, metavar='DIR', help='output folder (created if needed)')
    parser.add_argument('--exit', type=int, default=None, dest='depth',
                        help='output of a multi-exit checkpoint: an exit depth (default: the teacher)')
    parser.add_argument('--param-key', default=None, help='weights to use (default: params_ema if present, else '
                        'params)')
    parser.add_argument('--suffix', default='_x{scale}', help='added to each output name; {scale} becomes the scale '
                        '(default: _x{scale}, e.g. photo_x4.png)')
    parser.add_argument('--ext', default='auto', choices=['auto', *EXTENSIONS],
                        help="output format (default: auto, the input's)")
    parser.add_argument('--overwrite', action='store_true', help='replace existing outputs that sd-upscale wrote '
                        '(default: skip them); an input, or a file sd-upscale did not write, is never replaced')
    parser.add_argument('--tile', type=int, default=DEFAULT_TILE, help='tile size in LR pixels, bounds memory; 0: '
                        f'the whole image in one pass (default: {DEFAULT_TILE})')
    parser.add_argument('--tile-pad', type=int, default=None, help='LR pixels of overlap on every side of a tile '
                        '(default: the receptive field, 2 x blocks + 3, which makes tiling exact)')
    parser.add_argument('--alpha', default='bicubic', choices=ALPHA_MODES,
                        help='alpha channel of RGBA images: bicubic upscaling (default) or the network, as grey')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help='default: cuda if available')
    parser.add_argument('--precision', default='fp32', choices=list(PRECISIONS),
                        help='fp32 (default), bf16 (autocast) or fp16 (autocast, CUDA only)')
    parser.add_argument('--backend', default='torch', choices=['torch', 'onnxruntime'],
                        help='torch (default), or onnxruntime for an .onnx --model (fp32)')
    parser.add_argument('--threads', default='auto', help='torch CPU threads, or auto (default): OMP_NUM_THREADS if '
                        'set, else the cores idle at the start, at least 1')
    parser.add_argument('--quiet', action='store_true', help='no progress bars (shown on a terminal only) and no line '
                        'per written image')
    routing = parser.add_argument_group('routing (a multi-exit CKPT): each LR tile gets the output a router chose')
    routing.add_argument('--budget', type=float, default=None, metavar='F',
                         help="share of the teacher's MACs to spend, in (0, 1]; replaces --exit and --tile")
    routing.add_argument('--router', default=DEFAULT_ROUTER, choices=['edge', 'learned', 'random'],
                         help='edge (default) or learned: calibrated by sd-calibrate CKPT; random: for comparison')
    routing.add_argument('--route-tile', type=int, default=DEFAULT_ROUTE_TILE,
                         help=f'routing tile in LR pixels (default: {DEFAULT_ROUTE_TILE})')
    routing.add_argument('--route-map', default=None, metavar='PNG',
                         help='save which output each tile got (one input image)')
    routing.add_argument('--bicubic', action='store_true',
                         help='bicubic upsampling is one more choice, below the cheapest exit (for flat tiles)')
    routing.add_argument('--margin', type=float, default=DEFAULT_MARGIN, metavar='Z',
                         help='a mix runs instead of the best fixed output that fits only when its predicted gain is '
                         f'ahead by Z standard errors of the calibration (default: {DEFAULT_MARGIN:g}; 0: none)')
    return parser


def load_network(args, device):
    """(net, info, description) for the arguments."""
    if args.backend == 'onnxruntime':
        if args.depth is not None or args.param_key is not None:
            raise ConfigError('--exit and --param-key apply to .pth checkpoints, not to --backend onnxruntime')
        if args.precision != 'fp32':
            raise ConfigError(f'--precision {args.precision}: --backend onnxruntime runs fp32')
        if not osp.isfile(args.model):
            raise ConfigError(f'{args.model}: no such ONNX file')
        net = OnnxNetwork(args.model, device, torch.get_num_threads())
        depth = net.deploy_exit
        info = {'scale': net.upscale, 'depth': depth,
                'receptive_field': None if depth is None else receptive_field(depth)}
        blocks = 'unknown blocks' if depth is None else f'{depth} blocks'
        return net, info, f'{args.model} [onnxruntime] x{net.upscale}, {blocks}'
    net, info = load_sr_network(args.model, args.depth, args.param_key)
    arch = info['arch']
    if info['kind'] != 'multi-exit':
        which = info['kind']  # 'MSRResNet', or a wrapped arch's student: 'EDSR', 'SwinIR', ...
    elif info['depth'] == arch['num_block']:
        which = f'the teacher of a multi-exit checkpoint (exits {arch["exits"]})'
    else:
        which = f'exit {info["depth"]} of a multi-exit checkpoint (teacher depth {arch["num_block"]})'
    return net.to(device), info, (f'{args.model} [{info["param_key"] or "state dict"}, {info["stored_dtype"]}] {which}'
                                  f': num_feat={arch["num_feat"]}, {info["depth"]} {info["unit"]}s, x{info["scale"]}, '
                                  f'{info["params"] / 1e6:.3f} M params')


@one_line_errors(PROG)
def main(argv=None):
    args = parse_with_imports(build_parser(), argv)
    if args.tile < 0:
        raise ConfigError(f'--tile {args.tile}: must be >= 0 (0: no tiling)')
    if args.tile_pad is not None and args.tile_pad < 0:
        raise ConfigError(f'--tile-pad {args.tile_pad}: must be >= 0')
    if args.bicubic and args.budget is None:
        raise ConfigError('--bicubic is a routing choice: it needs --budget')
    threads = apply_threads(args.threads, log=None)  # --threads N, else OMP_NUM_THREADS, else the idle cores
    if args.depth is not None and args.depth < 1:
        raise ConfigError(f'--exit {args.depth}: must be a positive block depth')
    if os.sep in args.suffix or (os.altsep and os.altsep in args.suffix):
        raise ConfigError(f'--suffix {args.suffix!r}: must not contain a path separator')
    if osp.exists(args.out) and not osp.isdir(args.out):
        raise ConfigError(f'--out {args.out}: exists and is not a folder')
    device = pick_device(args.device)
    autocast(device, args.precision)  # fp16 off CUDA: one line, before loading anything
    net, info, description = load_network(args, device)
    if args.budget is not None:  # routed (sd_plugin.routing): exact tiles by --route-tile, not --tile
        if args.backend != 'torch':
            raise ConfigError('--budget runs a multi-exit .pth checkpoint (--backend torch)')
        net, args.tile = routed_network(args.model, (net, info), args.budget, args.router, args.route_tile,
                                        args.bicubic, args.margin), 0
        description += (f'; --budget {args.budget:g}, router {args.router}{" with bicubic" if args.bicubic else ""}, '
                        f'route tile {args.route_tile} LR px')
        if net.stages.note:
            print(f'{PROG}: {net.stages.note}', flush=True)
    if args.tile > 0 and args.tile_pad is None and info['receptive_field'] is None:
        raise ConfigError(f'{args.model}: its receptive field is unknown (no residual blocks found): give '
                          '--tile-pad, or --tile 0')
    suffix = args.suffix.replace('{scale}', str(info['scale']))

    inputs, failures, own = expand_inputs(args.inputs)
    outputs = [output_path(p, args.out, suffix, args.ext) for p in inputs]
    if args.route_map:
        if args.budget is None or len(inputs) != 1:
            raise ConfigError(f'--route-map {args.route_map}: needs --budget and one input image ({len(inputs)} given)')
        plan_outputs({'--route-map': args.route_map}, {'INPUT': inputs, '--model': args.model}, args.overwrite,
                     tool=PROG, others={'the upscaled image': outputs})
    if suffix == '' and osp.isdir(args.out):
        for path, out in zip(inputs, outputs):
            if osp.exists(out) and file_id(out) == file_id(path):
                raise ConfigError(f'--out {args.out} is the folder of {path}, and with --suffix \'\' and the same '
                                  f'extension its output would overwrite it: give a --suffix or another --out')

    pad = args.tile_pad if args.tile_pad is not None else info['receptive_field']
    tiling = f'tile {args.tile} px, pad {pad} px' if args.tile else 'no tiling'
    rf = '' if info['receptive_field'] is None else f'receptive field {info["receptive_field"]} px, '
    if info.get('exact_tiles') is False:  # RCAN, SwinIR: the padding is not a receptive field
        rf = f'no finite receptive field (default tile padding {info["receptive_field"]} px: tiles approximate), '
    print(f'{PROG}: {description}; {rf}{tiling}; {device.type} {args.precision}; {threads["line"]}', flush=True)
    if own:
        print(f'{PROG}: left out {len(own)} image(s) that sd-upscale wrote itself (e.g. {own[0]})', file=sys.stderr)
    for message in failures:
        print(f'{PROG}: error: {message}', file=sys.stderr)
    batch = Batch(failures)
    plan = plan_batch(inputs, outputs, args, batch)
    start, mapped = time.perf_counter(), False
    bar = tqdm(plan, desc=PROG, unit='image', file=sys.stderr, disable=True if args.quiet or len(plan) < 2 else None)
    try:
        for path, out in bar:
            routed_before = len(net.plans) if args.budget is not None else 0
            upscale_one(path, out, net, info, device, args, batch)
            if args.budget is not None:
                mapped |= report_route(net.plans[routed_before:], path, args.route_map, log=tqdm.write)
            batch.done += 1
    except KeyboardInterrupt:
        bar.close()
        print(f'\n{PROG}: interrupted: {batch.written} written{batch.last_written()}, '
              f'{len(plan) - batch.done} not done', file=sys.stderr)
        sys.exit(130)
    bar.close()
    if args.route_map and not mapped:  # its image was skipped or failed: said, not silently left out
        batch.fail(f'--route-map {args.route_map}: not written, as its image was not upscaled')
    summary = (f'{PROG}: {batch.written} written, {batch.skipped} skipped (existing), {len(failures)} failed, in '
               f'{time.perf_counter() - start:.1f} s')
    if failures:
        print(summary, file=sys.stderr)
        sys.exit(1)
    print(summary)


class Batch:
    """What a run has done so far: ``written`` and ``skipped`` counts, ``done`` (images handled, written or not),
    the written paths, and ``failures`` (one line each, printed as they happen; the run goes on)."""

    def __init__(self, failures):
        self.failures, self.paths = failures, []
        self.written = self.skipped = self.done = 0

    def fail(self, message):
        self.failures.append(message)
        tqdm.write(f'{PROG}: error: {message}', file=sys.stderr)

    def last_written(self):
        return f' (the last: {self.paths[-1]})' if self.paths else ''


def plan_batch(inputs, outputs, args, batch):
    """[(input, output)] to upscale. Checked before any work, each failure one line (``batch.fail``) and the others
    kept: two inputs with one output; an output that is an input or the model, or a folder; an existing output,
    skipped without --overwrite and, with it, replaced only when sd-upscale wrote it (``files.written_by``)."""
    writable_folder(osp.join(args.out, 'x'), '--out')
    own = written_by(args.out, PROG)
    input_ids = {file_id(p) for p in inputs} | ({file_id(args.model)} if osp.isfile(args.model) else set())
    plan, claimed = [], {}
    for path, out in zip(inputs, outputs):
        key = osp.normcase(osp.abspath(out))
        if key in claimed:
            batch.fail(f'{path}: its output {out} is also the output of {claimed[key]} (rename one, or use --ext)')
            continue
        claimed[key] = path
        if osp.lexists(out):
            if osp.isdir(out):
                batch.fail(f'{path}: its output {out} is a folder (use another --out or --suffix)')
            elif file_id(out) in input_ids:
                batch.fail(f'{path}: its output {out} is an input file, never overwritten (use another --out or '
                           '--suffix)')
            elif not args.overwrite:
                batch.skipped += 1
                tqdm.write(f'{PROG}: skip {path}: {out} exists (--overwrite replaces it)', file=sys.stderr)
            elif osp.basename(out) not in own:
                batch.fail(f'{path}: its output {out} exists and sd-upscale did not write it: never replaced (move '
                           'it, or use another --out or --suffix)')
            else:
                plan.append((path, out))
            continue
        plan.append((path, out))
    return plan


def upscale_one(path, out, net, info, device, args, batch):
    """Read, upscale and write one image; a failure is one line (``batch.fail``) and the batch goes on."""
    try:
        img = read_image(path)
    except ConfigError as err:
        batch.fail(str(err))
        return
    grey_alpha = img.ndim == 3 and img.shape[2] == 2
    height, width = img.shape[:2]
    try:
        check_writable(img, osp.splitext(out)[1])
        too_large = output_too_large(img, info['scale'])
        if too_large:
            raise ConfigError(too_large)
        tiles = count_tiles(height, width, args.tile) * (2 if img.ndim == 3 and img.shape[2] in (2, 4)
                                                         and args.alpha == 'network' else 1)
        with tqdm(total=tiles, desc=osp.basename(path), unit='tile', leave=False, file=sys.stderr,
                  disable=True if args.quiet or tiles < 2 else None) as tile_bar:
            sr = upscale_array(net, img[..., [0, 0, 0, 1]] if grey_alpha else img, args.tile, args.tile_pad, device,
                               args.precision, args.alpha, progress=lambda: tile_bar.update(1))
        if grey_alpha:
            sr = np.stack([luma(sr[..., :3]), sr[..., 3]], axis=-1)
    except ConfigError as err:
        batch.fail(f'{path}: {err}')
        return
    except (MemoryError, torch.OutOfMemoryError) as err:
        batch.fail(f'{path}: out of memory ({type(err).__name__}); try a smaller --tile')
        return
    except (RuntimeError, ValueError, IndexError, AssertionError, ZeroDivisionError) as err:
        # out of memory, or a network that cannot take this image: one line, and the batch goes on
        if 'memory' not in str(err) or not isinstance(err, RuntimeError):
            batch.fail(f'{path}: the network cannot upscale this {width}x{height} image ({type(err).__name__}: '
                       f'{str(err).strip().splitlines()[0][:200] if str(err).strip() else "no message"})')
            return
        batch.fail(f'{path}: out of memory ({allocation(str(err))}); try a smaller --tile')
        return
    try:
        write_image(out, sr)
        record_written(args.out, PROG, [osp.basename(out)])
    except (ConfigError, WriteError) as err:
        batch.fail(f'{path}: {err}')
        return
    del sr
    batch.written += 1
    batch.paths.append(out)
    if not args.quiet:
        kind = 'grey' if img.ndim == 2 else {2: 'grey+alpha', 3: 'RGB', 4: 'RGBA'}[img.shape[2]]
        tqdm.write(f'wrote {out} ({width}x{height} -> {width * info["scale"]}x{height * info["scale"]}, {kind}, '
                   f'{img.dtype.itemsize * 8}-bit)')


def luma(bgr):
    """(H, W) BT.601 luma 0.299 R + 0.587 G + 0.114 B of an (H, W, 3) BGR integer image, rounded, same dtype."""
    weights = np.array(GREY_WEIGHTS[::-1])
    top = np.iinfo(bgr.dtype).max
    return np.clip(np.rint(bgr @ weights), 0, top).astype(bgr.dtype)


if __name__ == '__main__':
    main()
