"""The cost of a family (issue 23): one multi-exit run against training every output's twin alone.

For each recipe of ``options/study/family.yml`` (and any study file with ``family_arm``): the training GMACs of one
iteration (3 x the forward of the outputs the step trains, on one batch of the study's LR patches, averaged over
the run: a sandwich draws, a two-phase recipe trains the teacher alone first), and the wall time of one training
step (``optimize_parameters`` at iterations spread over the run), timed interleaved with one step of every twin
(SRResNet-4, -8, -16, -32 alone), on one thread by default. Prints per recipe the ratio
"recipe / all twins together" in MACs and in time (median of per-round ratios, with their spread).

    python benchmarks/family_cost.py                 # ~5 min on one idle core
    python benchmarks/family_cost.py --quick         # 3 rounds: a smoke test, not a measurement
Timings taken while other work shares the cores are not clean; the script prints the load average it saw.
"""
import os
import sys
from os import path as osp

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import benchlib  # noqa: E402
import torch  # noqa: E402
from basicsr.models import build_model  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from sd_plugin.study.family import recipes_and_twins  # noqa: E402
from sd_plugin.study.spec import load_spec, run_options  # noqa: E402


def build(spec, arm):
    """The arm's SelfDistillSRModel (seed 0, fresh weights) and its training batch size / LR patch size."""
    opt = run_options(spec, arm, 0, None)
    opt['path']['pretrain_network_g'] = None
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False, num_gpu=0)
    opt['datasets'] = {}  # the step needs no dataset
    torch.manual_seed(0)
    return build_model(opt)


def train_gmacs(model, batch, lr_size, iters):
    """3 x the forward MACs of the outputs one step trains, averaged over the run's ``iters`` iterations (a
    two-phase recipe trains only the teacher at first; a sandwich draws)."""
    net = model.get_bare_model(model.net_g)
    x = torch.rand(batch, 3, lr_size, lr_size)
    depth_sets = [tuple(model.step_depths(it)) if hasattr(model, 'step_depths') else None for it in
                  range(1, iters + 1)]
    counted = {}
    for depths in set(depth_sets):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(x, all_exits=True, depths=None if depths is None else list(depths))
        counted[depths] = 3 * counter.get_total_flops() / 2 / 1e9
    return sum(counted[d] for d in depth_sets) / len(depth_sets)


def main(argv=None):
    parser = benchlib.base_parser(__doc__.splitlines()[0], precision=False, compile_=False)
    parser.add_argument('--spec', default=osp.join(benchlib.ROOT, 'options/study/family.yml'))
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = 1
    device = benchlib.setup(args)
    spec = load_spec(args.spec)
    recipes, twins = recipes_and_twins(spec)
    train = spec['base']['datasets']['train']
    batch, lr_size = train['batch_size_per_gpu'], train['gt_size'] // spec['base']['scale']
    data = {'lq': torch.rand(batch, 3, lr_size, lr_size), 'gt': torch.rand(batch, 3, 4 * lr_size, 4 * lr_size)}
    arms = [*recipes, *twins.values()]
    models = {arm: build(spec, arm) for arm in arms}
    gmacs = {arm: train_gmacs(models[arm], batch, lr_size, spec['iters']) for arm in arms}
    steps = {}
    for arm, model in models.items():
        calls = iter(range(10**9))

        def step(model=model, calls=calls):  # iterations spread over the run, so each phase / draw is timed
            model.feed_data(data)
            model.optimize_parameters(1 + next(calls) * 997 % spec['iters'])
        steps[arm] = step
    rounds = args.rounds or (3 if args.quick else 10)
    times, warm = benchlib.interleaved(steps, rounds, device)
    twin_arms = list(twins.values())
    print(f'threads {torch.get_num_threads()}, batch {batch}, LR patch {lr_size}, rounds {rounds}, load average at '
          f'the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores')
    print(benchlib.ms_table(times, warm))
    twin_gmacs = sum(gmacs[a] for a in twin_arms)
    print(f'all twins together ({", ".join(twin_arms)}): {twin_gmacs:.2f} training GMACs per iteration')
    rows = [('recipe', 'GMACs/iter', 'MACs / twins', 'time / twins (median)', 'IQR')]
    ratios = {}
    for arm in recipes:
        r = benchlib.ratio(times, arm, twin_arms, f'{arm} / twins')
        ratios[arm] = {'gmacs_per_iter': gmacs[arm], 'macs_ratio': gmacs[arm] / twin_gmacs,
                       'time_ratio_median': r['median'], 'time_ratio_iqr': [r['q1'], r['q3']]}
        rows.append((arm, f'{gmacs[arm]:.2f}', f'{gmacs[arm] / twin_gmacs:.3f}', f'{r["median"]:.3f}',
                     f'{r["q1"]:.3f}-{r["q3"]:.3f}'))
    print(benchlib.format_rows(rows))
    if args.json:
        import json
        record = {'environment': benchlib.environment(device), 'load_average_end': os.getloadavg()[0],
                  'rounds': rounds, 'gmacs_per_iter': gmacs, 'ratios_to_all_twins': ratios,
                  'seconds_per_step': {a: benchlib.spread(t) for a, t in times.items()}}
        with open(args.json, 'w') as f:
            json.dump(record, f, indent=1)


if __name__ == '__main__':
    main()
