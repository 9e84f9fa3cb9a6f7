"""One training step (``model.feed_data`` + ``model.optimize_parameters``: forward, backward, Adam) of the real BasicSR
model classes, built by ``basicsr.models.build_model``, timed interleaved in one process:

  sd32_exit8  SelfDistillSRModel, SRResNetMultiExit 32 blocks with an exit at 8 (teacher + student loss)
  plain32     SRModel, MSRResNet 32 blocks (stock BasicSR training of the teacher)
  plain8      SRModel, MSRResNet 8 blocks (stock BasicSR training of a student-sized network)

same batch and patch size, 64 features, x4, L1, Adam. ``--options`` instead times SelfDistillSRModel with each of
its speed options (``train.channels_last``, ``train.autocast``, ``train.compile``) against its fp32 default.
``--archs`` instead times, per arch (EDSR, RCAN, RRDBNet, SwinIR: ``ARCH_CASES``), a SelfDistillSRModel step of the
MultiExitSR-wrapped teacher with one exit against a stock SRModel step of the same teacher: the cost of
self-distillation over plain training of that arch, against its MAC bound (the forward MACs of the one-pass
all-exits forward over the teacher's, counted by torch's FlopCounterMode: convolutions and matmuls).

Precision, ``--compile`` and ``--channels-last`` apply to every variant: to SelfDistillSRModel through its YAML
options; stock SRModel has none, so the script applies the same transforms to it from outside (autocast around
``optimize_parameters``, ``model.net_g = torch.compile(model.net_g)``, channels_last network and input), for timing.

Examples::

    python benchmarks/bench_train.py --quick
    python benchmarks/bench_train.py --device cuda --precision bf16 --json results/train_bf16.json
    python benchmarks/bench_train.py --options channels_last bf16 compile --quick
    python benchmarks/bench_train.py --archs EDSR RCAN RRDBNet SwinIR --quick
"""
import benchlib  # noqa: I001  (first: imports sd_plugin before basicsr)
import torch
from basicsr.models import build_model

SPEED_OPTIONS = {  # --options name: SelfDistillSRModel train.* overrides
    'channels_last': {'channels_last': True},
    'bf16': {'autocast': 'bf16'},
    'fp16': {'autocast': 'fp16'},
    'compile': {'compile': True},
    'channels_last_bf16': {'channels_last': True, 'autocast': 'bf16'},
    'all': {'channels_last': True, 'autocast': 'bf16', 'compile': True},
}


def arch_cases(width):
    """{name: (the teacher's stock network_g, the exit depth in its unit)} at ``width`` features (SwinIR: embed_dim
    ``width - width % 6``, 6 heads), x4; the 16-block / exit-4 proportions of the SRResNet study where they fit."""
    swin_dim = width - width % 6
    return {
        'EDSR': ({'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': width, 'num_block': 16,
                  'upscale': 4}, 4),
        'RCAN': ({'type': 'RCAN', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': width, 'num_group': 4, 'num_block': 4,
                  'upscale': 4}, 1),
        'RRDBNet': ({'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': width, 'num_block': 8,
                     'num_grow_ch': width // 2, 'scale': 4}, 2),
        'SwinIR': ({'type': 'SwinIR', 'embed_dim': swin_dim, 'depths': [6] * 4, 'num_heads': [6] * 4, 'window_size': 8,
                    'mlp_ratio': 2, 'upscale': 4, 'upsampler': 'pixelshuffledirect'}, 1),
    }


def forward_macs_per_lr_pixel(net, lr_size, all_exits=False):
    """Forward MACs per LR pixel (torch's FlopCounterMode / 2: convolutions and matmuls, attention included)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.rand(1, 3, lr_size, lr_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, all_exits=True) if all_exits else net(x)
    return counter.get_total_flops() / 2 / lr_size**2


def run_archs(args, device, data, rounds, reps, config):
    """--archs: per arch, SD step of the wrapped teacher with one exit / plain SRModel step of the teacher."""
    from basicsr.archs import build_network
    lr_size = data['lq'].shape[-1]
    cases = arch_cases(32 if args.quick else 64)
    variants, ratios, macs = {}, [], {}
    for name in args.archs:
        teacher, k = cases[name]
        if name == 'SwinIR':
            teacher = {**teacher, 'img_size': lr_size}  # its attention masks are made for this size
        wrapped = {'type': 'MultiExitSR', 'arch': teacher, 'exits': [k]}
        torch.manual_seed(0)
        m_sd = forward_macs_per_lr_pixel(build_network(wrapped).eval(), lr_size, all_exits=True)
        m_plain = forward_macs_per_lr_pixel(build_network(teacher).eval(), lr_size)
        macs.update({f'{name} all exits': m_sd, f'{name} teacher': m_plain})
        variants[f'{name}_sd'] = sd_step(benchlib.model_options(wrapped, device, 'SelfDistillSRModel'), data)[0]
        variants[f'{name}_plain'] = plain_step(benchlib.model_options(teacher, device), data, device, 'fp32', False,
                                               False)[0]
        ratios.append((name, m_sd / m_plain, k))
    times, warm = benchlib.interleaved(variants, rounds, device, reps=reps, warmup=2)
    ratios = [benchlib.ratio(times, f'{name}_sd', f'{name}_plain', f'{name}: SD step / plain step', bound=bound,
                             goal=('<=', 1.05 * bound, '1.05 x bound'),
                             note=f'teacher {cases[name][0]}, exit {k}')
              for name, bound, k in ratios]
    config.update(archs=args.archs, width=32 if args.quick else 64)
    title = f'bench_train --archs: SD step of MultiExitSR(teacher, one exit) vs plain SRModel step, on {device.type}'
    benchlib.report(title, config, times, warm, ratios, macs, device, args.json)


def speed_overrides(precision, compile_, channels_last):
    out = {}
    if precision != 'fp32':
        out['autocast'] = precision
    if compile_:
        out['compile'] = True
    if channels_last:
        out['channels_last'] = True
    return out


def sd_step(opt, data):
    """A closure running one SelfDistillSRModel step; the options are the model's own (YAML) ones."""
    model = build_model(opt)

    def step():
        model.feed_data(data)
        model.optimize_parameters(1)
    return step, model


def plain_step(opt, data, device, precision, compile_, channels_last):
    """A closure running one stock SRModel step, with the speed transforms applied from outside."""
    model = build_model(opt)
    if channels_last:
        model.net_g.to(memory_format=torch.channels_last)
        data = {**data, 'lq': data['lq'].contiguous(memory_format=torch.channels_last)}
    if compile_:
        model.net_g = torch.compile(model.net_g)

    def step():
        model.feed_data(data)
        with benchlib.autocast(device, precision):
            model.optimize_parameters(1)
    return step, model


def main(argv=None):
    parser = benchlib.base_parser(__doc__.split('\n\n')[0])
    parser.add_argument('--channels-last', action='store_true', help='channels_last network and input')
    parser.add_argument('--batch', type=int, default=4, help='batch size (default: 4)')
    parser.add_argument('--gt-size', type=int, default=None, help='GT patch size (default: 96, --quick: 64)')
    parser.add_argument('--reps', type=int, default=None, help='steps per variant per round (default: cpu 1, cuda 10)')
    parser.add_argument('--options', nargs='+', default=None, choices=list(SPEED_OPTIONS),
                        help='time SelfDistillSRModel with these speed options against its fp32 default instead')
    parser.add_argument('--archs', nargs='+', default=None, choices=list(arch_cases(64)),
                        help='time an SD step over a plain step for each of these archs instead')
    args = parser.parse_args(argv)
    device = benchlib.setup(args)
    if args.options and 'fp16' in args.options and device.type != 'cuda':
        raise SystemExit('--options fp16: CUDA only')
    gt = args.gt_size or (64 if args.quick else 96)
    if gt % 4:
        raise SystemExit('--gt-size: a multiple of 4')
    rounds = args.rounds or (8 if args.quick else 15)
    reps = args.reps or (1 if device.type == 'cpu' else 10)
    g = torch.Generator().manual_seed(0)
    data = {'lq': torch.rand(args.batch, 3, gt // 4, gt // 4, generator=g).to(device),
            'gt': torch.rand(args.batch, 3, gt, gt, generator=g).to(device)}
    torch.manual_seed(0)

    sd_arch, p32, p8 = benchlib.arch(32, exits=[8]), benchlib.arch(32), benchlib.arch(8)
    from basicsr.archs import build_network
    nets = {name: build_network(a) for name, a in (('sd', sd_arch), ('p32', p32), ('p8', p8))}
    macs = {'sd32_exit8 (all exits)': benchlib.macs_per_lr_pixel(nets['sd'], all_exits=True),
            'plain32': benchlib.macs_per_lr_pixel(nets['p32']), 'plain8': benchlib.macs_per_lr_pixel(nets['p8'])}
    m_sd, m32, m8 = macs.values()

    config = dict(device=device.type, batch=args.batch, gt_size=gt, lr_size=gt // 4, rounds=rounds, reps=reps,
                  threads=torch.get_num_threads())
    if args.archs:
        return run_archs(args, device, data, rounds, reps, config)
    if args.options:
        config['options'] = args.options
        variants = {'sd32_fp32': sd_step(benchlib.model_options(sd_arch, device), data)[0]}
        for name in args.options:
            variants[f'sd32_{name}'] = sd_step(benchlib.model_options(sd_arch, device, **SPEED_OPTIONS[name]),
                                               data)[0]
        times, warm = benchlib.interleaved(variants, rounds, device, reps=reps, warmup=2)
        ratios = [benchlib.ratio(times, name, 'sd32_fp32', f'{name} / fp32 step', bound=1.0,
                                 note=f'train: {SPEED_OPTIONS[name.split("_", 1)[1]]}; < 1 is faster')
                  for name in variants if name != 'sd32_fp32']
        title = 'bench_train --options: SelfDistillSRModel step with each speed option vs its fp32 default'
        benchlib.report(title, config, times, warm, ratios, {'sd32_exit8 (all exits)': m_sd}, device, args.json)
        return

    config.update(precision=args.precision, compile=args.compile, channels_last=args.channels_last)
    overrides = speed_overrides(args.precision, args.compile, args.channels_last)
    variants = {
        'sd32_exit8': sd_step(benchlib.model_options(sd_arch, device, **overrides), data)[0],
        'plain32': plain_step(benchlib.model_options(p32, device), data, device, args.precision, args.compile,
                              args.channels_last)[0],
        'plain8': plain_step(benchlib.model_options(p8, device), data, device, args.precision, args.compile,
                             args.channels_last)[0],
    }
    times, warm = benchlib.interleaved(variants, rounds, device, reps=reps, warmup=2)
    bound = m_sd / m32
    ratios = [
        benchlib.ratio(times, 'sd32_exit8', 'plain32', 'SD-32 step / plain-32 step', bound=bound,
                       goal=('<=', 1.05 * bound, '1.05 x bound'),
                       note='the price of self-distillation over stock BasicSR training of the teacher'),
        benchlib.ratio(times, 'plain32', 'plain8', 'plain-32 step / plain-8 step', bound=m32 / m8,
                       note='how much cheaper a student-sized network trains'),
        benchlib.ratio(times, 'sd32_exit8', ['plain32', 'plain8'], 'SD-32 step / (plain-32 + plain-8 steps)',
                       bound=m_sd / (m32 + m8), note='one SD run vs training teacher and student separately'),
    ]
    title = (f'bench_train: one training step, {args.precision}{" + compile" if args.compile else ""}'
             f'{" + channels_last" if args.channels_last else ""}, on {device.type}')
    benchlib.report(title, config, times, warm, ratios, macs, device, args.json)


if __name__ == '__main__':
    main()
