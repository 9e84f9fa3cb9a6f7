"""Check a parsed BasicSR option dict before BasicSR creates any folder or starts training.

Everything here raises ``ConfigError`` with a one-line message naming the key, value or file. ``check_options`` runs
inside ``parse_options`` once ``sd_plugin.compat.install`` has run (``sd-train``, ``sd-test``), right after BasicSR
has read the YAML and before ``train_pipeline`` / ``test_pipeline`` make any folder.
"""
import inspect
import numbers
import os
import re
import sys
from os import path as osp

import torch
from basicsr.data.data_util import paired_paths_from_folder
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
from PIL import Image
from tqdm import tqdm

from sd_plugin.checkpoint import load_checkpoint, params
from sd_plugin.errors import ConfigError
from sd_plugin.text import did_you_mean

MISPLACED = {'distill_opt': 'train.self_distill.distill_opt',
             'student_pixel_weight': 'train.self_distill.student_pixel_weight'}


def registered(registry, key, name):
    """Raise ConfigError unless ``name`` is registered in ``registry``; ``key`` names the YAML key."""
    if name not in registry:
        hint = did_you_mean(name, [registered_name for registered_name, _ in registry])
        raise ConfigError(f'{key}={name!r}: not registered in BasicSR or sd_plugin{hint}')


NETWORK_SHAPES = {}  # repr(network_g options) -> {parameter name: meta tensor of its shape}: check_options builds
# network_g once, and check_resume_network compares a resumed checkpoint with these shapes instead of building it again


def build_network(network_opt):
    """The network of ``network_opt`` (checks its arguments), with unknown arguments reported by name."""
    network_opt = dict(network_opt)
    cls = ARCH_REGISTRY.get(network_opt.pop('type'))
    known = inspect.signature(cls.__init__).parameters
    for key in network_opt:
        if key not in known:
            raise ConfigError(f'network_g.{key}: not an argument of {cls.__name__}{did_you_mean(key, known)}')
    return cls(**network_opt)


TOP_LEVEL_KEYS = ('name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'network_d',
                  'path', 'train', 'val', 'logger', 'dist_params', 'find_unused_parameters', 'use_static_graph',
                  'cudnn_benchmark', 'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path',
                  'sd_plugin_notes')

# (key path, kind) of every option the plugin's models and BasicSR's training loop read as a number or a switch.
# Kinds: 'count' a whole number >= 1; 'index' a whole number >= 0; 'int' any whole number; 'positive' a number > 0;
# 'number' any number; 'fraction' a number in [0, 1); 'bool' true/false; 'list' a list. Absent keys are not checked.
TYPED_KEYS = [
    ('scale', 'count'), ('manual_seed', 'int'), ('network_g.num_in_ch', 'count'), ('network_g.num_out_ch', 'count'),
    ('network_g.num_feat', 'count'), ('network_g.num_block', 'count'), ('network_g.upscale', 'count'),
    ('network_g.exits', 'list'), ('path.strict_load_g', 'bool'),
    ('train.total_iter', 'count'), ('train.warmup_iter', 'int'), ('train.ema_decay', 'fraction'),
    ('train.optim_g.lr', 'positive'), ('train.optim_g.weight_decay', 'number'), ('train.optim_g.betas', 'list'),
    ('train.scheduler.milestones', 'list'), ('train.scheduler.gamma', 'positive'),
    ('train.scheduler.periods', 'list'), ('train.scheduler.restart_weights', 'list'),
    ('train.scheduler.eta_min', 'number'), ('train.pixel_opt.loss_weight', 'number'),
    ('val.val_freq', 'count'), ('val.save_img', 'bool'),
    ('logger.print_freq', 'count'), ('logger.save_checkpoint_freq', 'count'), ('logger.use_tb_logger', 'bool'),
]
TYPED_DATASET_KEYS = [('batch_size_per_gpu', 'count'), ('num_worker_per_gpu', 'index'), ('gt_size', 'count'),
                      ('dataset_enlarge_ratio', 'count'), ('use_hflip', 'bool'), ('use_rot', 'bool')]
TYPED_METRIC_KEYS = [('crop_border', 'index'), ('test_y_channel', 'bool')]
KIND_TEXT = {'count': 'a whole number >= 1', 'index': 'a whole number >= 0', 'int': 'a whole number',
             'positive': 'a number > 0', 'number': 'a number', 'fraction': 'a number in [0, 1)',
             'bool': 'true or false', 'list': 'a list, e.g. [8]'}


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value  # not NaN


def _fits(value, kind):
    if kind == 'bool':
        return isinstance(value, bool)
    if kind == 'list':
        return isinstance(value, (list, tuple))
    if not _is_number(value):
        return False
    whole = float(value).is_integer()
    return {'count': whole and value >= 1, 'index': whole and value >= 0, 'int': whole, 'positive': value > 0,
            'number': abs(value) < float('inf'), 'fraction': 0 <= value < 1}[kind]


def check_type(key, value, kind):
    """Raise ConfigError unless ``value`` (the option at ``key``) is of ``kind`` (see TYPED_KEYS)."""
    if _fits(value, kind):
        return
    hint = ''
    if isinstance(value, str):
        try:
            float(value)
            hint = (f'; YAML reads {value} as a string: write it with a decimal point (e.g. 1.0e-4) or as '
                    f'!!float {value}')
        except ValueError:
            pass
    elif isinstance(value, bool):
        hint = '; true/false is not a number'
    raise ConfigError(f'{key}={value!r}: must be {KIND_TEXT[kind]}{hint}')


def _get(opt, dotted):
    node = opt
    for part in dotted.split('.'):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_types(opt):
    """Every option of TYPED_KEYS (and of each dataset and metric) that is present has the right type and range;
    the lists hold what they should."""
    for key, kind in TYPED_KEYS:
        value = _get(opt, key)
        if value is not None:
            check_type(key, value, kind)
    for key, elem_kind in (('network_g.exits', 'count'), ('train.scheduler.milestones', 'count'),
                           ('train.scheduler.periods', 'count'), ('train.scheduler.restart_weights', 'number'),
                           ('train.optim_g.betas', 'fraction')):
        for i, value in enumerate(_get(opt, key) or []):
            check_type(f'{key}[{i}]', value, elem_kind)
    betas = _get(opt, 'train.optim_g.betas')
    if betas is not None and len(betas) != 2:
        raise ConfigError(f'train.optim_g.betas={betas!r}: must be two numbers, e.g. [0.9, 0.99]')
    datasets = opt.get('datasets')
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError(f'datasets={datasets!r}: must be a mapping of phases (train, val, ...) to data sets')
    for phase, dataset_opt in datasets.items():
        if not isinstance(dataset_opt, dict):
            raise ConfigError(f'datasets.{phase}={dataset_opt!r}: must be a mapping (name, type, dataroot_gt, ...)')
        for key, kind in TYPED_DATASET_KEYS:
            if dataset_opt.get(key) is not None:
                check_type(f'datasets.{phase}.{key}', dataset_opt[key], kind)
    for name, metric in ((_get(opt, 'val.metrics') or {}).items()):
        for key, kind in TYPED_METRIC_KEYS:
            if isinstance(metric, dict) and metric.get(key) is not None:
                check_type(f'val.metrics.{name}.{key}', metric[key], kind)


def warn_unknown_top_level_keys(opt, out=None):
    """Print a warning for each top-level key BasicSR and the plugin do not read (a typo like ``trian:``)."""
    for key in opt:
        if key not in TOP_LEVEL_KEYS:
            hint = did_you_mean(key, TOP_LEVEL_KEYS)
            print(f'warning: unknown top-level option {key!r} is ignored{hint}', file=out or sys.stderr)


def memory_bytes():
    """Memory a run can use: the first GPU's when CUDA is available, else the machine's RAM."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def training_memory_estimate(network_opt, batch, lr_size):
    """A lower bound, in bytes, of the memory an SRResNet(MultiExit) training step needs: fp32 weights, gradients
    and Adam's two moments, plus the activations kept for the backward pass (4 feature maps per residual block at
    LR, about 72 LR-sized maps per x4 head; counted once forward and once for the gradients)."""
    feat, blocks = network_opt.get('num_feat', 64), network_opt.get('num_block', 16)
    heads = 1 + len(network_opt.get('exits') or [])
    in_ch, out_ch = network_opt.get('num_in_ch', 3), network_opt.get('num_out_ch', 3)
    params = 9 * in_ch * feat + blocks * 2 * 9 * feat * feat + heads * (9 * feat * 4 * feat * 2 + 9 * feat * feat +
                                                                         9 * feat * out_ch)
    activations = batch * feat * lr_size * lr_size * (4 * blocks + 72 * heads)
    return 4 * (4 * params + 2 * activations)


def check_memory(opt):
    """Refuse a depth, width or batch whose training step cannot fit in this machine's memory, with the estimate."""
    network_opt, train = opt.get('network_g') or {}, _get(opt, 'datasets.train') or {}
    if network_opt.get('type') not in ('SRResNetMultiExit', 'MSRResNet') or not opt.get('is_train'):
        return
    batch, gt_size = train.get('batch_size_per_gpu', 1), train.get('gt_size', 96)
    need = training_memory_estimate(network_opt, batch, gt_size // opt.get('scale', 4))
    have = memory_bytes()
    if need > have:
        raise ConfigError(f'network_g (num_feat={network_opt.get("num_feat")}, num_block={network_opt.get("num_block")}'
                          f') with batch_size_per_gpu={batch}, gt_size={gt_size}: a training step needs at least '
                          f'{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB here')


def check_pretrained(opt, net):
    """``path.pretrain_network_g`` (when set) is a readable checkpoint with ``path.param_key_g`` whose tensors fit
    ``network_g`` (the same keys when ``strict_load_g``, the same shapes for the keys both have)."""
    path_opt = opt.get('path') or {}
    ckpt_path = path_opt.get('pretrain_network_g')
    if not ckpt_path:
        return
    key = 'path.pretrain_network_g'
    if not isinstance(ckpt_path, str) or not osp.isfile(ckpt_path):
        raise ConfigError(f'{key}={ckpt_path}: no such file')
    try:
        ckpt = load_checkpoint(ckpt_path)
    except ConfigError as err:
        raise ConfigError(f'{key}={ckpt_path}: {str(err).split(": ", 1)[-1]}') from None
    param_key = path_opt.get('param_key_g', 'params')
    saved = ckpt.get(param_key) if param_key in ckpt else ckpt
    if not isinstance(saved, dict) or not all(hasattr(v, 'shape') for v in saved.values()):
        raise ConfigError(f'{key}={ckpt_path}: no {param_key!r} state dict in it (path.param_key_g)')
    saved = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in saved.items()}
    expected = net.state_dict()
    strict = path_opt.get('strict_load_g', True)
    for name in sorted(set(expected) | set(saved)):
        if name in saved and name in expected:
            if tuple(saved[name].shape) != tuple(expected[name].shape):
                raise ConfigError(f'{key}={ckpt_path}: saved for another network_g ({name}: saved '
                                  f'{tuple(saved[name].shape)}, network_g {tuple(expected[name].shape)})')
        elif strict:
            where = 'absent from the file' if name in expected else 'not in network_g'
            raise ConfigError(f'{key}={ckpt_path}: saved for another network_g ({name} is {where}; '
                              'set path.strict_load_g: false to load what fits)')


def check_options(opt):
    """Validate the options BasicSR and the plugin read, before any folder is made; warn about unknown keys."""
    from sd_plugin.models.self_distill_sr_model import self_distill_options, speed_options

    warn_unknown_top_level_keys(opt)
    num_gpu = opt.get('num_gpu')
    if isinstance(num_gpu, bool) or not isinstance(num_gpu, int) or num_gpu < 0:
        raise ConfigError(f'num_gpu={num_gpu!r}: must be a whole number >= 0, or auto')
    if num_gpu != 0 and not torch.cuda.is_available():
        raise ConfigError(f'num_gpu={num_gpu!r}: CUDA is not available here; use num_gpu: 0 (CPU) or auto')
    for key in ('network_g', 'datasets') + (('train',) if opt.get('is_train') else ()):
        if not isinstance(opt.get(key), dict):
            raise ConfigError(f'{key}: missing or not a mapping')
    check_types(opt)
    registered(MODEL_REGISTRY, 'model_type', opt.get('model_type'))
    registered(ARCH_REGISTRY, 'network_g.type', opt['network_g'].get('type'))
    check_memory(opt)
    net = build_network(opt['network_g'])
    NETWORK_SHAPES[repr(opt['network_g'])] = {k: torch.empty(v.shape, device='meta')
                                              for k, v in net.state_dict().items()}
    upscale = getattr(net, 'upscale', None)
    if upscale is not None and opt.get('scale') != upscale:
        raise ConfigError(f'scale={opt.get("scale")!r}: network_g.upscale is {upscale}; they must be equal')
    gt_size, scale = _get(opt, 'datasets.train.gt_size'), opt.get('scale')
    if opt.get('is_train') and gt_size is not None and gt_size % scale:
        raise ConfigError(f'datasets.train.gt_size={gt_size}: must be a multiple of scale={scale}')
    check_pretrained(opt, net)
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
    expected = NETWORK_SHAPES.get(repr(opt['network_g'])) or build_network(opt['network_g']).state_dict()
    for name in sorted(set(expected) | set(saved)):
        if name not in saved or name not in expected or saved[name].shape != expected[name].shape:
            raise ConfigError(f'path.resume_state={opt["path"]["resume_state"]}: saved for a different network_g '
                              f'({name}: saved {tuple(saved[name].shape) if name in saved else "absent"}, '
                              f'network_g {tuple(expected[name].shape) if name in expected else "absent"})')
