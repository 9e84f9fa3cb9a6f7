"""Inference of the shipped student against the teacher, timed interleaved in one process (batch 1, no grad):

  student   stock MSRResNet 8 blocks, weights = sd_plugin.export.student_state_dict(multi-exit weights, 8)
  teacher   stock MSRResNet 32 blocks, weights = the multi-exit model's trunk and final head
  multi@8   SRResNetMultiExit 32 blocks, exits [8], deploy_exit=8: plain forward(x) runs 8 blocks and exit head 8

All three share one random initialisation (weights do not change the cost). ``student`` and ``multi@8`` compute the
same function (checked to 1e-5) and must cost the same.

``--eval-path``: the speed options of the path ``sd-eval`` and ``sd-upscale`` run (``sd_plugin.inference``:
uint8 LR image -> tensor -> ``run_network`` -> ``tensor2img``, as ``sd_plugin.evaluation.protocol.model_sr``), on
the CPU, for 32-feature MSRResNet-4 and -16 at 128x128 and 320x180 LR (``--quick``: 128x128 only), each group
timed interleaved:

  fp32           the old default: the input as model_sr builds it (a permuted HWC image, which PyTorch's
                 convolutions run in NCHW), fp32, the process's torch threads (``--threads``)
  channels_last  the input copied to canonical channels_last strides (the new CPU default); same threads
  bf16           torch.autocast bfloat16; channels_last off
  cl+bf16        both
  fp32 N thr     the old default with N torch threads (``--thread-counts``, default 1 and 2)
  default        ``model_sr`` as sd-eval now runs it: channels_last, threads 'auto' (the idle cores, resolved once)
  onnxruntime    the same network exported by ``sd_plugin.export.export_onnx``, run by ``OnnxNetwork`` with the
                 same thread count as fp32 (when onnx and onnxruntime are installed)

Each is reported as a ratio to fp32 (< 1: faster), judged against 0.95 (PASS: at least 5 % faster), UNSTABLE when
its spread is too wide. Also stated: what bf16 and channels_last do to the output and to PSNR on one image
(``--ckpt``: a trained checkpoint, e.g. an sd-train ``net_g_latest.pth``; else random weights).

Examples::

    python benchmarks/bench_infer.py --quick
    python benchmarks/bench_infer.py --device cuda --precision bf16 --compile --json results/infer.json
    python benchmarks/bench_infer.py --eval-path --quick
    python benchmarks/bench_infer.py --eval-path --ckpt experiments/sd/models/net_g_latest.pth --json infer_eval.json
"""
import benchlib  # noqa: I001  (first: imports sd_plugin before basicsr)
import os
import tempfile
from os import path as osp

import numpy as np
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from basicsr.utils import tensor2img

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.data.bicubic import imresize
from sd_plugin.evaluation.protocol import measure, model_sr, read_image
from sd_plugin.export import export_onnx, student_state_dict
from sd_plugin.inference import OnnxNetwork, choose_threads, load_sr_network, run_network, torch_threads


def networks(device, channels_last):
    torch.manual_seed(0)
    source = SRResNetMultiExit(num_block=32, exits=[8])
    state = source.state_dict()
    student = MSRResNet(num_block=8)
    student.load_state_dict(student_state_dict(state, 8), strict=True)
    teacher = MSRResNet(num_block=32)
    teacher.load_state_dict(student_state_dict(state, 32), strict=True)
    multi8 = SRResNetMultiExit(num_block=32, exits=[8], deploy_exit=8)
    multi8.load_state_dict(state, strict=True)
    nets = {'student': student, 'teacher': teacher, 'multi@8': multi8}
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {name: net.eval().to(device, memory_format=fmt) for name, net in nets.items()}


def main(argv=None):
    parser = benchlib.base_parser(__doc__.split('\n\n')[0])
    parser.add_argument('--channels-last', action='store_true', help='channels_last networks and input')
    parser.add_argument('--lr-size', default=None, help='LR WIDTHxHEIGHT (default: 320x180, a 1280x720 output; '
                        '--quick: 128x72)')
    parser.add_argument('--batch', type=int, default=1, help='batch size (default: 1)')
    parser.add_argument('--reps', type=int, default=None, help='calls per variant per round (default: cpu 1, '
                        'cuda 10)')
    group = parser.add_argument_group('--eval-path (the sd-eval / sd-upscale forward and its speed options)')
    group.add_argument('--eval-path', action='store_true', help='time the sd-eval / sd-upscale path instead')
    group.add_argument('--sizes', nargs='+', default=None, metavar='WxH',
                       help='LR sizes (default: 128x128 320x180; --quick: 128x128)')
    group.add_argument('--blocks', nargs='+', type=int, default=[4, 16], help='MSRResNet depths (default: 4 16)')
    group.add_argument('--num-feat', type=int, default=32, help='features (default: 32)')
    group.add_argument('--thread-counts', nargs='+', type=int, default=[1, 2], metavar='N',
                       help='fp32 variants with these torch thread counts (default: 1 2)')
    group.add_argument('--ckpt', default=None, help='a trained checkpoint for the bf16 PSNR check (default: random '
                       'weights)')
    group.add_argument('--data', default='datasets', help='folder of <set>/GTmod4 and <set>/LRbicx4 (default: '
                       'datasets) for the PSNR check')
    group.add_argument('--image', default='Set5/baby', help='SET/NAME of the PSNR-check image (default: '
                       'Set5/baby; missing: a synthetic image)')
    args = parser.parse_args(argv)
    if args.eval_path:
        if args.device != 'cpu' or args.precision != 'fp32' or args.compile or args.channels_last:
            raise SystemExit('--eval-path: CPU only (sd-eval runs there), and it times its own variants (drop '
                             '--precision, --compile, --channels-last)')
        benchlib.setup(args)
        return eval_path(args)
    device = benchlib.setup(args)
    w, h = (int(v) for v in (args.lr_size or ('128x72' if args.quick else '320x180')).split('x'))
    rounds = args.rounds or (8 if args.quick else 10)
    reps = args.reps or (1 if device.type == 'cpu' else 10)

    nets = networks(device, args.channels_last)
    macs = {'student': benchlib.macs_per_lr_pixel(nets['student']),
            'teacher': benchlib.macs_per_lr_pixel(nets['teacher']),
            'multi@8': benchlib.macs_per_lr_pixel(nets['multi@8'], depth=8)}
    x = torch.rand(args.batch, 3, h, w, generator=torch.Generator().manual_seed(1)).to(device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        diff = (nets['student'](x) - nets['multi@8'](x)).abs().max().item()
    if diff > 1e-5:
        raise SystemExit(f'the exported student differs from exit 8 by {diff:.3g} (> 1e-5)')
    calls = {name: torch.compile(net) if args.compile else net for name, net in nets.items()}

    def run(net):
        def call():
            with torch.inference_mode(), benchlib.autocast(device, args.precision):
                net(x)
        return call

    times, warm = benchlib.interleaved({name: run(net) for name, net in calls.items()}, rounds, device, reps=reps,
                                       warmup=2)
    bound = macs['teacher'] / macs['student']
    ratios = [
        benchlib.ratio(times, 'teacher', 'student', 'student speed-up (teacher / student)', bound=bound,
                       goal=('>=', 0.95 * bound, '0.95 x bound')),
        benchlib.ratio(times, 'multi@8', 'student', 'multi-exit at exit 8 / exported student',
                       bound=macs['multi@8'] / macs['student'], goal=('in', (0.95, 1.05), 'same cost'),
                       note=f'same function: max abs output difference {diff:.1e}'),
        benchlib.ratio(times, 'teacher', 'multi@8', 'teacher / multi-exit at exit 8', bound=macs['teacher'] /
                       macs['multi@8']),
    ]
    config = dict(device=device.type, precision=args.precision, compile=args.compile,
                  channels_last=args.channels_last, batch=args.batch, lr_size=f'{w}x{h}', rounds=rounds, reps=reps,
                  threads=torch.get_num_threads())
    title = (f'bench_infer: exported student vs teacher, {args.precision}{" + compile" if args.compile else ""}'
             f'{" + channels_last" if args.channels_last else ""}, on {device.type}')
    benchlib.report(title, config, times, warm, ratios, macs, device, args.json)


# ----------------------------------------------------------------------------------------------- --eval-path


def sr_call(net, lr, depths, **options):
    """``protocol.model_sr`` with ``run_network``'s speed options spelled out: uint8 LR -> {depth: uint8 SR}."""
    x = torch.from_numpy(lr.astype(np.float32) / 255.).permute(2, 0, 1)[None]
    outputs = run_network(net, x, list(depths), **options)
    return {d: tensor2img(out, rgb2bgr=False, min_max=(0, 1)) for d, out in outputs.items()}


def psnr_check(args, threads):
    """(text, dict): what bf16 and channels_last do to the SR image of one LR image, against fp32 (contiguous)."""
    if args.ckpt:
        net, info = load_sr_network(args.ckpt)
        depths, which = net.depths, f'{args.ckpt} ({info["arch"]["num_feat"]} features, outputs {net.depths})'
    else:
        torch.manual_seed(0)
        net = SRResNetMultiExit(num_feat=args.num_feat, num_block=max(args.blocks),
                                exits=sorted(set(args.blocks) - {max(args.blocks)}))
        for module in net.modules():  # BasicSR's x0.1 init leaves a random net at its bilinear skip
            if isinstance(module, torch.nn.Conv2d):
                module.reset_parameters()
                with torch.no_grad():
                    module.weight.mul_(0.5)
        net = net.eval().requires_grad_(False)
        depths, which = net.depths, f'random weights (no --ckpt), outputs {net.depths}'
    set_name, name = args.image.split('/', 1)
    gt_path, lr_path = (osp.join(args.data, set_name, folder, f'{name}.png') for folder in ('GTmod4', 'LRbicx4'))
    if osp.isfile(gt_path) and osp.isfile(lr_path) and net.upscale == 4:
        gt, lr, image = read_image(gt_path), read_image(lr_path), f'{set_name}/{name}'
    else:
        yy, xx = np.mgrid[0:256, 0:256].astype(np.float64)
        gt = np.stack([np.sin(0.11 * yy + 0.07 * xx + c) * np.cos(0.05 * xx - 0.13 * yy) for c in range(3)], -1)
        gt = np.round((gt + 1) * 127.5).astype(np.uint8)
        lr, image = imresize(gt, 1 / net.upscale), 'a synthetic 256x256 image'
    lr = np.repeat(lr[..., None], 3, 2) if lr.ndim == 2 else lr
    with torch_threads(threads):
        sr = {name: sr_call(net, lr, depths, **options) for name, options in
              (('fp32', dict(channels_last=False)), ('channels_last', dict(channels_last=True)),
               ('bf16', dict(channels_last=False, precision='bf16')))}
        x = torch.from_numpy(lr.astype(np.float32) / 255.).permute(2, 0, 1)[None]
        raw = {cl: run_network(net, x, list(depths), channels_last=cl) for cl in (False, True)}
    result = {'image': image, 'network': which, 'outputs': {}}
    lines = [f'accuracy on {image}, {which}:']
    for d in depths:
        psnr = {k: measure(v[d], gt, net.upscale)[0] for k, v in sr.items()}
        diff = (raw[True][d] - raw[False][d]).abs().max().item()
        entry = {'psnr_fp32': psnr['fp32'], 'psnr_bf16_change': psnr['bf16'] - psnr['fp32'],
                 'psnr_channels_last_change': psnr['channels_last'] - psnr['fp32'],
                 'channels_last_max_abs_diff': diff,
                 'bf16_uint8_changed': float((sr['bf16'][d] != sr['fp32'][d]).mean())}
        result['outputs'][d] = entry
        lines.append(f'  output {d}: fp32 PSNR {psnr["fp32"]:.4f} dB (Y); bf16 changes PSNR by '
                     f'{entry["psnr_bf16_change"]:+.4f} dB ({100 * entry["bf16_uint8_changed"]:.1f} % of the uint8 '
                     f'values move); channels_last by {entry["psnr_channels_last_change"]:+.4f} dB (max abs output '
                     f'difference {diff:.1e})')
    return '\n'.join(lines), result


def eval_path(args):
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return eval_path_in(args, None)
    with tempfile.TemporaryDirectory(prefix='bench_infer_onnx_') as onnx_dir:  # removed afterwards
        return eval_path_in(args, onnx_dir)


def eval_path_in(args, onnx_dir):
    """``--eval-path``; ``onnx_dir``: a folder for the ONNX exports, None without onnxruntime."""
    base = torch.get_num_threads()
    auto = choose_threads('auto')
    sizes = [tuple(int(v) for v in t.split('x')) for t in (args.sizes or (['128x128'] if args.quick else
                                                                           ['128x128', '320x180']))]
    rounds = args.rounds or (6 if args.quick else 10)
    counts = [n for n in dict.fromkeys(args.thread_counts) if n != base]
    rng = np.random.default_rng(0)
    results = []
    for blocks in args.blocks:
        torch.manual_seed(0)
        net = SRResNetMultiExit(num_feat=args.num_feat, num_block=blocks).eval().requires_grad_(False)
        onnx_net = None
        if onnx_dir is not None:
            path = osp.join(onnx_dir, f'msrresnet{blocks}.onnx')
            arch = {k: v for k, v in benchlib.arch(blocks, num_feat=args.num_feat).items() if k != 'type'}
            export_onnx(arch, net.state_dict(), path)
            onnx_net = OnnxNetwork(path, threads=base)
        macs = {f'MSRResNet-{blocks}': benchlib.macs_per_lr_pixel(net)}
        for w, h in sizes:
            lr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            depths = [blocks]

            def call(threads=base, **options):
                return lambda: sr_call(net, lr, depths, threads=threads, **options)

            def default():
                with torch_threads(auto):
                    model_sr(net, lr, depths)

            variants = {'fp32': call(channels_last=False), 'channels_last': call(channels_last=True),
                        'bf16': call(channels_last=False, precision='bf16'),
                        'cl+bf16': call(channels_last=True, precision='bf16')}
            variants.update({f'fp32 {n} thr': call(threads=n, channels_last=False) for n in counts})
            variants[f'default (auto: {auto} thr)'] = default
            if onnx_net is not None:
                variants['onnxruntime'] = lambda: sr_call(onnx_net, lr, depths, threads=base)
            times, warm = benchlib.interleaved(variants, rounds, torch.device('cpu'), warmup=1)
            faster = ('<=', 0.95, 'faster by >= 5 %')
            notes = {'channels_last': 'same fp32 arithmetic, NHWC convolutions',
                     'bf16': 'changes the output: see the accuracy lines', 'cl+bf16': 'changes the output',
                     'onnxruntime': f'{base} intra-op threads, fp32'}
            ratios = [benchlib.ratio(times, name, 'fp32', f'{name} / fp32 ({base} thr)', bound=1.0, goal=faster,
                                     note=notes.get(name, '')) for name in variants if name != 'fp32']
            if 'fp32 1 thr' in variants and 'fp32 2 thr' in variants:
                ratios.append(benchlib.ratio(times, 'fp32 1 thr', 'fp32 2 thr', 'fp32 1 thr / fp32 2 thr', bound=1.0))
            if onnx_net is not None:
                ratios.append(benchlib.ratio(times, 'onnxruntime', 'channels_last',
                                             f'onnxruntime / channels_last ({base} thr)', bound=1.0, goal=faster))
            config = dict(device='cpu', network=f'MSRResNet-{blocks} ({args.num_feat} features, x4)',
                          lr_size=f'{w}x{h}', rounds=rounds, threads=base, auto_threads=auto,
                          cpu_count=os.cpu_count(), load_average=' '.join(f'{v:.2f}' for v in os.getloadavg()))
            title = (f'bench_infer --eval-path: the sd-eval / sd-upscale forward (uint8 in, uint8 out) of '
                     f'MSRResNet-{blocks} at {w}x{h}, speed options vs fp32')
            json_path = None
            if args.json:
                stem, ext = osp.splitext(args.json)
                json_path = f'{stem}_b{blocks}_{w}x{h}{ext or ".json"}'
            benchlib.report(title, config, times, warm, ratios, macs, torch.device('cpu'), json_path)
            results.append((blocks, f'{w}x{h}', ratios))
    text, accuracy = psnr_check(args, base)
    print(f'\n{text}')
    if args.json:
        import json
        stem, ext = osp.splitext(args.json)
        with open(f'{stem}_accuracy{ext or ".json"}', 'w') as f:
            json.dump(accuracy, f, indent=1)
    print('\nsummary (median ratio to fp32 [IQR] verdict; load average at the end '
          f'{" ".join(f"{v:.2f}" for v in os.getloadavg())} on {os.cpu_count()} cores):')
    for blocks, size, ratios in results:
        for r in ratios:
            print(f'  MSRResNet-{blocks:<3d} {size:8s} {r["name"]:40s} {r["median"]:.3f} [{r["q1"]:.3f}-{r["q3"]:.3f}] '
                  f'{r["verdict"]}')


if __name__ == '__main__':
    main()
