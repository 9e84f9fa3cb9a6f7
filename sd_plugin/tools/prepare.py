"""sd-prepare: make paired HR/LR training and benchmark data that BasicSR's PairedImageDataset reads (MATLAB-exact
bicubic LR; folders or LMDBs; outputs written atomically, never over an input). See ``sd_plugin.prepare``."""
import argparse

from sd_plugin.cli import one_line_errors
from sd_plugin.imports import parse_with_imports
from sd_plugin.names import plain_name
from sd_plugin.prepare import prepare_benchmark, prepare_div2k, prepare_folder


def run_div2k(args):
    return prepare_div2k(args.root, args.out, args.scale, args.crop, args.step, args.lmdb, args.overwrite)


def run_folder(args):
    return prepare_folder(args.hr, plain_name('--name', args.name), args.out, args.scale, args.subimages, args.crop,
                          args.step, args.lmdb, args.overwrite)


def run_benchmark(args):
    return prepare_benchmark(args.hr, plain_name('--name', args.name), args.out, args.scale, args.overwrite)


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    paired = argparse.ArgumentParser(add_help=False)
    paired.add_argument('--scale', type=int, default=4, help='down-sampling factor (default: 4)')
    paired.add_argument('--lmdb', action='store_true', help='write LMDBs (<folder>.lmdb) instead of folders')
    paired.add_argument('--crop', type=int, default=480, help='HR sub-image size (default: 480)')
    paired.add_argument('--step', type=int, default=240, help='HR sub-image step (default: 240)')

    parser = argparse.ArgumentParser(prog='sd-prepare', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True, metavar='{div2k,folder,benchmark}')
    fmt = argparse.RawDescriptionHelpFormatter
    div2k = commands.add_parser(
        'div2k', parents=[common, paired], formatter_class=fmt, help='DIV2K train set -> paired sub-images',
        description='DIV2K (ROOT/DIV2K_train_HR/0001.png ..., and ROOT/DIV2K_train_LR_bicubic/X4/0001x4.png if '
        'present, else bicubic from the HR) -> 480 px HR sub-images (step 240) and their LR: '
        'OUT/DIV2K_train_HR_sub/0001_s001.png ... and OUT/DIV2K_train_LR_bicubic/X4_sub/0001_s001.png ...; '
        'with --lmdb OUT/DIV2K_train_HR_sub.lmdb and OUT/DIV2K_train_LR_bicubic_X4_sub.lmdb.',
        epilog='example:\n  sd-prepare div2k --root ~/data/DIV2K --out datasets/DIV2K --scale 4 --lmdb')
    div2k.add_argument('--root', required=True, help='folder holding DIV2K_train_HR/')
    div2k.add_argument('--out', default=None, help='output folder (default: datasets/DIV2K)')
    div2k.set_defaults(run=run_div2k)

    folder = commands.add_parser(
        'folder', parents=[common, paired], formatter_class=fmt, help='any folder of HR images -> paired data',
        description='A folder of HR PNG/BMP/JPG images -> OUT/HR/<name>.png (cropped to a multiple of the scale) '
        'and OUT/LR_bicubic/X<s>/<name>.png; with --subimages OUT/HR_sub and OUT/LR_bicubic/X<s>_sub '
        '(<name>_s001.png ...; images smaller than --crop are kept whole); with --lmdb the same names + .lmdb, '
        '"/" written as "_" (OUT/HR.lmdb, OUT/LR_bicubic_X4.lmdb).',
        epilog='examples:\n  sd-prepare folder --hr ../shared/data/T91/HR --name T91 --out datasets/T91 --scale 4\n'
        '  sd-prepare folder --hr ../shared/data/T91/HR ../shared/data/BSD200/HR --name 291 --subimages --lmdb\n'
        '  sd-prepare folder --hr ~/photos --name photos --subimages --crop 240 --step 120 --lmdb')
    folder.add_argument('--hr', required=True, nargs='+', help='folder(s) of HR images, e.g. T91/HR BSD200/HR')
    folder.add_argument('--name', required=True, help='data set name (default --out: datasets/NAME)')
    folder.add_argument('--out', default=None, help='output folder (default: datasets/NAME)')
    folder.add_argument('--subimages', action='store_true', help='cut HR into --crop px sub-images every --step px')
    folder.set_defaults(run=run_folder)

    bench = commands.add_parser(
        'benchmark', parents=[common], formatter_class=fmt, help='benchmark set -> GTmod<s>/ and LRbicx<s>/',
        description='A benchmark HR folder -> OUT/GTmod<s>/<name>.png (HR cropped to a multiple of s) and '
        'OUT/LRbicx<s>/<name>.png (bicubic / s) for each scale s; grey images stay single-channel.',
        epilog='example:\n  sd-prepare benchmark --hr ../shared/data/Set5/HR --name Set5 --out datasets/Set5 '
        '--scale 2 3 4')
    bench.add_argument('--hr', required=True, help='folder of HR images')
    bench.add_argument('--name', required=True, help='data set name (default --out: datasets/NAME)')
    bench.add_argument('--out', default=None, help='output folder (default: datasets/NAME)')
    bench.add_argument('--scale', type=int, nargs='+', default=[2, 3, 4], help='scales (default: 2 3 4)')
    bench.set_defaults(run=run_benchmark)
    return parser


@one_line_errors('sd-prepare')
def main(argv=None):
    """Run one sd-prepare subcommand (``argv``: its arguments, default sys.argv[1:]); print what it wrote."""
    args = parse_with_imports(build_parser(), argv)
    args.run(args)


if __name__ == '__main__':
    main()
