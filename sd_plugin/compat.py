"""The few fixes stock basicsr 1.4.2 needs on a current PyTorch. Each one names the BasicSR function it mends.

* ``register_torchvision_alias``: ``basicsr/data/degradations.py`` imports
  ``torchvision.transforms.functional_tensor``, which torchvision removed in 0.17. We register that module name with
  its one used function, ``rgb_to_grayscale``, taken from ``torchvision.transforms.functional``. It must run before
  basicsr is first imported, so ``sd_plugin/__init__.py`` calls it first.
* ``load_resume_state``: ``basicsr.train.load_resume_state`` maps the resume state onto
  ``torch.cuda.current_device()`` unconditionally, so resuming crashes without CUDA. It also looks for
  ``experiments/<name>/training_states`` relative to the working directory instead of the experiment root that
  ``parse_options`` computed. Our version loads onto the model's device and uses the computed path. It is also the
  first thing ``train_pipeline`` calls after parsing the options and before creating any folder, so it runs
  ``sd_plugin.preflight.check_options`` first: bad options stop the run before anything is written.
"""
import os
import sys
import types
from os import path as osp

import torch

__all__ = ['register_torchvision_alias', 'basicsr_import_finished', 'patch_basicsr', 'load_resume_state']


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
    iters = [int(f[:-len('.state')]) for f in os.listdir(states_dir) if f.endswith('.state') and f[:-6].isdigit()]
    return osp.join(states_dir, f'{max(iters)}.state') if iters else None


def load_resume_state(opt):
    """Replacement for ``basicsr.train.load_resume_state`` that works on CPU.

    Args:
        opt (dict): parsed options. Reads ``auto_resume``, ``num_gpu``, ``path.training_states`` and
            ``path.resume_state``; sets ``path.resume_state`` (and, through ``check_resume``, the
            ``pretrain_network_*`` paths) when it resumes.
    Returns:
        dict | None: the training state (``epoch``, ``iter``, ``optimizers``, ``schedulers``), or None for a new run.
    """
    from basicsr.utils import check_resume

    from sd_plugin.preflight import check_options
    check_options(opt)
    if opt['auto_resume']:
        latest = _latest_state(opt['path']['training_states'])
        if latest is not None:
            opt['path']['resume_state'] = latest
    path = opt['path'].get('resume_state')
    if not path:
        return None
    if not osp.isfile(path):
        raise FileNotFoundError(f'path.resume_state: no such file: {path}')
    device = torch.device('cuda', torch.cuda.current_device()) if opt['num_gpu'] != 0 else torch.device('cpu')
    state = torch.load(path, map_location=device)
    check_resume(opt, state['iter'])
    return state


def patch_basicsr():
    """Install the fixes that need basicsr imported. Idempotent."""
    import basicsr.train
    basicsr.train.load_resume_state = load_resume_state
