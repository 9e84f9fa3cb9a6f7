"""Check a parsed BasicSR option dict before BasicSR creates any folder or starts training.

Everything here raises ``ConfigError`` with a one-line message naming the key, value or file. ``check_options`` runs
inside ``parse_options`` once ``sd_plugin.compat.install`` has run (``sd-train``, ``sd-test``), right after BasicSR
has read the YAML and before ``train_pipeline`` / ``test_pipeline`` make any folder; ``check_before_parse`` runs
earlier, on the YAML as read, on what BasicSR's parser itself needs. The checks are tables: ``REQUIRED_KEYS``,
``TYPED_KEYS`` (types and ranges), ``TYPED_NAMES`` (each ``type`` against BasicSR's registries, with "did you mean"),
and the data (readable pairs, a full batch, patches that fit, validation images large enough for the metrics).
"""
import numbers
import os
import re
import sys
from os import path as osp

import torch
from basicsr.data.data_util import paired_paths_from_folder
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY
from PIL import Image
from tqdm import tqdm

from sd_plugin.checkpoint import load_checkpoint, params
from sd_plugin.errors import ConfigError
from sd_plugin.names import plain_name
from sd_plugin.registries import registry_name
from sd_plugin.text import did_you_mean

MISPLACED = {'distill_opt': 'train.self_distill.distill_opt',
             'student_pixel_weight': 'train.self_distill.student_pixel_weight'}


def registered(registry, key, name, where='BasicSR or sd_plugin'):
    """Raise ConfigError unless ``name`` is registered in ``registry`` (a BasicSR Registry, or a tuple of the names
    ``where`` accepts); ``key`` names the YAML key. A Registry also takes BasicSR's suffixed names
    (``SRVGGNetCompact`` for ``SRVGGNetCompact_basicsr``: ``sd_plugin.registries``)."""
    names = list(registry) if isinstance(registry, tuple) else [registered_name for registered_name, _ in registry]
    if name not in names and (isinstance(registry, tuple) or registry_name(registry, name) is None):
        hint = did_you_mean(name, names)
        if isinstance(registry, tuple) and not hint:
            hint = f'; {where} accepts: {", ".join(names)}'
        raise ConfigError(f'{key}={name!r}: not registered in {where}{hint}')


# What BasicSR 1.4.2's BaseModel.get_optimizer and setup_schedulers accept (they are if/else chains, no registry).
OPTIMIZERS = ('Adam',)
SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')
# (key path, registry, where, required) of every ``type`` the run builds; a section that is absent is not checked,
# and a type that is not required may be left out of its section (the plugin's default applies). The datasets' and
# metrics' types are checked in check_registries.
TYPED_NAMES = [
    ('model_type', MODEL_REGISTRY, 'BasicSR or sd_plugin', True),
    ('network_g.type', ARCH_REGISTRY, 'BasicSR or sd_plugin', True),
    ('train.optim_g.type', OPTIMIZERS, "BasicSR 1.4.2's get_optimizer", True),
    ('train.scheduler.type', SCHEDULERS, "BasicSR 1.4.2's setup_schedulers", True),
    ('train.pixel_opt.type', LOSS_REGISTRY, 'BasicSR or sd_plugin', True),
    ('train.perceptual_opt.type', LOSS_REGISTRY, 'BasicSR or sd_plugin', True),
    ('train.self_distill.distill_opt.type', LOSS_REGISTRY, 'BasicSR or sd_plugin', False),
    ('train.self_distill.feature_distill_opt.type', LOSS_REGISTRY, 'BasicSR or sd_plugin', False),
]


def check_registries(opt):
    """Every ``type`` the run builds (model, network, optimizer, scheduler, losses, each data set, each metric) is
    one BasicSR or the plugin knows, with the closest known name when it is not."""
    for key, registry, where, required in TYPED_NAMES:
        section, _, last = key.rpartition('.')
        parent = _get(opt, section) if section else opt
        if isinstance(parent, dict) and (required or last in parent):
            registered(registry, key, parent.get(last), where)
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        registered(DATASET_REGISTRY, f'datasets.{phase}.type', dataset_opt.get('type'))
    for name, metric in (_get(opt, 'val.metrics') or {}).items():
        if not isinstance(metric, dict):
            raise ConfigError(f'val.metrics.{name}={metric!r}: must be a mapping (type, crop_border, ...)')
        registered(METRIC_REGISTRY, f'val.metrics.{name}.type', metric.get('type'))


NETWORK_SHAPES = {}  # repr(network_g options) -> {parameter name: meta tensor of its shape}: check_options builds
# network_g once, and check_resume_network compares a resumed checkpoint with these shapes instead of building it again


def build_network(network_opt):
    """The network of ``network_opt`` (checks its arguments), with unknown and missing arguments reported by name,
    and an error of the arch's own code in one line (``multi_exit_arch.build_stock``)."""
    from sd_plugin.archs.multi_exit_arch import build_stock
    return build_stock(network_opt, 'network_g')


TOP_LEVEL_KEYS = ('name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'network_d',
                  'path', 'train', 'val', 'logger', 'dist_params', 'find_unused_parameters', 'use_static_graph',
                  'cudnn_benchmark', 'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path',
                  'sd_plugin_notes', 'custom_imports')

# (key path, kind) of every option the plugin's models and BasicSR's training loop read as a number or a switch.
# Kinds: 'count' a whole number >= 1; 'index' a whole number >= 0; 'int' any whole number; 'positive' a number > 0;
# 'number' any number; 'fraction' a number in [0, 1); 'bool' true/false; 'list' a list. Absent keys are not checked.
# (key path, kind) of every option the plugin's models and BasicSR's training loop read as a number or a switch.
# Kinds: 'count' an integer >= 1; 'index' an integer >= 0; 'seed' an integer in [0, 2**32): sizes, indices and
# seeds, which must be written as integers (4, not 4.0 or "4"). 'iter' a whole number >= 1 and 'int' any whole
# number: iteration counts, which BasicSR only compares and takes modulo, so BasicSR's own ``!!float 5e3`` is fine.
# 'positive' a finite number > 0; 'nonneg' a finite number >= 0; 'number' any finite number; 'fraction' a number in
# [0, 1); 'bool' true/false; 'list' a list. Absent keys are not checked.
TYPED_KEYS = [
    ('scale', 'count'), ('manual_seed', 'seed'), ('network_g.num_in_ch', 'count'), ('network_g.num_out_ch', 'count'),
    ('network_g.num_feat', 'count'), ('network_g.num_block', 'count'), ('network_g.upscale', 'count'),
    ('network_g.exits', 'list'), ('path.strict_load_g', 'bool'),
    ('train.total_iter', 'iter'), ('train.warmup_iter', 'int'), ('train.ema_decay', 'fraction'),
    ('train.optim_g.lr', 'positive'), ('train.optim_g.weight_decay', 'nonneg'), ('train.optim_g.betas', 'list'),
    ('train.optim_g.eps', 'positive'),
    ('train.scheduler.milestones', 'list'), ('train.scheduler.gamma', 'positive'),
    ('train.scheduler.periods', 'list'), ('train.scheduler.restart_weights', 'list'),
    ('train.scheduler.eta_min', 'nonneg'), ('train.pixel_opt.loss_weight', 'number'),
    ('val.val_freq', 'iter'), ('val.save_img', 'bool'),
    ('logger.print_freq', 'iter'), ('logger.save_checkpoint_freq', 'iter'), ('logger.use_tb_logger', 'bool'),
]
TYPED_DATASET_KEYS = [('batch_size_per_gpu', 'count'), ('num_worker_per_gpu', 'index'), ('gt_size', 'count'),
                      ('dataset_enlarge_ratio', 'count'), ('use_hflip', 'bool'), ('use_rot', 'bool')]
TYPED_METRIC_KEYS = [('crop_border', 'index'), ('test_y_channel', 'bool')]
KIND_TEXT = {'count': 'a whole number >= 1', 'index': 'a whole number >= 0', 'int': 'a whole number',
             'iter': 'a whole number >= 1',
             'seed': 'a whole number in [0, 2**32)', 'positive': 'a finite number > 0',
             'nonneg': 'a finite number >= 0', 'number': 'a finite number', 'fraction': 'a number in [0, 1)',
             'bool': 'true or false', 'list': 'a list, e.g. [8]'}
WHOLE_KINDS = ('count', 'index', 'int', 'iter', 'seed')
INTEGER_KINDS = ('count', 'index', 'seed')  # used as sizes, indices or seeds: a float breaks them later


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value  # not NaN


def _fits(value, kind):
    if kind == 'bool':
        return isinstance(value, bool)
    if kind == 'list':
        return isinstance(value, (list, tuple))
    if not _is_number(value) or abs(value) == float('inf'):
        return False
    if kind in WHOLE_KINDS:
        if not float(value).is_integer() or (kind in INTEGER_KINDS and not isinstance(value, numbers.Integral)):
            return False
        return {'count': value >= 1, 'index': value >= 0, 'int': True, 'iter': value >= 1,
                'seed': 0 <= value < 2**32}[kind]
    return {'positive': value > 0, 'nonneg': value >= 0, 'number': True, 'fraction': 0 <= value < 1}[kind]


def _hint(value, kind):
    """How to write ``value`` so that YAML reads it as ``kind``, when that is the mistake."""
    if isinstance(value, bool):
        return '; true/false is not a number'
    number = None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return ''
    elif _is_number(value):
        number = value
    if number is None or number != number or abs(number) == float('inf'):
        return ''
    as_string = f'YAML reads {value} as a string: ' if isinstance(value, str) else ''
    if kind in WHOLE_KINDS:
        if not float(number).is_integer() or isinstance(value, numbers.Integral):
            return f'; {as_string.rstrip(": ")}' if as_string else ''
        return f'; {as_string}write it as a plain whole number, {int(number)} (no quotes, no decimal point)'
    if as_string:
        return f'; {as_string}write it with a decimal point (e.g. 1.0e-4) or as !!float {value}'
    return ''


def check_type(key, value, kind):
    """Raise ConfigError unless ``value`` (the option at ``key``) is of ``kind`` (see TYPED_KEYS)."""
    if not _fits(value, kind):
        raise ConfigError(f'{key}={value!r}: must be {KIND_TEXT[kind]}{_hint(value, kind)}')


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
    for key, elem_kind in (('network_g.exits', 'count'), ('train.scheduler.milestones', 'iter'),
                           ('train.scheduler.periods', 'iter'), ('train.scheduler.restart_weights', 'number'),
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


# Keys BasicSR's parse_options and pipelines read without a default (a KeyError or TypeError deep inside
# otherwise): (key, what it must be, needed for training, needed for testing).
REQUIRED_KEYS = [('name', 'a plain name', True, True), ('model_type', 'a model name', True, True),
                 ('scale', 'a whole number', True, True), ('num_gpu', 'a whole number or auto', True, True),
                 ('datasets', 'a mapping', True, True), ('network_g', 'a mapping', True, True),
                 ('path', 'a mapping', True, True), ('train', 'a mapping', True, False),
                 ('logger', 'a mapping', True, False), ('val', 'a mapping', False, True)]


def check_string_keys(value, where=''):
    """Every mapping key in the options is a string: BasicSR's option logger (``dict2str``) and its parser end in a
    traceback on ``{4: 3.0}``. A ConfigError names the first other key and where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f'{where or "the options"}: key {key!r} is not a string; BasicSR options need '
                                  f"string keys (write '{key}', or use a list)")
            check_string_keys(item, f'{where}.{key}' if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_string_keys(item, f'{where}[{i}]')


def check_before_parse(opt, is_train=True):
    """What BasicSR's ``parse_options`` needs of the options before it reads them (it would crash, or seed with a
    string): the required keys, ``name`` a plain name (it becomes experiments/<name>), ``manual_seed`` a valid seed,
    ``datasets`` a mapping of phases to mappings and ``path`` a mapping. Runs on the YAML as read, before BasicSR's
    parser; ``check_options`` checks the rest after it."""
    check_string_keys(opt)
    for key, what, train, test in REQUIRED_KEYS:
        if (train if is_train else test) and opt.get(key) is None:
            raise ConfigError(f'{key}: missing; {"a training" if is_train else "a test"} options file needs it '
                              f'({what})')
        if what == 'a mapping' and key in opt and opt[key] is not None and not isinstance(opt[key], dict):
            raise ConfigError(f'{key}={opt[key]!r}: must be a mapping')
    plain_name('name', opt['name'])
    if opt.get('manual_seed') is not None:
        check_type('manual_seed', opt['manual_seed'], 'seed')
    num_gpu = opt.get('num_gpu')
    if num_gpu != 'auto' and (isinstance(num_gpu, bool) or not isinstance(num_gpu, int) or num_gpu < 0):
        raise ConfigError(f'num_gpu={num_gpu!r}: must be a whole number >= 0, or auto')
    for phase, dataset_opt in opt['datasets'].items():
        if not isinstance(dataset_opt, dict):
            raise ConfigError(f'datasets.{phase}={dataset_opt!r}: must be a mapping (name, type, dataroot_gt, ...)')
        if is_train and phase != 'train' and phase.split('_')[0] != 'val':
            raise ConfigError(f'datasets.{phase}: a training run has the phases train and val, val_1, ...')
        if is_train and phase == 'train':
            continue
        plain_name(f'datasets.{phase}.name', dataset_opt.get('name'))  # it names results/visualization folders


def check_option_values(opt, is_train=True):
    """The checks that need no file: ``check_before_parse``, ``check_types`` and ``check_registries``. sd-study runs
    them on every arm before training any."""
    check_before_parse(opt, is_train)
    check_types(opt)
    check_registries(opt)


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
    check_option_values(opt, bool(opt.get('is_train')))  # again: --force_yml may have changed them
    num_gpu = opt.get('num_gpu')
    if num_gpu != 0 and not torch.cuda.is_available():
        raise ConfigError(f'num_gpu={num_gpu!r}: CUDA is not available here; use num_gpu: 0 (CPU) or auto')
    if not opt.get('is_train') and not _get(opt, 'path.pretrain_network_g'):
        raise ConfigError('path.pretrain_network_g: not set; testing would score a randomly initialised network '
                          '(set it to the checkpoint to test)')
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
    check_channels(opt)
    train_opt = opt.get('train') or {}
    for key, place in MISPLACED.items():
        if key in train_opt:
            raise ConfigError(f'train.{key}: belongs under {place}')
    if opt['model_type'] == 'SelfDistillSRModel' and opt.get('is_train'):
        self_distill_options(train_opt, getattr(net, 'exits', []))
        speed_options(train_opt, 'cpu' if num_gpu == 0 else 'cuda')
    for phase, dataset_opt in opt['datasets'].items():
        sizes = check_dataset(f'datasets.{phase}', dataset_opt, opt.get('scale', 1))
        if sizes is not None and phase == 'train' and opt.get('is_train'):
            check_training_set(opt, sizes)
        elif sizes is not None and phase != 'train':
            check_validation_set(f'datasets.{phase}', sizes, _get(opt, 'val.metrics') or {})


def check_channels(opt):
    """The network's input channels (``num_in_ch`` / ``in_chans``, of ``network_g`` or of a wrapper's ``arch``) are
    those of the data: BasicSR's paired datasets give RGB images, one channel with ``color: y``."""
    network_opt = opt.get('network_g') or {}
    prefix, arch = ('network_g.arch', network_opt['arch']) if isinstance(network_opt.get('arch'), dict) else (
        'network_g', network_opt)
    key = next((k for k in ('num_in_ch', 'in_chans') if k in arch), None)
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        channels = 1 if dataset_opt.get('color') == 'y' else 3
        if key is not None and arch[key] != channels:
            raise ConfigError(f'{prefix}.{key}={arch[key]!r}: datasets.{phase} gives {channels}-channel images '
                              f'({"color: y" if channels == 1 else "RGB"})')


def check_training_set(opt, sizes):
    """The training set gives at least one full batch per GPU (BasicSR's loader drops the last partial batch, so a
    larger batch trains 0 iterations), and every GT image holds a ``gt_size`` patch.

    Args:
        sizes (list[tuple[str, tuple[int, int]]]): (GT image, (width, height)) of each training pair.
    """
    import math
    train = opt['datasets']['train']
    batch, ratio = train.get('batch_size_per_gpu', 1), train.get('dataset_enlarge_ratio', 1)
    per_gpu = math.ceil(len(sizes) * ratio / opt.get('world_size', 1))
    if per_gpu < batch:
        raise ConfigError(f'datasets.train.batch_size_per_gpu={batch}: more than the {per_gpu} training samples '
                          f'per GPU ({len(sizes)} pairs x dataset_enlarge_ratio {ratio}); the loader drops a partial '
                          'batch, so no iteration would run')
    gt_size = train.get('gt_size')
    for gt, (width, height) in sizes:
        if gt_size is not None and min(width, height) < gt_size:
            raise ConfigError(f'datasets.train.gt_size={gt_size}: larger than {gt} ({width}x{height}); every '
                              'training image must hold a gt_size x gt_size patch')


def check_validation_set(key, sizes, metrics):
    """Every GT image of a validation or test set is large enough for each metric: ``crop_border`` pixels come off
    every side, and SSIM's 11x11 window needs 11x11 pixels after that (smaller images score NaN)."""
    for name, metric in metrics.items():
        crop = metric.get('crop_border') or 0
        window = 11 if metric.get('type') == 'calculate_ssim' else 1
        for gt, (width, height) in sizes:
            if min(width, height) - 2 * crop < window:
                need = f'SSIM\'s 11x11 window needs {11 + 2 * crop} px' if window == 11 else \
                    f'it needs more than {2 * crop} px'
                raise ConfigError(f'{key}: {gt} is {width}x{height}, too small for val.metrics.{name} '
                                  f'(crop_border {crop} on each side; {need} per side): it would score NaN')


def check_dataset(key, dataset_opt, scale):
    """Folders exist, LMDBs have ``meta_info.txt``, every image is readable and each GT is ``scale`` x its LQ.

    Returns:
        list[tuple[str, tuple[int, int]]] | None: (GT image or LMDB key, (width, height)) of each pair; None for a
        data set without a GT and an LQ folder (sizes unknown).
    """
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
        return None
    for gt, gt_size, lq_size in pairs:
        if lq_size is None or gt_size != (lq_size[0] * scale, lq_size[1] * scale):
            raise ConfigError(f'{key}: {gt} is {gt_size[0]}x{gt_size[1]} but its LQ is '
                              f'{"missing" if lq_size is None else f"{lq_size[0]}x{lq_size[1]}"}; with scale '
                              f'{scale} the GT must be exactly {scale}x the LQ ({names[0]} vs {names[1]})')
    return [(gt, gt_size) for gt, gt_size, _ in pairs]


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
