"""sd-study: train every arm of a study file with several seeds, paired, and report learning curves and paired
differences with 95 % confidence intervals (JSON, markdown, PNG). Rerunning the same command continues a stopped
study. See docs/study.md."""
import argparse
import os
import signal
import sys

from sd_plugin.cli import one_line_errors
from sd_plugin.errors import ConfigError
from sd_plugin.files import plan_outputs
from sd_plugin.imports import parse_with_imports


def parse_list(text, kind=str):
    try:
        return [kind(v) for v in text.split(',') if v]
    except ValueError:
        raise ConfigError(f'{text!r}: expected a comma-separated list of {kind.__name__}') from None


def stop_children_on_signals():
    """On SIGTERM or SIGINT: stop the training runs in flight (they resume on the next run of the same command),
    start no more, and exit with 128 + the signal's number after one line. Returns {signal: the previous handler}."""
    from sd_plugin.study.runner import CHILDREN

    def stop(signum, frame):
        CHILDREN.stop()
        print(f'sd-study: stopped by {signal.Signals(signum).name}: the runs in flight were stopped; run the same '
              'command again to resume them', file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    return {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}


@one_line_errors('sd-study')
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='sd-study', description=__doc__,
        epilog='example: sd-study options/study/proxy.yml --out results/study --parallel 2')
    parser.add_argument('spec', help='study file (YAML), e.g. options/study/proxy.yml')
    parser.add_argument('--out', required=True, help='output folder (runs, students, study.json/md/png)')
    parser.add_argument('--parallel', type=int, default=1, help='runs trained at once (default: 1)')
    parser.add_argument('--seeds', default=None, help='override the seeds, e.g. 0,1,2')
    parser.add_argument('--iters', type=int, default=None, help='override iters')
    parser.add_argument('--val-freq', type=int, default=None, help='override val_freq')
    parser.add_argument('--arms', default=None, help='only these arms (and the baseline), comma-separated')
    parser.add_argument('--report-only', action='store_true', help='report what has finished; train nothing')
    parser.add_argument('--report', default=None, metavar='DIR',
                        help='write study.json/md/png, the students (and family/ for a study with family_arm) here '
                        '(default: OUT)')
    args = parse_with_imports(parser, argv)
    import sd_plugin  # noqa: F401  (registrations)
    from sd_plugin.study.report import REPORT_FILES, write_report
    from sd_plugin.study.runner import run_study
    from sd_plugin.study.spec import load_spec
    if args.parallel < 1:
        raise ConfigError(f'--parallel {args.parallel}: must be >= 1')
    spec = load_spec(args.spec, seeds=parse_list(args.seeds, int) if args.seeds else None, iters=args.iters,
                     val_freq=args.val_freq, arms=parse_list(args.arms) if args.arms else None,
                     imports=args.imports)
    # the report's files are outputs: never the spec, nor one another; each report rewrites the last one's
    plan_outputs({f'--report {name}': os.path.join(args.report or args.out, name) for name in REPORT_FILES},
                 {'SPEC': args.spec}, overwrite=True)
    if args.report_only and not os.path.isdir(os.path.join(args.out, 'runs')):
        raise ConfigError(f'--report-only --out {args.out}: no study there (no {os.path.join(args.out, "runs")} '
                          'folder); nothing to report')
    previous = stop_children_on_signals()
    try:
        failures = [] if args.report_only else run_study(spec, args.out, args.parallel)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    paths = write_report(spec, args.out, args.report)
    if spec.get('family_arm'):  # every output against its twin trained alone (sd_plugin/study/family.py)
        from sd_plugin.study.family import write_family_report
        family = os.path.join(args.report or args.out, 'family')
        write_family_report(spec, args.out, family)
        paths.append(family)
    print('wrote ' + ', '.join(paths))
    if failures:
        print(f'sd-study: error: {len(failures)} run(s) failed: {", ".join(failures)}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
