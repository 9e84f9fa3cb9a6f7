"""Check a parsed BasicSR option dict before BasicSR creates any folder or starts training.

Everything here raises ``ConfigError`` with a one-line message naming the key, value or file. ``check_options`` runs
from ``sd_plugin.compat.load_resume_state``, the first thing ``train_pipeline`` does after parsing the options.
"""
import difflib
import inspect
import os
import re
from os import path as osp

import torch
from basicsr.data.data_util import paired_paths_from_folder
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
from PIL import Image
from tqdm import tqdm

from sd_plugin.checkpoint import load_checkpoint, params
from sd_plugin.errors import ConfigError

MISPLACED = {'distill_opt': 'train.self_distill.distill_opt',
             'student_pixel_weight': 'train.self_distill.student_pixel_weight'}


def did_you_mean(word, choices):
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f'; did you mean {close[0]!r}?' if close else ''


def registered(registry, key, name):
    """Raise ConfigError unless ``name`` is registered in ``registry``; ``key`` names the YAML key."""
    if name not in registry:
        hint = did_you_mean(name, [registered_name for registered_name, _ in registry])
        raise ConfigError(f'{key}={name!r}: not registered in BasicSR or sd_plugin{hint}')


def build_network(network_opt):
    """The network of ``network_opt`` (checks its arguments), with unknown arguments reported by name."""
    network_opt = dict(network_opt)
    cls = ARCH_REGISTRY.get(network_opt.pop('type'))
    known = inspect.signature(cls.__init__).parameters
    for key in network_opt:
        if key not in known:
            raise ConfigError(f'network_g.{key}: not an argument of {cls.__name__}{did_you_mean(key, known)}')
    return cls(**network_opt)


def check_options(opt):
    """Validate the parts of ``opt`` the plugin owns, and those BasicSR would only reject deep inside a run."""
    from sd_plugin.models.self_distill_sr_model import self_distill_options, speed_options

    num_gpu = opt.get('num_gpu')
    if num_gpu != 0 and not torch.cuda.is_available():
        raise ConfigError(f'num_gpu={num_gpu!r}: CUDA is not available here; use num_gpu: 0 (CPU) or auto')
    registered(MODEL_REGISTRY, 'model_type', opt.get('model_type'))
    registered(ARCH_REGISTRY, 'network_g.type', (opt.get('network_g') or {}).get('type'))
    net = build_network(opt['network_g'])
    upscale = getattr(net, 'upscale', None)
    if upscale is not None and opt.get('scale') != upscale:
        raise ConfigError(f'scale={opt.get("scale")!r}: network_g.upscale is {upscale}; they must be equal')
    train_opt = opt.get('train') or {}
    for key, place in MISPLACED.items():
        if key in train_opt:
            raise ConfigError(f'train.{key}: belongs under {place}')
    if opt['model_type'] == 'SelfDistillSRModel' and opt.get('is_train'):
        self_distill_options(train_opt, getattr(net, 'exits', []))
        speed_options(train_opt, 'cpu' if num_gpu == 0 else 'cuda')
    for phase, dataset_opt in opt['datasets'].items():
        check_dataset(f'datasets.{phase}', dataset_opt, opt.get('scale', 1))


def check_dataset(key, dataset_opt, scale):
    """Folders exist, LMDBs have ``meta_info.txt``, every image is readable and each GT is ``scale`` x its LQ."""
    roots = {k: dataset_opt[k] for k in ('dataroot_gt', 'dataroot_lq') if dataset_opt.get(k) is not None}
    for root_key, root in roots.items():
        if not osp.isdir(root):
            raise ConfigError(f'{key}.{root_key}={root}: no such folder')
    if (dataset_opt.get('io_backend') or {}).get('type') == 'lmdb':
        sizes = {root_key: lmdb_sizes(f'{key}.{root_key}', root) for root_key, root in roots.items()}
        pairs = [(k, sizes['dataroot_gt'][k], sizes['dataroot_lq'].get(k)) for k in sizes.get('dataroot_gt', {})]
        names = ('dataroot_gt', 'dataroot_lq')
    elif len(roots) == 2:
        try:
            paths = paired_paths_from_folder([roots['dataroot_lq'], roots['dataroot_gt']], ['lq', 'gt'],
                                             dataset_opt.get('filename_tmpl', '{}'))
        except AssertionError as err:
            raise ConfigError(f'{key}: GT and LQ folders do not pair up ({err})') from None
        pairs = [(p['gt_path'], image_size(p['gt_path']), image_size(p['lq_path'])) for p in
                 tqdm(paths, desc=f'checking {key}', unit='pair', disable=len(paths) < 2000)]
        names = ('gt_path', 'lq_path')
    else:
        for root in roots.values():
            for name in sorted(os.listdir(root)):
                image_size(osp.join(root, name))
        return
    for gt, gt_size, lq_size in pairs:
        if lq_size is None or gt_size != (lq_size[0] * scale, lq_size[1] * scale):
            raise ConfigError(f'{key}: {gt} is {gt_size[0]}x{gt_size[1]} but its LQ is '
                              f'{"missing" if lq_size is None else f"{lq_size[0]}x{lq_size[1]}"}; with scale '
                              f'{scale} the GT must be exactly {scale}x the LQ ({names[0]} vs {names[1]})')


def image_size(path):
    """(width, height) of an image file, after checking that the file is an intact image."""
    try:
        with Image.open(path) as img:
            size = img.size
            img.verify()
        return size
    except Exception as err:
        raise ConfigError(f'{path}: corrupt or unreadable image ({type(err).__name__})') from None


def lmdb_sizes(key, root):
    """{lmdb key: (width, height)} from an LMDB's ``meta_info.txt`` (lines like ``0001_s001.png (480,480,3) 1``)."""
    meta = osp.join(root, 'meta_info.txt')
    if not osp.isfile(meta):
        raise ConfigError(f'{key}={root}: LMDB without meta_info.txt (make it with sd-prepare or '
                          'basicsr.utils.lmdb_util)')
    sizes = {}
    with open(meta) as f:
        for line in f:
            found = re.match(r'(\S+) \((\d+),(\d+),\d+\)', line)
            if found:
                sizes[osp.splitext(found.group(1))[0]] = (int(found.group(3)), int(found.group(2)))
    return sizes


def check_resume_network(opt):
    """After ``check_resume`` pointed ``path.pretrain_network_g`` at the resumed checkpoint: it must have been saved
    by the same ``network_g`` (same keys and shapes), or resuming would fail deep inside ``load_state_dict``."""
    ckpt_path = opt['path'].get('pretrain_network_g')
    if not ckpt_path:
        return
    saved = params(load_checkpoint(ckpt_path), 'params', ckpt_path)
    expected = build_network(opt['network_g']).state_dict()
    for name in sorted(set(expected) | set(saved)):
        if name not in saved or name not in expected or saved[name].shape != expected[name].shape:
            raise ConfigError(f'path.resume_state={opt["path"]["resume_state"]}: saved for a different network_g '
                              f'({name}: saved {tuple(saved[name].shape) if name in saved else "absent"}, '
                              f'network_g {tuple(expected[name].shape) if name in expected else "absent"})')
