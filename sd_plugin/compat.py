"""The few fixes stock basicsr 1.4.2 needs, each naming the BasicSR function it mends and why.

``register_torchvision_alias`` runs on ``import sd_plugin``, before anything imports basicsr:
  ``basicsr/data/degradations.py`` imports ``torchvision.transforms.functional_tensor``, which torchvision removed in
  0.17. We register that module name with its one used function, ``rgb_to_grayscale``.

``patch_basicsr`` (also on ``import sd_plugin``, once basicsr can be imported) replaces, in ``basicsr.train``:
  * ``load_resume_state``: BasicSR maps the state onto ``torch.cuda.current_device()`` unconditionally, so resuming
    crashes without CUDA, and ``--auto_resume`` looks in ``experiments/<name>`` relative to the working directory
    instead of the experiment root that ``parse_options`` computed. It is also the first call after the options are
    parsed and before any folder is made, so ours first runs ``sd_plugin.preflight.check_options``.
  * ``build_dataset`` / ``EnlargedSampler`` for the training set: ``sd_plugin.data.resumable``, so that a resumed run
    replays the data exactly (``train_pipeline`` restarts the resumed epoch from its first batch).
  and in BasicSR's models and launcher:
  * ``BaseModel.save_network`` / ``save_training_state`` write with ``torch.save`` straight to the final name, so a
    kill mid-save leaves a truncated newest checkpoint. Ours write a temporary file and rename it.
  * ``BaseModel.model_to_device`` passes ``device_ids=[torch.cuda.current_device()]`` to DDP, and
    ``basicsr.utils.options.init_dist`` assumes NCCL and CUDA. Without CUDA we use gloo and CPU DDP.
"""
import contextlib
import functools
import os
import sys
import types
from os import path as osp

import torch

from sd_plugin.errors import ConfigError

_resume_point = {}  # {'epoch', 'iter'} of the state load_resume_state loaded, for the sampler


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
    module that imports us (see ``sd_plugin.dropin``). Then ``basicsr.models`` and ``basicsr.train`` cannot be
    imported yet."""
    module = sys.modules.get('basicsr')
    return module is None or hasattr(module, '__version__')  # basicsr/__init__.py sets __version__ last


def _latest_state(states_dir):
    """Path of ``<iter>.state`` with the highest iter in ``states_dir``, or None."""
    if not osp.isdir(states_dir):
        return None
    iters = [int(f[:-6]) for f in os.listdir(states_dir) if f.endswith('.state') and f[:-6].isdigit()]
    return osp.join(states_dir, f'{max(iters)}.state') if iters else None


def load_resume_state(opt):
    """Replacement for ``basicsr.train.load_resume_state``: check the options, then load the state to resume from.

    Args:
        opt (dict): parsed options. Reads ``auto_resume``, ``num_gpu``, ``path.training_states`` and
            ``path.resume_state``; sets ``path.resume_state`` (and, through ``check_resume``, the
            ``pretrain_network_*`` paths) when it resumes.
    Returns:
        dict | None: the training state (``epoch``, ``iter``, ``optimizers``, ``schedulers``), or None for a new run.
    """
    from basicsr.utils import check_resume

    from sd_plugin.preflight import check_options, check_resume_network
    check_options(opt)
    if opt['auto_resume']:
        latest = _latest_state(opt['path']['training_states'])
        if latest is not None:
            opt['path']['resume_state'] = latest
    path = opt['path'].get('resume_state')
    if not path:
        return None
    if not osp.isfile(path):
        raise ConfigError(f'path.resume_state={path}: no such file')
    device = torch.device('cuda', torch.cuda.current_device()) if opt['num_gpu'] != 0 else torch.device('cpu')
    try:
        state = torch.load(path, map_location=device)
    except Exception as err:
        raise ConfigError(f'path.resume_state={path}: not a readable training state ({type(err).__name__})') from None
    check_resume(opt, state['iter'])
    check_resume_network(opt)
    _resume_point.update(epoch=state['epoch'], iter=state['iter'])
    return state


def build_dataset(dataset_opt):
    """``basicsr.data.build_dataset``, wrapped in ``SeededDataset`` (per-sample augmentation seeds for the training
    set, file names in load errors for every set)."""
    from basicsr.data import build_dataset as basicsr_build_dataset

    from sd_plugin.data.resumable import SeededDataset
    return SeededDataset(basicsr_build_dataset(dataset_opt), dataset_opt.get('manual_seed', 0))


def create_train_val_dataloader(opt, logger, _original=None):
    """``basicsr.train.create_train_val_dataloader``, then, on resume, skip the samples of the resumed epoch that
    the interrupted run already trained on."""
    for dataset_opt in opt['datasets'].values():
        dataset_opt.setdefault('manual_seed', opt['manual_seed'])
    result = _original(opt, logger)
    sampler = result[1]
    if _resume_point and sampler is not None:
        batch = opt['datasets']['train']['batch_size_per_gpu']
        batches_per_epoch = len(sampler) // batch  # the DataLoader drops the last partial batch
        done = _resume_point['iter'] - _resume_point['epoch'] * batches_per_epoch
        sampler.resume_at = (_resume_point['epoch'], done * batch)
        _resume_point.clear()
    return result


@contextlib.contextmanager
def atomic_torch_save():
    """Within the block, ``torch.save(obj, path)`` writes ``path`` atomically (``checkpoint.atomic_save``)."""
    from sd_plugin.checkpoint import atomic_save
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            return atomic_save(obj, f, save=lambda obj_, file_: original(obj_, file_, *args, **kwargs))
        return original(obj, f, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original


def _atomic(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with atomic_torch_save():
            return method(*args, **kwargs)
    return wrapper


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


def patch_basicsr():
    """Install the fixes that need basicsr imported. Idempotent."""
    import basicsr.train
    import basicsr.utils.options
    from basicsr.models.base_model import BaseModel

    from sd_plugin.data.resumable import ResumableSampler
    if getattr(basicsr.train, 'sd_plugin_patched', False):
        return
    basicsr.train.load_resume_state = load_resume_state
    basicsr.train.build_dataset = build_dataset
    basicsr.train.EnlargedSampler = ResumableSampler
    basicsr.train.create_train_val_dataloader = functools.partial(
        create_train_val_dataloader, _original=basicsr.train.create_train_val_dataloader)
    basicsr.utils.options.init_dist = functools.partial(init_dist, _original=basicsr.utils.options.init_dist)
    BaseModel.save_network = _atomic(BaseModel.save_network)
    BaseModel.save_training_state = _atomic(BaseModel.save_training_state)
    BaseModel.model_to_device = functools.partialmethod(model_to_device, _original=BaseModel.model_to_device)
    basicsr.train.sd_plugin_patched = True
