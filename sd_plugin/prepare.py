"""Paired HR/LR data that BasicSR's ``PairedImageDataset`` reads, made the way the published benchmarks were
(the library behind ``sd-prepare``; see ``sd_plugin.tools.prepare`` for the command).

LR images are the HR image (cropped to a multiple of the scale) down-sampled with sd_plugin.data.bicubic.imresize,
the MATLAB-exact bicubic that made the published benchmark LR images. Every output folder or LMDB pairs images by
name: the same file name (folders, `filename_tmpl: '{}'`) or the same key (LMDB, key = file name without .png).

Grey images stay single-channel PNGs: PairedImageDataset decodes in colour mode, so it reads them as 3 equal
channels, the same as resizing the 3 channels; the benchmark protocol measures them on their grey values.

Outputs are built in a hidden temporary folder inside the output folder and renamed into place at the end, so an
interrupted run never leaves a half-made folder or LMDB under its final name. An existing output needs
``overwrite``, which replaces only what sd-prepare wrote; an output is never one of the input folders.
"""
import os
import shutil
import tempfile
from os import path as osp

import cv2
from tqdm import tqdm

from sd_plugin.data.bicubic import imresize
from sd_plugin.errors import ConfigError, WriteError
from sd_plugin.files import check_apart, files_under, new_folder, record_written, written_by
from sd_plugin.imageio import IMAGE_EXTENSIONS, is_image_file, read_uint8

PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def list_images(folders, flag):
    """Sorted paths of the PNG/BMP/JPG files in ``folders`` (a folder or a list of them; ``flag`` names the option,
    for the messages). Two files that would be written under the same name are refused."""
    paths = []
    for folder in [folders] if isinstance(folders, str) else folders:
        if not osp.isdir(folder):
            raise ConfigError(f'{flag} {folder}: no such folder')
        found = sorted(osp.join(folder, f) for f in os.listdir(folder) if is_image_file(f))
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
    An existing output is replaced only with ``overwrite``, and only when every file in it is one sd-prepare wrote
    (listed in ``out/.sd-prepare.written``, ``files.record_written``); a refused run leaves no folder behind.
    """
    finals = {k: osp.join(out, rel.replace('/', '_') + '.lmdb' if lmdb else rel) for k, rel in outputs.items()}
    for final in finals.values():
        check_apart({'--out': final}, inputs)
    existing = [p for p in finals.values() if osp.lexists(p)]
    if existing and not overwrite:
        raise ConfigError(f'{existing[0]} already exists: pass --overwrite to replace it')
    own = written_by(out, TOOL)
    replaced = set()
    for final in existing:
        found = owned_names(out, final)
        foreign = sorted(found - own)
        if foreign:
            raise ConfigError(f'--overwrite: {final} holds {osp.join(out, foreign[0])}, which sd-prepare did not '
                              'write; nothing was deleted (move it, or choose another --out)')
        replaced |= found
    try:
        with new_folder(out):
            try:
                stage = tempfile.mkdtemp(prefix='.sd-prepare-', dir=out)
            except OSError as err:
                raise ConfigError(f'--out {out}: cannot write there ({err.strerror})') from None
            try:
                write_stage(stage, finals, items, lmdb)
                for k, final in finals.items():
                    staged = osp.join(stage, f'{k}.lmdb') if lmdb else osp.join(stage, 'images', k)
                    if osp.lexists(final):
                        os.rename(final, osp.join(stage, f'old_{k}'))  # deleted with the stage
                    os.makedirs(osp.dirname(final), exist_ok=True)
                    os.rename(staged, final)
                record_written(out, TOOL, set().union(*(owned_names(out, f) for f in finals.values())), replaced)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
    except OSError as err:
        if isinstance(err, WriteError):
            raise
        raise WriteError(err.filename or out, err) from None
    for final in finals.values():
        print(f'wrote {final}')
    return finals


TOOL = 'sd-prepare'


def owned_names(out, final):
    """The files of the output ``final`` (a folder, an LMDB or a file), as paths relative to ``out``."""
    if osp.isdir(final) and not osp.islink(final):
        return {osp.relpath(osp.join(final, name), out) for name in files_under(final)}
    return {osp.relpath(final, out)}


def write_stage(stage, finals, items, lmdb):
    """Write ``items`` as PNGs under ``stage/images/<key>/`` and, with ``lmdb``, ``stage/<key>.lmdb`` from them."""
    folders = {k: osp.join(stage, 'images', k) for k in finals}
    for folder in folders.values():
        os.makedirs(folder)
    for key, name, img in items:
        target = osp.join(folders[key], name)
        if osp.exists(target):
            raise ConfigError(f'two images would both be written as {name}: rename one of them')
        if not cv2.imwrite(target, img, PNG_OPTIONS):
            free = shutil.disk_usage(stage).free / 2**20
            raise ConfigError(f'cannot write {target} ({free:.0f} MiB free there)')
    if lmdb:
        for k in finals:
            write_lmdb(folders[k], osp.join(stage, f'{k}.lmdb'))


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
        hr = mod_crop(read_uint8(path), scale, path)
        yield stem(path), hr, imresize(hr, 1 / scale)


def div2k_pairs(hr_paths, lr_folder, scale):
    """(name, HR cropped to a multiple of scale, official LR ``{name}x{scale}.png``), sizes checked."""
    for path in tqdm(hr_paths, desc='DIV2K', unit='image'):
        name = stem(path)
        lr_path = osp.join(lr_folder, f'{name}x{scale}.png')
        if not osp.isfile(lr_path):
            raise ConfigError(f'{lr_path}: missing (the LR of {path})')
        hr, lr = mod_crop(read_uint8(path), scale, path), read_uint8(lr_path)
        if lr.shape[:2] != (hr.shape[0] // scale, hr.shape[1] // scale):
            raise ConfigError(f'{lr_path}: {lr.shape[1]}x{lr.shape[0]} is not {path} '
                              f'({hr.shape[1]}x{hr.shape[0]} after cropping to a multiple of {scale}) / {scale}')
        yield name, hr, lr


def prepare_div2k(root, out, scale=4, crop=480, step=240, lmdb=False, overwrite=False):
    """DIV2K in its standard layout (``root/DIV2K_train_HR/0001.png`` ..., and ``root/DIV2K_train_LR_bicubic/X<s>/``
    if present, else bicubic from the HR) -> paired sub-images under ``out``. Returns {'hr': path, 'lr': path}."""
    check_paired_options(scale, crop, step)
    hr_folder = osp.join(root, 'DIV2K_train_HR')
    if not osp.isdir(hr_folder):
        raise ConfigError(f'--root {root}: no DIV2K_train_HR folder in it')
    hr_paths = list_images(hr_folder, '--root')
    if lmdb:
        for p in hr_paths:
            check_lmdb_key(p)
    lr_folder = osp.join(root, 'DIV2K_train_LR_bicubic', f'X{scale}')
    if osp.isdir(lr_folder):
        print(f'LR: the official {lr_folder}')
        pairs = div2k_pairs(hr_paths, lr_folder, scale)
    else:
        print(f'LR: bicubic from the HR ({lr_folder} not found)')
        pairs = bicubic_pairs(hr_paths, scale, 'DIV2K')
    outputs = {'hr': 'DIV2K_train_HR_sub', 'lr': f'DIV2K_train_LR_bicubic/X{scale}_sub'}
    items = paired_items(pairs, scale, True, crop, step)
    return publish(out or osp.join('datasets', 'DIV2K'), outputs, items, lmdb, overwrite, {'--root': root})


def check_paired_options(scale, crop, step, subimages=True):
    """scale >= 2; with sub-images, crop and step multiples of it (so LR crops sit on whole pixels)."""
    if scale < 2:
        raise ConfigError(f'--scale {scale}: must be >= 2')
    if not subimages:
        return
    for flag, value in (('--crop', crop), ('--step', step)):
        if value < 1 or value % scale:
            raise ConfigError(f'{flag} {value}: must be a positive multiple of --scale {scale}')


def prepare_folder(hr, name, out, scale=4, subimages=False, crop=480, step=240, lmdb=False, overwrite=False):
    """HR images of the folders ``hr`` -> ``out/HR`` and ``out/LR_bicubic/X<scale>`` (``_sub`` with sub-images,
    ``.lmdb`` with ``lmdb``), every file named ``<stem>.png``. Returns {'hr': path, 'lr': path}."""
    check_paired_options(scale, crop, step, subimages)
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
            img = read_uint8(path)
            for s in scales:
                gt = mod_crop(img, s, path)
                yield f'gt{s}', f'{stem(path)}.png', gt
                yield f'lr{s}', f'{stem(path)}.png', imresize(gt, 1 / s)

    return publish(out or osp.join('datasets', name), outputs, items(), False, overwrite, {'--hr': hr})
