"""Reading and writing checkpoint files safely."""
from os import path as osp

import torch

from sd_plugin.errors import ConfigError
from sd_plugin.files import atomic_write


def atomic_save(obj, path, save=None):
    """``save(obj, file)`` (default ``torch.save``) through ``files.atomic_write``: a crash or a full disk
    mid-save never leaves a half-written file under ``path``, and the file gets the usual permissions."""
    atomic_write(path, lambda f: (save or torch.save)(obj, f))


def load_checkpoint(path):
    """Load a checkpoint dict onto the CPU, with a one-line ConfigError for a missing or unreadable file, or for
    weights that are not finite (``check_finite``)."""
    if not osp.isfile(path):
        raise ConfigError(f'{path}: no such checkpoint file')
    try:
        ckpt = torch.load(path, map_location='cpu')
    except Exception as err:  # torch raises many types for a corrupt file
        raise ConfigError(f'{path}: not a readable checkpoint ({type(err).__name__})') from None
    if not isinstance(ckpt, dict):
        raise ConfigError(f'{path}: not a checkpoint dict (found {type(ckpt).__name__})')
    check_finite(ckpt, path)
    return ckpt


def check_finite(ckpt, path):
    """Raise ConfigError naming ``path`` and the first tensor holding NaN or Inf, in ``ckpt`` (a state dict, or a
    dict of state dicts such as ``{'params': ..., 'params_ema': ...}``): a network with such weights outputs NaN,
    which becomes a black image or a NaN score."""
    for key, value in ckpt.items():
        tensors = value.items() if isinstance(value, dict) else [(None, value)]
        for name, tensor in tensors:
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                where = f'{key}.{name}' if name is not None else key
                raise ConfigError(f'{path}: {where} holds NaN or Inf values; refusing non-finite weights (the run '
                                  'that saved them diverged)')


def params(ckpt, param_key, path):
    """``ckpt[param_key]``, or a ConfigError naming the key and what the file has instead."""
    if param_key not in ckpt:
        keys = [k for k, v in ckpt.items() if isinstance(v, dict)]
        raise ConfigError(f'{path}: no param_key {param_key!r} (it has: {", ".join(keys) or "none"})')
    return ckpt[param_key]


def select_params(ckpt, path, param_key=None):
    """The weights to run from a loaded checkpoint: ``param_key`` when given, else ``params_ema`` when present,
    else ``params``; a bare state dict (no such keys, and every value a tensor) is taken whole.

    Returns:
        tuple[str | None, dict]: the key used (None for a bare state dict) and the state dict.
    """
    if param_key is not None:
        return param_key, params(ckpt, param_key, path)
    for key in ('params_ema', 'params'):
        if key in ckpt:
            return key, ckpt[key]
    if ckpt and all(torch.is_tensor(value) for value in ckpt.values()):
        return None, ckpt
    return 'params', params(ckpt, 'params', path)  # raises, naming what the file has
