"""sd-quickstart: the whole method in about a minute on CPU, on colour images that scikit-image ships (no download).

It prepares a tiny paired x4 data set (``sd-prepare``), trains a self-distilled SRResNet (teacher and one exit) with
BasicSR's own ``train_pipeline``, exports the exit as a stock ``MSRResNet`` checkpoint (``sd-export``), and prints
sd-eval's table: bicubic, the exported student, the exit and the teacher, with PSNR / SSIM (Y channel, border 4, the
literature's protocol), parameters, MACs and CPU latency on the first validation image. It then upscales the first
validation LR image with the student (``sd-upscale``'s code path) and draws ``sd-compare``'s picture of it: HR,
bicubic, student and teacher, each with its PSNR. The defaults are a scaled-down model (32 features, teacher of 16
blocks, exit after block 4) trained for 400 iterations (Adam 5e-4, halved after 300; batch 4, 64 px GT patches cut
from 128 px sub-images); ``--feat 64 --blocks 32 --exit 8`` is the paper's model.

The training images are four natural photographs (astronaut, rocket, immunohistochemistry, the left motorcycle
stereo view); scikit-image's synthetic ``colorwheel`` is left out on purpose: 79 % of its HR pixels are within half a
grey level of the bilinear up-scaling of its LR, so under the L1 loss its patches pull the network's residual back to
exactly zero (the bilinear skip) as hard as the photographs push it away, and the run sat at bilinear (28.85 dB,
below bicubic's 29.37) for hundreds of iterations. Everything goes under ``--out``: a new or empty folder, or one an
earlier ``sd-quickstart`` made (it carries a marker file); a rerun replaces only what ``sd-quickstart`` writes there.
"""
import argparse
import contextlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from os import path as osp

import numpy as np
import yaml
from basicsr.utils import get_root_logger
from tqdm import tqdm

import sd_plugin  # noqa: F401  (registrations)
from sd_plugin import compat
from sd_plugin.archs import SRResNetMultiExit
from sd_plugin.cli import one_line_errors
from sd_plugin.compare import comparison_grid, load_model, model_output
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.protocol import evaluate
from sd_plugin.evaluation.protocol import read_image as read_rgb
from sd_plugin.evaluation.report import markdown_table
from sd_plugin.export import export
from sd_plugin.files import (
    MARKER,
    atomic_write,
    check_apart,
    claim_folder,
    files_under,
    record_written,
    remove_written,
    written_by,
)
from sd_plugin.imageio import IMAGE_EXTENSIONS, read_image, write_image
from sd_plugin.imports import parse_with_imports
from sd_plugin.prepare import prepare_benchmark, prepare_folder
from sd_plugin.threads import apply_threads
from sd_plugin.upscaler import Upscaler

SCALE = 4
# Natural photographs only: see the module docstring for why the synthetic colorwheel (and the mostly black
# hubble_deep_field and retina) are not training images.
SKIMAGE_TRAIN = ('astronaut', 'rocket', 'immunohistochemistry', 'motorcycle')
SKIMAGE_VAL = ('chelsea', 'coffee')
SKIMAGE_LOADERS = {'motorcycle': lambda data: data.stereo_motorcycle()[0]}  # the left view; the right is near-identical
UPSCALE_TILE = 256  # LR tile of the final up-scaling: bounds memory for a large image of your own (exact anyway)
SUB_IMAGE = 128  # training images are cut into sub-images of this size: a patch reads a small PNG, not a whole photo
BATCH = 4
TOOL = 'sd-quickstart'
WRITTEN = f'.{TOOL}.written'
# What sd-quickstart writes under --out (and student_exit<k>_x4.pth); a rerun removes only the files it recorded,
# and refuses to run while a file it did not write lies in one of the FILLED folders.
FILLED = ('hr', 'data/train', 'data/val', 'experiments/quickstart_sd', 'tb_logger/quickstart_sd', 'upscaled')
OUTPUTS = ('hr', 'data', 'experiments', 'tb_logger', 'train.log', 'quickstart_sd.yml', 'quickstart.json', 'upscaled',
           'comparison.png')


def clear_earlier_run(out):
    """Remove the files an earlier sd-quickstart recorded as written into ``out`` (``files.record_written``) and the
    folders left empty. Any other file stays; a ConfigError, before anything is removed, when one lies where this run
    writes (``FILLED``)."""
    own = written_by(out, TOOL)
    student = re.compile(r'student_exit\d+_x\d+\.pth')
    for name in sorted(files_under(out) - own):
        if name in OUTPUTS or student.fullmatch(name) or name.startswith(tuple(f + os.sep for f in FILLED)):
            raise ConfigError(f'--out {out}: {osp.join(out, name)} was not written by sd-quickstart and lies where '
                              'it writes; move it (nothing was deleted)')
    remove_written(out, own)
    record_written(out, TOOL, [], forget=own)


@contextlib.contextmanager
def owned_run(out, fresh):
    """Record every file that appears under ``out`` during the block as written by sd-quickstart, whatever ends the
    block. When a ConfigError (a refusal) ends it in a folder this run made (``fresh``), remove those files, the
    marker and the folder instead: a refused run leaves nothing behind."""
    before = files_under(out)
    try:
        yield
    except ConfigError:
        if fresh:
            remove_written(out, (files_under(out) - before) | {MARKER, WRITTEN})
            with contextlib.suppress(OSError):
                os.rmdir(out)
            raise
        record_written(out, TOOL, files_under(out) - before - {WRITTEN})
        raise
    except BaseException:
        record_written(out, TOOL, files_under(out) - before - {WRITTEN})
        raise
    record_written(out, TOOL, files_under(out) - before - {WRITTEN})


def skimage_image(name):
    """The scikit-image sample image ``name`` (one of SKIMAGE_TRAIN / SKIMAGE_VAL), RGB uint8 (grey: 2-D)."""
    import skimage.data
    return SKIMAGE_LOADERS[name](skimage.data) if name in SKIMAGE_LOADERS else getattr(skimage.data, name)()


def write_hr_images(out, data_dir):
    """Write the HR images to ``out/hr/train`` and ``out/hr/val``: scikit-image's bundled colour images, or the
    images of ``data_dir`` (the last tenth, at least one, sorted by name, for validation)."""
    folders = {split: osp.join(out, 'hr', split) for split in ('train', 'val')}
    for folder in folders.values():
        os.makedirs(folder)
    if data_dir is None:
        for split, names in (('train', SKIMAGE_TRAIN), ('val', SKIMAGE_VAL)):
            for name in names:
                img = skimage_image(name)
                write_image(osp.join(folders[split], f'{name}.png'), img[..., ::-1] if img.ndim == 3 else img)
        return folders
    for split, names in split_data(data_dir).items():
        for name in names:
            shutil.copy(osp.join(data_dir, name), folders[split])
    return folders


def split_data(data_dir):
    """{'train': names, 'val': names} of the images of ``data_dir``: the last tenth (at least one), sorted by name,
    for validation."""
    if not osp.isdir(data_dir):
        raise ConfigError(f'--data {data_dir}: no such folder')
    files = sorted(f for f in os.listdir(data_dir) if f.lower().endswith(IMAGE_EXTENSIONS))
    if len(files) < 2:
        raise ConfigError(f'--data {data_dir}: needs at least 2 images (found {len(files)})')
    n_val = max(1, len(files) // 10)
    return {'train': files[:-n_val], 'val': files[-n_val:]}


def check_data_sizes(data_dir, gt_size):
    """Before anything is written: every training image holds a ``gt_size`` patch (after cropping to a multiple of
    the scale) and every validation image is large enough to measure (sd-eval's SSIM after a border of the scale)."""
    from sd_plugin.evaluation.protocol import SSIM_WINDOW
    from sd_plugin.preflight import image_size
    if data_dir is None:
        sizes = {split: [(name, skimage_image(name).shape[1::-1]) for name in names]
                 for split, names in (('train', SKIMAGE_TRAIN), ('val', SKIMAGE_VAL))}
    else:
        sizes = {split: [(osp.join(data_dir, name), image_size(osp.join(data_dir, name))) for name in names]
                 for split, names in split_data(data_dir).items()}
    where = f'--data {data_dir}' if data_dir else 'the bundled sample images'
    for name, (width, height) in sizes['train']:
        if min(width, height) // SCALE * SCALE < gt_size:
            raise ConfigError(f'--gt-size {gt_size}: larger than the training image {name} ({width}x{height}) of '
                              f'{where}; use a smaller --gt-size or larger images')
    for name, (width, height) in sizes['val']:
        if min(width, height) // SCALE * SCALE < SSIM_WINDOW + 2 * SCALE:
            raise ConfigError(f'{where}: the validation image {name} is {width}x{height}; it must be at least '
                              f'{SSIM_WINDOW + 2 * SCALE} px per side to be measured (SSIM after a {SCALE} px border)')


def training_options(out, iters, num_feat, num_block, exit_depth, gt_size, lr, train_count):
    """BasicSR option dict: SelfDistillSRModel, SRResNetMultiExit(num_block, exits=[exit_depth]), x4, on CPU, on
    the ``train_count`` sub-images of ``out/data/train``, enlarged so that one epoch covers the run. The learning rate
    is halved for the last quarter of the iterations."""
    train, val = osp.join(out, 'data', 'train'), osp.join(out, 'data', 'val')
    enlarge = max(1, math.ceil(iters * BATCH / max(1, train_count)))
    return {
        'name': 'quickstart_sd', 'model_type': 'SelfDistillSRModel', 'scale': SCALE, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'quickstart_train', 'type': 'PairedImageDataset',
                      'dataroot_gt': osp.join(train, 'HR_sub'),
                      'dataroot_lq': osp.join(train, 'LR_bicubic', f'X{SCALE}_sub'), 'filename_tmpl': '{}',
                      'io_backend': {'type': 'disk'}, 'gt_size': gt_size, 'use_hflip': True, 'use_rot': True,
                      'num_worker_per_gpu': 0, 'batch_size_per_gpu': BATCH, 'dataset_enlarge_ratio': enlarge},
            'val': {'name': 'quickstart_val', 'type': 'PairedImageDataset',
                    'dataroot_gt': osp.join(val, f'GTmod{SCALE}'), 'dataroot_lq': osp.join(val, f'LRbicx{SCALE}'),
                    'io_backend': {'type': 'disk'}},
        },
        'network_g': {'type': 'SRResNetMultiExit', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': num_feat,
                      'num_block': num_block, 'upscale': SCALE, 'exits': [exit_depth]},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': lr, 'weight_decay': 0, 'betas': [0.9, 0.99]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [max(1, iters * 3 // 4)], 'gamma': 0.5},
            'total_iter': iters,
            'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
            'self_distill': {'student_pixel_weight': 0.9, 'distill_opt': {'type': 'L1DistillLoss', 'loss_weight': 0.1}},
        },
        'val': {'val_freq': iters, 'save_img': True,  # also logs a picture to TensorBoard (images/quickstart_val)
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': SCALE, 'test_y_channel': True}}},
        'logger': {'print_freq': 10, 'save_checkpoint_freq': iters, 'use_tb_logger': True},
    }


class ProgressBar(logging.Handler):
    """Turns BasicSR's training log lines (``... iter:  1,230, ...``) into a tqdm bar."""

    def __init__(self, total):
        super().__init__(logging.INFO)
        self.bar = tqdm(total=total, unit='iter', desc='training')

    def emit(self, record):
        found = re.search(r'iter:\s*([\d,]+),.*?l_pix: (\S+)', record.getMessage())
        if found:
            self.bar.update(int(found.group(1).replace(',', '')) - self.bar.n)
            self.bar.set_postfix(l_pix=found.group(2))


def train(out, options):
    """Run BasicSR's train_pipeline rooted at ``out``, its console log replaced by a progress bar (the full log is
    in ``out/train.log``)."""
    opt_path = osp.join(out, 'quickstart_sd.yml')
    atomic_write(opt_path, lambda f: yaml.safe_dump(options, f, sort_keys=False), mode='w')
    logger = get_root_logger(logger_name='basicsr', log_file=osp.join(out, 'train.log'))
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)
    progress = ProgressBar(options['train']['total_iter'])
    logger.addHandler(progress)
    argv, sys.argv = sys.argv, ['sd-train', '-opt', opt_path]
    from basicsr.train import train_pipeline
    try:
        train_pipeline(out)
    finally:
        sys.argv = argv
        progress.bar.close()
        logger.removeHandler(progress)
    return osp.join(out, 'experiments', options['name'], 'models', 'net_g_latest.pth')


@one_line_errors('sd-quickstart')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='sd-quickstart', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='examples:\n  sd-quickstart\n  sd-quickstart --data ~/my_hr_photos '
                                     '--iters 2000 --out my_quickstart')
    parser.add_argument('--data', default=None, help='folder of your own HR images (default: scikit-image samples)')
    parser.add_argument('--out', default='quickstart', help='output folder, rewritten (default: ./quickstart)')
    parser.add_argument('--iters', type=int, default=400, help='training iterations (default: 400)')
    parser.add_argument('--feat', type=int, default=32, help='features (default: 32; the paper: 64)')
    parser.add_argument('--blocks', type=int, default=16, help='teacher depth (default: 16; the paper: 32)')
    parser.add_argument('--exit', type=int, default=4, dest='exit_depth', help='student depth (default: 4; paper: 8)')
    parser.add_argument('--gt-size', type=int, default=64, help='GT patch size, a multiple of 4 (default: 64)')
    parser.add_argument('--lr', type=float, default=5e-4, help='Adam learning rate (default: 5e-4, halved for the '
                        'last quarter)')
    parser.add_argument('--threads', default='auto', help='torch CPU threads, or auto (default): OMP_NUM_THREADS if '
                        'set, else the cores idle at the start, at least 1 (one thread per core is several times '
                        'slower on a machine busy with other work)')
    args = parse_with_imports(parser, argv)
    begin = time.time()
    threads = apply_threads(args.threads, prog='sd-quickstart')  # --threads N, else OMP_NUM_THREADS, else idle cores
    if args.iters < 1:
        raise ConfigError(f'--iters {args.iters}: must be >= 1')
    if args.gt_size < SCALE or args.gt_size % SCALE:
        raise ConfigError(f'--gt-size {args.gt_size}: must be a positive multiple of {SCALE}')
    if not args.lr > 0:
        raise ConfigError(f'--lr {args.lr}: must be > 0')
    SRResNetMultiExit(num_feat=args.feat, num_block=args.blocks, exits=[args.exit_depth])  # checks them early
    out = osp.abspath(args.out)
    check_apart({'--out': out}, {'--data': args.data})
    check_data_sizes(args.data, args.gt_size)
    compat.install()
    fresh = not osp.lexists(out)
    if claim_folder(out, TOOL):  # an earlier quickstart's folder: replace only what it wrote
        clear_earlier_run(out)
    with owned_run(out, fresh):  # records what this run writes; a refused fresh run removes it all
        hr = write_hr_images(out, args.data)
        sub_image = max(SUB_IMAGE, args.gt_size)
        train_data = prepare_folder(hr['train'], 'quickstart_train', osp.join(out, 'data', 'train'), SCALE,
                                    subimages=True, crop=sub_image, step=sub_image)
        prepare_benchmark(hr['val'], 'val', osp.join(out, 'data', 'val'), [SCALE])
        options = training_options(out, args.iters, args.feat, args.blocks, args.exit_depth, args.gt_size, args.lr,
                                   len(os.listdir(train_data['hr'])))
        start = time.time()
        ckpt = train(out, options)
        train_seconds = time.time() - start

        student = osp.join(out, f'student_exit{args.exit_depth}_x{SCALE}.pth')
        arch = export(ckpt, args.exit_depth, student)
        val_dir = osp.join(out, 'data', 'val')
        first = sorted(os.listdir(osp.join(val_dir, f'LRbicx{SCALE}')))[0]  # sd-prepare writes <stem>.png
        lr_path, gt_path = osp.join(val_dir, f'LRbicx{SCALE}', first), osp.join(val_dir, f'GTmod{SCALE}', first)
        lr_first = read_image(lr_path)
        records = evaluate([student, ckpt], osp.join(out, 'data'), ['val'], SCALE, names=['student (exported)', 'sd'],
                           lr_size=(lr_first.shape[1], lr_first.shape[0]), latency=True, log=lambda *_: None)
        upscaled, comparison, psnrs = picture(out, student, ckpt, lr_path, gt_path)
        total_seconds = time.time() - begin
        summary = {'iters': args.iters, 'train_seconds': train_seconds, 'total_seconds': total_seconds,
                   'threads': threads['threads'], 'threads_chosen_by': threads['line'],
                   'records': records, 'upscaled': upscaled, 'comparison': comparison, 'comparison_psnr': psnrs}
        atomic_write(osp.join(out, 'quickstart.json'), lambda f: json.dump(summary, f, indent=2), mode='w')
        print(f'\ntrained {args.iters} iterations in {train_seconds:.0f} s ({threads["line"]}); validation: '
              f'{", ".join(sorted(os.listdir(hr["val"])))}; rows "sd": exit {args.exit_depth} and the '
              f'{args.blocks}-block teacher of the trained checkpoint')
        print(markdown_table(records))
        bicubic = next(r['psnr'] for r in records if r['model'] == 'bicubic')
        if max(r['psnr'] for r in records if r['model'] != 'bicubic') < bicubic:
            print('\nNote: the networks are still close to where an SRResNet starts, its bilinear skip, which scores '
                  'below bicubic. Train longer (e.g. --iters 1000) to see them learn.')
        print(f'\nstudent checkpoint (stock BasicSR MSRResNet, network_g: {arch}):\n  {student}')
        print(f'{first} upscaled x{SCALE} by the student (as sd-upscale does):\n  {upscaled}')
        print(f'comparison picture of {first} (HR | bicubic | student: exit {args.exit_depth} | teacher: '
              f'{args.blocks} blocks; PSNR of the whole image, as sd-eval):'
              f'\n  {comparison}')
        print(f'\nsd-quickstart finished in {total_seconds:.0f} s')


def picture(out, student, ckpt, lr_path, gt_path):
    """Upscale the LR image ``lr_path`` with the exported student by sd-upscale's code path, written to
    ``out/upscaled/<stem>_x4.png``, and draw the comparison picture ``out/comparison.png`` (HR, bicubic, student,
    teacher) of it. Returns (upscaled path, picture path, {panel: PSNR of the whole image})."""
    upscaler = Upscaler(student, tile=UPSCALE_TILE)  # sd-upscale's per-image work
    net = upscaler.net
    upscaled = osp.join(out, 'upscaled', f'{osp.splitext(osp.basename(lr_path))[0]}_x{SCALE}.png')
    write_image(upscaled, upscaler.upscale(read_image(lr_path)))
    hr, lr = read_rgb(gt_path), read_rgb(lr_path)
    teacher, _ = load_model(ckpt)
    outputs = [('student', model_output(net, lr)), ('teacher', model_output(teacher, lr))]
    grid, _, psnrs = comparison_grid(hr, lr, outputs)
    comparison = osp.join(out, 'comparison.png')
    write_image(comparison, np.ascontiguousarray(grid[..., ::-1]))
    return upscaled, comparison, psnrs


if __name__ == '__main__':
    main()
