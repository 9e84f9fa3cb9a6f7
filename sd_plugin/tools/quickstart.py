"""sd-quickstart: the whole method in a few minutes on CPU, on colour images that scikit-image ships (no download).

It prepares a tiny paired x4 data set (``sd-prepare``), trains a self-distilled SRResNet (teacher and one exit) with
BasicSR's own ``train_pipeline``, exports the exit as a stock ``MSRResNet`` checkpoint (``sd-export``), and prints
sd-eval's table: bicubic, the exported student, the exit and the teacher, with PSNR / SSIM (Y channel, border 4, the
literature's protocol), parameters, MACs and CPU latency on the first validation image. The defaults are a scaled-down
model (32 features, teacher of 16 blocks, exit after block 4) trained for 1,200 iterations, about 3 minutes on 2
cores; ``--feat 64 --blocks 32 --exit 8`` is the paper's model. An SRResNet starts as its bilinear skip (below
bicubic) and needs on the order of a thousand iterations to leave it: runs of 300-800 iterations stayed at bilinear,
1,200 beat bicubic by 0.3 dB. Everything goes under ``--out``: a new or empty folder, or one an earlier
``sd-quickstart`` made (it carries a marker file); a rerun replaces only what ``sd-quickstart`` writes there.
"""
import argparse
import json
import logging
import os
import re
import shutil
import sys
import time
from os import path as osp

import cv2
import yaml
from basicsr.utils import get_root_logger
from tqdm import tqdm

import sd_plugin  # noqa: F401  (registrations)
from sd_plugin import compat
from sd_plugin.archs import SRResNetMultiExit
from sd_plugin.cli import one_line_errors
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.protocol import evaluate
from sd_plugin.evaluation.report import markdown_table
from sd_plugin.export import export
from sd_plugin.files import check_apart, claim_folder
from sd_plugin.imageio import IMAGE_EXTENSIONS
from sd_plugin.prepare import prepare_benchmark, prepare_folder

SCALE = 4
SKIMAGE_TRAIN = ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'colorwheel')
SKIMAGE_VAL = ('chelsea', 'coffee')
# What sd-quickstart writes under --out; a rerun removes these and nothing else.
OUTPUTS = ('hr', 'data', 'experiments', 'tb_logger', 'train.log', 'quickstart_sd.yml', 'quickstart.json')


def write_hr_images(out, data_dir):
    """Write the HR images to ``out/hr/train`` and ``out/hr/val``: scikit-image's bundled colour images, or the
    images of ``data_dir`` (the last tenth, at least one, sorted by name, for validation)."""
    folders = {split: osp.join(out, 'hr', split) for split in ('train', 'val')}
    for folder in folders.values():
        os.makedirs(folder)
    if data_dir is None:
        import skimage.data
        for split, names in (('train', SKIMAGE_TRAIN), ('val', SKIMAGE_VAL)):
            for name in names:
                cv2.imwrite(osp.join(folders[split], f'{name}.png'), getattr(skimage.data, name)()[..., ::-1])
        return folders
    if not osp.isdir(data_dir):
        raise ConfigError(f'--data {data_dir}: no such folder')
    files = sorted(f for f in os.listdir(data_dir) if f.lower().endswith(IMAGE_EXTENSIONS))
    if len(files) < 2:
        raise ConfigError(f'--data {data_dir}: needs at least 2 images (found {len(files)})')
    n_val = max(1, len(files) // 10)
    for i, name in enumerate(files):
        shutil.copy(osp.join(data_dir, name), folders['val' if i >= len(files) - n_val else 'train'])
    return folders


def training_options(out, iters, num_feat, num_block, exit_depth, gt_size, lr):
    """BasicSR option dict: SelfDistillSRModel, SRResNetMultiExit(num_block, exits=[exit_depth]), x4, on CPU."""
    train, val = osp.join(out, 'data', 'train'), osp.join(out, 'data', 'val')
    return {
        'name': 'quickstart_sd', 'model_type': 'SelfDistillSRModel', 'scale': SCALE, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'quickstart_train', 'type': 'PairedImageDataset',
                      'dataroot_gt': osp.join(train, 'HR'), 'dataroot_lq': osp.join(train, 'LR_bicubic', f'X{SCALE}'),
                      'filename_tmpl': '{}', 'io_backend': {'type': 'disk'}, 'gt_size': gt_size, 'use_hflip': True,
                      'use_rot': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 4, 'dataset_enlarge_ratio': 50},
            'val': {'name': 'quickstart_val', 'type': 'PairedImageDataset',
                    'dataroot_gt': osp.join(val, f'GTmod{SCALE}'), 'dataroot_lq': osp.join(val, f'LRbicx{SCALE}'),
                    'io_backend': {'type': 'disk'}},
        },
        'network_g': {'type': 'SRResNetMultiExit', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': num_feat,
                      'num_block': num_block, 'upscale': SCALE, 'exits': [exit_depth]},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {
            'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': lr, 'weight_decay': 0, 'betas': [0.9, 0.99]},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [iters], 'gamma': 0.5}, 'total_iter': iters,
            'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'},
            'self_distill': {'student_pixel_weight': 0.9, 'distill_opt': {'type': 'L1DistillLoss', 'loss_weight': 0.1}},
        },
        'val': {'val_freq': iters, 'save_img': False,
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
    with open(opt_path, 'w') as f:
        yaml.safe_dump(options, f, sort_keys=False)
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
    parser.add_argument('--iters', type=int, default=1200, help='training iterations (default: 1200)')
    parser.add_argument('--feat', type=int, default=32, help='features (default: 32; the paper: 64)')
    parser.add_argument('--blocks', type=int, default=16, help='teacher depth (default: 16; the paper: 32)')
    parser.add_argument('--exit', type=int, default=4, dest='exit_depth', help='student depth (default: 4; paper: 8)')
    parser.add_argument('--gt-size', type=int, default=64, help='GT patch size (default: 64)')
    parser.add_argument('--lr', type=float, default=5e-4, help='Adam learning rate (default: 5e-4)')
    args = parser.parse_args(argv)
    if args.iters < 1:
        raise ConfigError(f'--iters {args.iters}: must be >= 1')
    SRResNetMultiExit(num_feat=args.feat, num_block=args.blocks, exits=[args.exit_depth])  # checks them early
    out = osp.abspath(args.out)
    check_apart({'--out': out}, {'--data': args.data})
    compat.install()
    if claim_folder(out, 'sd-quickstart'):  # an earlier quickstart's folder: replace only what it wrote
        for name in [*OUTPUTS, *(f for f in os.listdir(out) if re.fullmatch(r'student_exit\d+_x\d+\.pth', f))]:
            path = osp.join(out, name)
            if osp.isdir(path) and not osp.islink(path):
                shutil.rmtree(path)
            elif osp.lexists(path):
                os.remove(path)
    hr = write_hr_images(out, args.data)
    prepare_folder(hr['train'], 'quickstart_train', osp.join(out, 'data', 'train'), SCALE)
    prepare_benchmark(hr['val'], 'val', osp.join(out, 'data', 'val'), [SCALE])
    options = training_options(out, args.iters, args.feat, args.blocks, args.exit_depth, args.gt_size, args.lr)
    start = time.time()
    ckpt = train(out, options)
    train_seconds = time.time() - start

    student = osp.join(out, f'student_exit{args.exit_depth}_x{SCALE}.pth')
    arch = export(ckpt, args.exit_depth, student)
    lr_dir = osp.join(out, 'data', 'val', f'LRbicx{SCALE}')
    lr_first = cv2.imread(osp.join(lr_dir, sorted(os.listdir(lr_dir))[0]))  # sd-prepare writes <stem>.png
    records = evaluate([student, ckpt], osp.join(out, 'data'), ['val'], SCALE, names=['student (exported)', 'sd'],
                       lr_size=(lr_first.shape[1], lr_first.shape[0]), latency=True, log=lambda *_: None)
    with open(osp.join(out, 'quickstart.json'), 'w') as f:
        json.dump({'iters': args.iters, 'train_seconds': train_seconds, 'records': records}, f, indent=2)
    print(f'\ntrained {args.iters} iterations in {train_seconds:.0f} s; validation: '
          f'{", ".join(sorted(os.listdir(hr["val"])))}; rows "sd": exit {args.exit_depth} and the {args.blocks}-block '
          'teacher of the trained checkpoint')
    print(markdown_table(records))
    bicubic = next(r['psnr'] for r in records if r['model'] == 'bicubic')
    if max(r['psnr'] for r in records if r['model'] != 'bicubic') < bicubic:
        print('\nNote: the networks are still close to where an SRResNet starts, its bilinear skip, which scores below '
              'bicubic. Train longer (--iters 3000) to see them learn.')
    print(f'\nstudent checkpoint (stock BasicSR MSRResNet, network_g: {arch}):\n  {student}')


if __name__ == '__main__':
    main()
