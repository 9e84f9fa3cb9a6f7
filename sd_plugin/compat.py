"""How the plugin hooks into BasicSR 1.4.2, all in this one file.

``import sd_plugin`` runs only ``register_torchvision_alias`` (below) and registers the plugin's components; it
changes nothing else in BasicSR. The plugin's launchers (``sd-train``, ``sd-test``, ``python sd_plugin/train.py``,
``sd-quickstart``, ``sd-study``) then call ``install()``, which replaces these BasicSR functions and methods and
lists them (``INSTALLED``) at the top of the training log:

in ``basicsr.train`` / ``basicsr.test`` (what ``train_pipeline`` / ``test_pipeline`` call):
  * ``parse_options``: first checks the command line (``-opt`` is a readable YAML mapping, read safely, with the
    keys BasicSR's parser needs; ``--force_yml`` entries are ``a:b=value`` with existing keys and plain values), then
    BasicSR's parser, then ``sd_plugin.preflight.check_options``. A bad option ends the run in one line, before any
    folder is made.
  * ``load_resume_state``: BasicSR maps the state onto ``torch.cuda.current_device()`` unconditionally (resuming
    crashes without CUDA) and ``--auto_resume`` looks in ``experiments/<name>`` relative to the working directory.
    Ours loads onto the run's device, from the experiment root ``parse_options`` computed, and with
    ``--auto_resume`` falls back to the newest intact (state, model) pair when the newest is damaged, setting the
    damaged file aside as ``<name>.damaged`` and removing the temporary files a killed save of its own left.
  * ``build_dataset`` / ``EnlargedSampler`` / ``create_train_val_dataloader``: ``sd_plugin.data.resumable``, so that
    every sample's augmentation is seeded from (seed, epoch, position) and a resumed run replays the data exactly.
    ``create_train_val_dataloader`` also counts epochs by the batches the loader gives (it drops the last partial
    batch), so that exactly ``train.total_iter`` iterations run.
in ``basicsr.models.sr_model`` (``SRModel`` and its subclasses):
  * ``imwrite`` of validation images (``val.save_img``): BasicSR writes in place and fails naming no file; ours
    writes atomically and a failed write ends the run in one line naming the file.
in ``basicsr.utils.options``:
  * ``init_dist``: BasicSR assumes NCCL and CUDA; without CUDA ours uses gloo.
  * ``ordered_yaml``: BasicSR's loader constructs any Python object a tag names (``!!python/object/apply:os.system``
    runs a command). Ours returns ``sd_plugin.yamlio.SafeOrderedLoader``: plain data in order, Python tags refused.
  * ``_postprocess_yml_value``: BasicSR ``eval``s a ``--force_yml`` list; ours reads it with ``ast.literal_eval``.
in ``BaseModel`` (every model):
  * ``save_network`` / ``save_training_state``: BasicSR writes straight to the final name, and after three failed
    attempts logs "Just ignore it" and trains on. Ours write atomically (``sd_plugin.files.atomic_write``) and end
    the run with ``CheckpointSaveError`` naming the file. The training state also keeps the best-metric records.
  * ``resume_training``: also restores the best-metric records.
  * ``model_to_device``: BasicSR passes ``device_ids=[torch.cuda.current_device()]`` to DDP; without CUDA, CPU DDP.

In the BasicSR-checkout drop-in (``sd-basicsr-dropin``), ``python basicsr/train.py`` runs its own copy of
``train_pipeline`` as ``__main__`` and none of this is installed: see the README's drop-in section.
"""
import contextlib
import functools
import os
import re
import sys
import types
from os import path as osp

import torch

from sd_plugin.errors import CheckpointSaveError, ConfigError

SUPPORTED_BASICSR = '1.4.2'


def register_torchvision_alias():
    """Make ``import torchvision.transforms.functional_tensor`` work again (torchvision >= 0.17). Idempotent."""
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        __import__(name)
    except ImportError:
        from torchvision.transforms import functional
        alias = types.ModuleType(name, 'sd_plugin alias: torchvision >= 0.17 removed this module.')
        alias.rgb_to_grayscale = functional.rgb_to_grayscale
        sys.modules[name] = alias


def basicsr_import_finished():
    """False while ``import basicsr`` is still running, i.e. when BasicSR's own registry scan imports a drop-in
    module that imports us (see ``sd_plugin.tools.dropin``). Then ``basicsr.models`` cannot be imported yet."""
    module = sys.modules.get('basicsr')
    return module is None or hasattr(module, '__version__')  # basicsr/__init__.py sets __version__ last


# ----------------------------------------------------------------------------------------- parse_options


def check_command_line(argv, is_train=True):
    """The parts of BasicSR's command line that its parser would turn into a traceback or run as code: ``-opt``
    must name a readable YAML file holding a mapping, read safely (``sd_plugin.yamlio``: a Python tag is refused
    before BasicSR's parser reads the file) with the keys BasicSR's parser needs (``preflight.check_before_parse``);
    each ``--force_yml`` entry must be ``key:key=value`` with existing sections and a value BasicSR can read. The
    modules of its ``custom_imports`` are imported first (``sd_plugin.imports``)."""
    from sd_plugin.imports import KEY, import_modules, yaml_imports
    from sd_plugin.preflight import check_before_parse
    from sd_plugin.yamlio import load_yaml
    args = list(argv[1:])
    if '-opt' not in args or args.index('-opt') + 1 >= len(args):
        return None  # BasicSR's argparse says what is missing
    opt_path = args[args.index('-opt') + 1]
    if not osp.exists(opt_path):
        raise ConfigError(f'-opt {opt_path}: no such file')
    if not osp.isfile(opt_path):
        raise ConfigError(f'-opt {opt_path}: is a folder, not an options file')
    opt = load_yaml(opt_path, '-opt')
    if not isinstance(opt, dict):
        kind = 'empty' if opt is None else f'a {type(opt).__name__}'
        raise ConfigError(f'-opt {opt_path}: is {kind}; an options file is a mapping of keys (name, model_type, ...)')
    import_modules(yaml_imports(opt), KEY)  # a user's archs and adapters, before any check names them
    check_before_parse(opt, is_train)
    if '--force_yml' in args:
        for entry in args[args.index('--force_yml') + 1:]:
            if entry.startswith('-'):
                break
            check_force_yml(entry, opt)
    return opt


FORCE_YML_KEY = re.compile(r'[^"\\\x00-\x1f]+')  # BasicSR exec()s opt["key"]...=value: no quote, backslash, newline


def check_force_yml(entry, opt):
    """One ``--force_yml`` entry: ``a:b:c=value`` where ``opt[a][b]`` is a mapping (BasicSR creates no new
    sections), every key plain text (BasicSR pastes the keys into code it ``exec``s) and the value one that
    ``postprocess_yml_value`` reads (a list is a Python literal, ``!!float x`` a number)."""
    import ast
    if entry.count('=') != 1 or not entry.split('=')[0].strip():
        raise ConfigError(f'--force_yml {entry}: expected key:key=value, e.g. train:ema_decay=0.999')
    keys = [k.strip() for k in entry.split('=')[0].split(':')]
    for key in keys:
        if not FORCE_YML_KEY.fullmatch(key):
            raise ConfigError(f'--force_yml {entry}: the key {key!r} must be plain text (no quote, backslash or '
                              'line break)')
    node = opt
    for depth, key in enumerate(keys[:-1]):
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError(f'--force_yml {entry}: {":".join(keys[:depth + 1])} is not a section of the options')
    value = entry.split('=')[1].strip()
    try:
        if value.startswith('['):
            ast.literal_eval(value)
        elif value.startswith('!!float'):
            float(value.replace('!!float', ''))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ConfigError(f'--force_yml {entry}: the value {value!r} is not a list of plain values (e.g. [4, 8]) '
                          'or a number') from None


def postprocess_yml_value(value, _original=None):
    """``basicsr.utils.options._postprocess_yml_value`` (a ``--force_yml`` value), reading a list with
    ``ast.literal_eval`` where BasicSR ``eval``s it (which runs any code)."""
    import ast
    if value.startswith('['):
        return ast.literal_eval(value)
    return _original(value)


def ordered_yaml(_original=None):
    """``basicsr.utils.options.ordered_yaml``: the same (Loader, Dumper), with ``sd_plugin.yamlio``'s safe loader,
    so that BasicSR's parser reads an options file as data (its loader runs ``!!python/object/apply`` tags)."""
    from sd_plugin.yamlio import SafeOrderedLoader
    return SafeOrderedLoader, _original()[1]


def parse_options(root_path, is_train=True, _original=None):
    """``basicsr.utils.options.parse_options``, between ``check_command_line`` and ``preflight.check_options``."""
    from sd_plugin.preflight import check_options
    check_command_line(sys.argv, is_train)
    opt, args = _original(root_path, is_train)
    check_options(opt)
    return opt, args


# ----------------------------------------------------------------------------------------- resume


def _iters(folder, suffix):
    if not osp.isdir(folder):
        return []
    return sorted((int(f[:-len(suffix)]) for f in os.listdir(folder) if f.endswith(suffix) and
                   f[:-len(suffix)].isdigit()), reverse=True)


def _loads(path, device):
    try:
        return torch.load(path, map_location=device)
    except Exception:  # torch raises many types for a truncated file
        return None


def _set_aside(path):
    os.replace(path, path + '.damaged')
    return path + '.damaged'


# the final names BasicSR's save_network / save_training_state write in models/ and training_states/
SAVED_NAMES = {'models': re.compile(r'net_g(_ema)?_(\d+|latest)\.pth'), 'training_states': re.compile(r'\d+\.state')}


def remove_leftover_tmp(opt):
    """Delete the temporary files that a save killed midway left in the run's models/ and training_states/:
    ``.<final name>.<random>.tmp`` (``sd_plugin.files.is_leftover_tmp``) of a checkpoint or state name that the
    run writes (``SAVED_NAMES``); any other file, hidden or not, is left alone. Returns the paths removed."""
    from sd_plugin.files import is_leftover_tmp
    removed = []
    for key, saved in SAVED_NAMES.items():
        folder = opt['path'].get(key)
        if folder and osp.isdir(folder):
            for name in os.listdir(folder):
                final = name[1:].rsplit('.', 2)[0] if name.count('.') >= 3 else ''
                random_part = name.rsplit('.', 2)[-2] if name.count('.') >= 3 else ''
                if (saved.fullmatch(final) and re.fullmatch(r'[a-z0-9_]{8}', random_part)
                        and is_leftover_tmp(name, [final]) and osp.isfile(osp.join(folder, name))):
                    os.remove(osp.join(folder, name))
                    removed.append(osp.join(folder, name))
    return removed


def newest_intact_state(opt, device, notes):
    """(path, loaded state) of the newest ``<iter>.state`` that loads and whose ``net_g_<iter>.pth`` loads too, or
    None; a damaged file of a newer pair is set aside (``.damaged``) and the fallback noted in ``notes``."""
    states, models = opt['path']['training_states'], opt['path']['models']
    for it in _iters(states, '.state'):
        state_path, model_path = osp.join(states, f'{it}.state'), osp.join(models, f'net_g_{it}.pth')
        loaded = {p: _loads(p, device) if osp.isfile(p) else None for p in (state_path, model_path)}
        damaged = [p for p, value in loaded.items() if value is None]
        if not damaged:
            return state_path, loaded[state_path]
        for path in damaged:
            if osp.isfile(path):
                notes.append(f'resume: {path} is damaged; set aside as {_set_aside(path)}')
            else:
                notes.append(f'resume: {path} is missing')
        notes.append(f'resume: skipping iteration {it}, trying the previous checkpoint')
    return None


RESUMED_AT = {}  # path of the resumed training state -> (epoch, iter), set by load_resume_state


def load_resume_state(opt):
    """Replacement for ``basicsr.train.load_resume_state``.

    Args:
        opt (dict): parsed options. Reads ``auto_resume``, ``num_gpu``, ``path.training_states``, ``path.models``
            and ``path.resume_state``; sets ``path.resume_state`` (and, through ``check_resume``, the
            ``pretrain_network_*`` paths) when it resumes, and ``sd_plugin_notes`` (list of str) for the log.
    Returns:
        dict | None: the training state (``epoch``, ``iter``, ``optimizers``, ``schedulers``), or None for a new run.
    """
    from basicsr.utils import check_resume

    from sd_plugin.preflight import check_resume_network
    device = torch.device('cuda', torch.cuda.current_device()) if opt['num_gpu'] != 0 else torch.device('cpu')
    notes = opt.setdefault('sd_plugin_notes', [])
    state = None
    if opt['auto_resume']:
        notes += [f'resume: removed {p}, left by an interrupted save' for p in remove_leftover_tmp(opt)]
        latest = newest_intact_state(opt, device, notes)
        if latest is not None:
            opt['path']['resume_state'], state = latest
    path = opt['path'].get('resume_state')
    if not path:
        return None
    if not osp.isfile(path):
        raise ConfigError(f'path.resume_state={path}: no such file')
    if state is None:  # else newest_intact_state has read it: the file is read once
        state = _loads(path, device)
    if not isinstance(state, dict) or 'iter' not in state:
        raise ConfigError(f'path.resume_state={path}: not a readable training state')
    check_resume(opt, state['iter'])
    check_resume_network(opt)
    RESUMED_AT[path] = (state['epoch'], state['iter'])  # for create_train_val_dataloader, without reading it again
    return state


# ----------------------------------------------------------------------------------------- data


def build_dataset(dataset_opt):
    """``basicsr.data.build_dataset``, wrapped in ``SeededDataset`` (per-sample augmentation seeds for the training
    set, file names in load errors for every set)."""
    from basicsr.data import build_dataset as basicsr_build_dataset

    from sd_plugin.data.resumable import SeededDataset
    return SeededDataset(basicsr_build_dataset(dataset_opt), dataset_opt.get('manual_seed', 0))


def exact_total_epochs(result, logger):
    """``create_train_val_dataloader``'s result with ``total_epochs`` counted from the batches the training loader
    gives. BasicSR counts ceil(N / batch) iterations per epoch but its loader drops the last partial batch
    (``drop_last``), so with 3 images and batch 2 ``total_iter: 20`` stopped at iteration 11."""
    import math
    train_loader, sampler, val_loaders, total_epochs, total_iters = result
    batches = len(train_loader)  # preflight.check_options refused a batch larger than a training set it could count
    if batches == 0:
        raise ConfigError(f'datasets.train.batch_size_per_gpu={train_loader.batch_size}: more than the '
                          f'{len(sampler)} training samples per GPU; the loader drops a partial batch, so no iteration '
                          'would run')
    exact = math.ceil(total_iters / batches)
    if exact != total_epochs:
        logger.info(f'sd_plugin: the training loader drops the last partial batch: {batches} iterations per epoch, '
                    f'{exact} epochs for {total_iters} iterations')
    return train_loader, sampler, val_loaders, exact, total_iters


def create_train_val_dataloader(opt, logger, _original=None):
    """``basicsr.train.create_train_val_dataloader``; it first logs what ``install`` changed, the torch threads and any
    resume notes, then, on resume, makes the sampler skip the samples of the resumed epoch that the interrupted run
    trained on."""
    logger.info('sd_plugin installed into basicsr %s:\n  %s', SUPPORTED_BASICSR, '\n  '.join(INSTALLED))
    from sd_plugin import threads
    if threads.CHOICE:  # the launcher's choice of torch threads (sd_plugin.threads.apply_threads), into the log file
        logger.info('torch CPU threads: %s', threads.CHOICE['line'])
    for note in opt.get('sd_plugin_notes', []):
        logger.warning(note)
    for dataset_opt in opt['datasets'].values():
        dataset_opt.setdefault('manual_seed', opt['manual_seed'])
    result = _original(opt, logger)
    result = exact_total_epochs(result, logger)
    sampler, resume_path = result[1], opt['path'].get('resume_state')
    if resume_path and sampler is not None:
        if resume_path not in RESUMED_AT:  # a state that load_resume_state did not read
            state = torch.load(resume_path, map_location='cpu')
            RESUMED_AT[resume_path] = (state['epoch'], state['iter'])
        epoch, it = RESUMED_AT.pop(resume_path)
        batch = opt['datasets']['train']['batch_size_per_gpu']
        batches_per_epoch = len(sampler) // batch  # the DataLoader drops the last partial batch
        done = it - epoch * batches_per_epoch
        sampler.resume_at = (epoch, done * batch)
    return result


# ----------------------------------------------------------------------------------------- saving


@contextlib.contextmanager
def atomic_torch_save(extra=None):
    """Within the block, ``torch.save(obj, path)`` writes ``path`` atomically, with ``extra`` (a dict) merged into
    ``obj``. Yields a dict {path: the exception of its last failed attempt}; a later successful attempt clears it."""
    from sd_plugin.checkpoint import atomic_save
    original, failed = torch.save, {}

    def save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return original(obj, f, *args, **kwargs)
        if extra and isinstance(obj, dict):
            obj = {**obj, **extra}
        try:
            atomic_save(obj, f, save=lambda obj_, file_: original(obj_, file_, *args, **kwargs))
        except Exception as err:
            failed[str(f)] = err
            raise
        failed.pop(str(f), None)

    torch.save = save
    try:
        yield failed
    finally:
        torch.save = original


def _raise_failed(failed):
    """Raise CheckpointSaveError for the first path whose every save attempt failed, with the reason and the free
    space on its disk."""
    import shutil
    for path, err in failed.items():
        err = getattr(err, 'cause', err)  # a WriteError names the error it wraps
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
        reason = reason if len(reason) <= 100 else reason[:97] + '...'
        try:
            free = f'; {shutil.disk_usage(osp.dirname(osp.abspath(path))).free / 2**20:.0f} MiB free there'
        except OSError:
            free = ''
        raise CheckpointSaveError(f'cannot save {path} ({type(err).__name__}: {reason}){free}; the run stopped, '
                                  'the previous checkpoint is intact')


def write_validation_image(img, file_path, params=None, auto_mkdir=True):
    """``basicsr.utils.imwrite`` as ``SRModel.nondist_validation`` calls it (``val.save_img``): BasicSR writes in
    place and fails with ``IOError('Failed in writing images.')``, naming no file. Ours writes atomically through
    ``sd_plugin.imageio.write_image``: a failed write ends the run in one line naming the file."""
    from sd_plugin.imageio import write_image
    write_image(file_path, img, params)


def save_network(self, *args, _original=None, **kwargs):
    """``BaseModel.save_network``, atomic, and failing the run when BasicSR's retries all failed."""
    with atomic_torch_save() as failed:
        _original(self, *args, **kwargs)
    _raise_failed(failed)


def save_training_state(self, epoch, current_iter, _original=None):
    """``BaseModel.save_training_state``, atomic, failing the run when it cannot save, and keeping
    ``best_metric_results`` (the "Best ... @ iter" records) in the state."""
    extra = None
    if hasattr(self, 'best_metric_results'):  # plain Python values: the state must load with weights_only=True
        extra = {'best_metric_results': {
            dataset: {metric: {'better': str(r['better']), 'val': float(r['val']), 'iter': int(r['iter'])}
                      for metric, r in records.items()}
            for dataset, records in self.best_metric_results.items()}}
    with atomic_torch_save(extra) as failed:
        _original(self, epoch, current_iter)
    _raise_failed(failed)


def resume_training(self, resume_state, _original=None):
    """``BaseModel.resume_training``, also restoring the best-metric records."""
    _original(self, resume_state)
    if 'best_metric_results' in resume_state:
        self.best_metric_results = resume_state['best_metric_results']


# ----------------------------------------------------------------------------------------- distributed


def model_to_device(self, net, _original=None):
    """``BaseModel.model_to_device``, with CPU DDP (no ``device_ids``) when training distributed without CUDA."""
    if self.opt['dist'] and self.device.type == 'cpu':
        from torch.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(net.to(self.device),
                                       find_unused_parameters=self.opt.get('find_unused_parameters', False))
    return _original(self, net)


def init_dist(launcher, backend='nccl', _original=None, **kwargs):
    """``basicsr.utils.dist_util.init_dist``, with the gloo backend when CUDA is absent."""
    import torch.distributed as dist
    if torch.cuda.is_available() and backend != 'gloo':
        return _original(launcher, backend, **kwargs)
    if launcher != 'pytorch':
        raise ConfigError(f'--launcher {launcher}: without CUDA only --launcher pytorch (torchrun) is supported')
    dist.init_process_group(backend='gloo')


# ----------------------------------------------------------------------------------------- install

INSTALLED = []  # what install() replaced, one line each; filled once


def install():
    """Install the fixes and checks above into basicsr (idempotent); returns the list of what was replaced.
    Refuses another basicsr version than the one they were written for."""
    import basicsr
    if INSTALLED:
        return INSTALLED
    if basicsr.__version__ != SUPPORTED_BASICSR:
        raise ConfigError(f'basicsr {basicsr.__version__} is installed; sd_plugin\'s fixes are written for '
                          f'{SUPPORTED_BASICSR} (pip install --no-build-isolation basicsr=={SUPPORTED_BASICSR})')
    import basicsr.test
    import basicsr.train
    import basicsr.utils.options
    from basicsr.models.base_model import BaseModel

    import sd_plugin.models  # noqa: F401  (registers SelfDistillSRModel)
    from sd_plugin.data.resumable import ResumableSampler

    def replace(owner, name, new, note, method=False, wrap=True):
        old = getattr(owner, name)
        if wrap:
            new = (functools.partialmethod if method else functools.partial)(new, _original=old)
        setattr(owner, name, new)
        INSTALLED.append(f'{getattr(owner, "__name__", owner)}.{name}: {note}')

    for module in (basicsr.train, basicsr.test):
        replace(module, 'parse_options', parse_options, 'option checks before any folder is made')
    replace(basicsr.train, 'load_resume_state', load_resume_state, 'CPU resume, fallback to the newest intact '
            'checkpoint', wrap=False)
    replace(basicsr.train, 'build_dataset', build_dataset, 'per-sample seeded augmentation', wrap=False)
    replace(basicsr.train, 'EnlargedSampler', ResumableSampler, 'a sampler that resumes mid-epoch', wrap=False)
    replace(basicsr.train, 'create_train_val_dataloader', create_train_val_dataloader, 'resumed epochs skip the '
            'samples already trained on')
    replace(basicsr.utils.options, 'init_dist', init_dist, 'gloo without CUDA')
    replace(basicsr.utils.options, 'ordered_yaml', ordered_yaml, 'options are read as data (a safe loader that '
            'refuses Python tags)')
    replace(basicsr.utils.options, '_postprocess_yml_value', postprocess_yml_value, '--force_yml lists are read as '
            'literals, not eval()ed')
    import basicsr.models.sr_model
    replace(basicsr.models.sr_model, 'imwrite', write_validation_image, 'validation images written atomically; a '
            'failed write names the file', wrap=False)
    replace(BaseModel, 'save_network', save_network, 'atomic; a failed save stops the run', method=True)
    replace(BaseModel, 'save_training_state', save_training_state, 'atomic, with best-metric records; a failed '
            'save stops the run', method=True)
    replace(BaseModel, 'resume_training', resume_training, 'restores best-metric records', method=True)
    replace(BaseModel, 'model_to_device', model_to_device, 'CPU DDP without CUDA', method=True)
    return INSTALLED
