"""sd-prepare: make paired HR/LR training and benchmark data that BasicSR's PairedImageDataset reads.

LR images are the HR image (cropped to a multiple of the scale) down-sampled with sd_plugin.data.bicubic.imresize,
the MATLAB-exact bicubic that made the published benchmark LR images. Every output folder or LMDB pairs images by
name: the same file name (folders, `filename_tmpl: '{}'`) or the same key (LMDB, key = file name without .png).

Grey images stay single-channel PNGs: PairedImageDataset decodes in colour mode, so it reads them as 3 equal
channels, the same as resizing the 3 channels; the benchmark protocol measures them on their grey values.

Outputs are built in a hidden temporary folder inside --out and renamed into place at the end, so an interrupted
run never leaves a half-made folder or LMDB under its final name. An existing output needs --overwrite.
"""
import argparse
import os
import shutil
import tempfile
from os import path as osp

import cv2
import numpy as np
from tqdm import tqdm

from sd_plugin.cli import one_line_errors
from sd_plugin.data.bicubic import imresize
from sd_plugin.errors import ConfigError
from sd_plugin.files import check_apart

IMAGE_EXTENSIONS = ('.png', '.bmp', '.jpg', '.jpeg')
PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def list_images(folders, flag):
    """Sorted paths of the PNG/BMP/JPG files in ``folders`` (a folder or a list of them; ``flag`` names the option,
    for the messages). Two files that would be written under the same name are refused."""
    paths = []
    for folder in [folders] if isinstance(folders, str) else folders:
        if not osp.isdir(folder):
            raise ConfigError(f'{flag} {folder}: no such folder')
        found = sorted(osp.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise ConfigError(f'{flag} {folder}: no images ({"/".join(IMAGE_EXTENSIONS)}) in this folder')
        paths += found
    stems = {}
    for p in paths:
        stem = osp.splitext(osp.basename(p))[0]
        if stem in stems:
            raise ConfigError(f'{p} and {stems[stem]} would both be written as {stem}.png: rename one')
        stems[stem] = p
    return paths


def stem(path):
    return osp.splitext(osp.basename(path))[0]


def read_image(path):
    """uint8 (H, W) grey or (H, W, 3) BGR image; an alpha channel is dropped. ConfigError naming an unreadable file."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ConfigError(f'{path}: cannot read this image (corrupt or not an image)')
    if img.dtype != np.uint8:
        raise ConfigError(f'{path}: {img.dtype} image, only 8-bit images are supported')
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return img


def mod_crop(img, scale, path):
    """``img`` (read from ``path``) cropped at the bottom/right to a height and width that are multiples of
    ``scale``; ConfigError naming ``path`` if nothing is left."""
    h, w = img.shape[:2]
    if min(h, w) < scale:
        raise ConfigError(f'{path}: {w}x{h} is smaller than the scale {scale}')
    return img[:h - h % scale, :w - w % scale]


def crop_starts(length, crop, step):
    """Start positions of the crops along one axis, as BasicSR's extract_subimages.py (thresh_size 0) computes
    them: every ``step`` while a whole crop fits, plus ``length - crop`` at the end. [0] if ``length <= crop``."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop + 1, step))
    if starts[-1] != length - crop:
        starts.append(length - crop)
    return starts


def sub_image_pairs(name, hr, lr, scale, crop, step):
    """Yield (file name, HR crop, LR crop): ``{name}_s001.png``... row by row; the LR crop is the HR one / scale.
    An image smaller than ``crop`` along an axis is kept whole along it."""
    h, w = hr.shape[:2]
    ch, cw = min(crop, h), min(crop, w)
    index = 0
    for y in crop_starts(h, crop, step):
        for x in crop_starts(w, crop, step):
            index += 1
            ly, lx = y // scale, x // scale
            yield (f'{name}_s{index:03d}.png', hr[y:y + ch, x:x + cw],
                   lr[ly:ly + ch // scale, lx:lx + cw // scale])


def check_lmdb_key(path):
    """An LMDB key is the file name without extension; BasicSR needs it ASCII and cuts meta_info.txt at '.'."""
    key = stem(path)
    if not key.isascii() or '.' in key or any(c.isspace() for c in key):
        raise ConfigError(f'{path}: name {key!r} cannot be an LMDB key (ASCII without dots or spaces): rename it')


def write_lmdb(folder, lmdb_path):
    """The PNGs of ``folder`` as an LMDB by BasicSR's make_lmdb_from_imgs (keys: names without .png)."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs  # imports all of BasicSR: only when needed

    names = sorted(os.listdir(folder))
    total_bytes = sum(osp.getsize(osp.join(folder, n)) for n in names)
    make_lmdb_from_imgs(folder, lmdb_path, names, [osp.splitext(n)[0] for n in names],
                        map_size=10 * total_bytes + (64 << 20))


def publish(out, outputs, items, lmdb, overwrite, inputs):
    """Write ``items`` and move them into place; return {key: final path}.

    ``outputs``: {key: folder path relative to ``out``}, e.g. {'hr': 'HR_sub', 'lr': 'LR_bicubic/X4_sub'}; with
    ``lmdb`` the output is ``out/<that path with / as _>.lmdb`` instead. ``items`` yields (key, file name, image).
    ``inputs`` ({option: path or paths}): no output may be one of them or hold one (``files.check_apart``).
    """
    finals = {k: osp.join(out, rel.replace('/', '_') + '.lmdb' if lmdb else rel) for k, rel in outputs.items()}
    for final in finals.values():
        check_apart({'--out': final}, inputs)
    existing = [p for p in finals.values() if osp.lexists(p)]
    if existing and not overwrite:
        raise ConfigError(f'{existing[0]} already exists: pass --overwrite to replace it')
    try:
        os.makedirs(out, exist_ok=True)
        stage = tempfile.mkdtemp(prefix='.sd-prepare-', dir=out)
    except OSError as err:
        raise ConfigError(f'--out {out}: cannot write there ({err.strerror})') from None
    try:
        folders = {k: osp.join(stage, 'images', k) for k in finals}
        for folder in folders.values():
            os.makedirs(folder)
        for key, name, img in items:
            target = osp.join(folders[key], name)
            if osp.exists(target):
                raise ConfigError(f'two images would both be written as {name}: rename one of them')
            if not cv2.imwrite(target, img, PNG_OPTIONS):
                raise ConfigError(f'cannot write {target}')
        staged = folders
        if lmdb:
            staged = {k: osp.join(stage, f'{k}.lmdb') for k in finals}
            for k in finals:
                write_lmdb(folders[k], staged[k])
        for k, final in finals.items():
            if osp.lexists(final):
                os.rename(final, osp.join(stage, f'old_{k}'))  # deleted with the stage
            os.makedirs(osp.dirname(final), exist_ok=True)
            os.rename(staged[k], final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for final in finals.values():
        print(f'wrote {final}')
    return finals


def paired_items(pairs, scale, subimages, crop, step):
    """(key, file name, image) for ``publish``, from (name, HR, LR) pairs: whole images or sub-images."""
    for name, hr, lr in pairs:
        if subimages:
            for sub_name, hr_crop, lr_crop in sub_image_pairs(name, hr, lr, scale, crop, step):
                yield 'hr', sub_name, hr_crop
                yield 'lr', sub_name, lr_crop
        else:
            yield 'hr', f'{name}.png', hr
            yield 'lr', f'{name}.png', lr


def bicubic_pairs(paths, scale, desc):
    """(name, HR cropped to a multiple of scale, its bicubic LR) for each HR path, with a progress bar."""
    for path in tqdm(paths, desc=desc, unit='image'):
        hr = mod_crop(read_image(path), scale, path)
        yield stem(path), hr, imresize(hr, 1 / scale)


def div2k_pairs(hr_paths, lr_folder, scale):
    """(name, HR cropped to a multiple of scale, official LR ``{name}x{scale}.png``), sizes checked."""
    for path in tqdm(hr_paths, desc='DIV2K', unit='image'):
        name = stem(path)
        lr_path = osp.join(lr_folder, f'{name}x{scale}.png')
        if not osp.isfile(lr_path):
            raise ConfigError(f'{lr_path}: missing (the LR of {path})')
        hr, lr = mod_crop(read_image(path), scale, path), read_image(lr_path)
        if lr.shape[:2] != (hr.shape[0] // scale, hr.shape[1] // scale):
            raise ConfigError(f'{lr_path}: {lr.shape[1]}x{lr.shape[0]} is not {path} '
                              f'({hr.shape[1]}x{hr.shape[0]} after cropping to a multiple of {scale}) / {scale}')
        yield name, hr, lr


def check_paired_options(args):
    """--scale >= 2; with sub-images, --crop and --step multiples of it (so LR crops sit on whole pixels)."""
    if args.scale < 2:
        raise ConfigError(f'--scale {args.scale}: must be >= 2')
    if args.command == 'folder' and not args.subimages:
        return
    for flag, value in (('--crop', args.crop), ('--step', args.step)):
        if value < 1 or value % args.scale:
            raise ConfigError(f'{flag} {value}: must be a positive multiple of --scale {args.scale}')


def run_div2k(args):
    hr_folder = osp.join(args.root, 'DIV2K_train_HR')
    if not osp.isdir(hr_folder):
        raise ConfigError(f'--root {args.root}: no DIV2K_train_HR folder in it')
    hr_paths = list_images(hr_folder, '--root')
    if args.lmdb:
        for p in hr_paths:
            check_lmdb_key(p)
    lr_folder = osp.join(args.root, 'DIV2K_train_LR_bicubic', f'X{args.scale}')
    if osp.isdir(lr_folder):
        print(f'LR: the official {lr_folder}')
        pairs = div2k_pairs(hr_paths, lr_folder, args.scale)
    else:
        print(f'LR: bicubic from the HR ({lr_folder} not found)')
        pairs = bicubic_pairs(hr_paths, args.scale, 'DIV2K')
    outputs = {'hr': 'DIV2K_train_HR_sub', 'lr': f'DIV2K_train_LR_bicubic/X{args.scale}_sub'}
    items = paired_items(pairs, args.scale, True, args.crop, args.step)
    return publish(args.out or osp.join('datasets', 'DIV2K'), outputs, items, args.lmdb, args.overwrite,
                   {'--root': args.root})


def prepare_folder(hr, name, out, scale=4, subimages=False, crop=480, step=240, lmdb=False, overwrite=False):
    """HR images of the folders ``hr`` -> ``out/HR`` and ``out/LR_bicubic/X<scale>`` (``_sub`` with sub-images,
    ``.lmdb`` with ``lmdb``), every file named ``<stem>.png``. Returns {'hr': path, 'lr': path}."""
    hr = [hr] if isinstance(hr, str) else list(hr)
    paths = list_images(hr, '--hr')
    if lmdb:
        for p in paths:
            check_lmdb_key(p)
    suffix = '_sub' if subimages else ''
    outputs = {'hr': f'HR{suffix}', 'lr': f'LR_bicubic/X{scale}{suffix}'}
    items = paired_items(bicubic_pairs(paths, scale, name), scale, subimages, crop, step)
    return publish(out or osp.join('datasets', name), outputs, items, lmdb, overwrite, {'--hr': hr})


def prepare_benchmark(hr, name, out, scales=(2, 3, 4), overwrite=False):
    """A benchmark HR folder -> ``out/GTmod<s>/<stem>.png`` and ``out/LRbicx<s>/<stem>.png`` for each scale.
    Returns {'gt<s>': path, 'lr<s>': path, ...}."""
    paths = list_images(hr, '--hr')
    scales = sorted(set(scales))
    if scales[0] < 2:
        raise ConfigError(f'--scale {scales[0]}: must be >= 2')
    outputs = {}
    for s in scales:
        outputs.update({f'gt{s}': f'GTmod{s}', f'lr{s}': f'LRbicx{s}'})

    def items():
        for path in tqdm(paths, desc=name, unit='image'):
            img = read_image(path)
            for s in scales:
                gt = mod_crop(img, s, path)
                yield f'gt{s}', f'{stem(path)}.png', gt
                yield f'lr{s}', f'{stem(path)}.png', imresize(gt, 1 / s)

    return publish(out or osp.join('datasets', name), outputs, items(), False, overwrite, {'--hr': hr})


def run_folder(args):
    return prepare_folder(args.hr, args.name, args.out, args.scale, args.subimages, args.crop, args.step, args.lmdb,
                          args.overwrite)


def run_benchmark(args):
    return prepare_benchmark(args.hr, args.name, args.out, args.scale, args.overwrite)


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
    args = build_parser().parse_args(argv)
    if args.command != 'benchmark':
        check_paired_options(args)
    args.run(args)


if __name__ == '__main__':
    main()
