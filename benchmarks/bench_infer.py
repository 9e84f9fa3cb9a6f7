"""Inference of the shipped student against the teacher, timed interleaved in one process (batch 1, no grad):

  student   stock MSRResNet 8 blocks, weights = sd_plugin.export.student_state_dict(multi-exit weights, 8)
  teacher   stock MSRResNet 32 blocks, weights = the multi-exit model's trunk and final head
  multi@8   SRResNetMultiExit 32 blocks, exits [8], deploy_exit=8: plain forward(x) runs 8 blocks and exit head 8

All three share one random initialisation (weights do not change the cost). ``student`` and ``multi@8`` compute the
same function (checked to 1e-5) and must cost the same.

Examples::

    python benchmarks/bench_infer.py --quick
    python benchmarks/bench_infer.py --device cuda --precision bf16 --compile --json results/infer.json
"""
import benchlib  # noqa: I001  (first: imports sd_plugin before basicsr)
import torch
from basicsr.archs.srresnet_arch import MSRResNet

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.export import student_state_dict


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
    args = parser.parse_args(argv)
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


if __name__ == '__main__':
    main()
