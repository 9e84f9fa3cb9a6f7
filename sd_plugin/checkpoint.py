"""Reading and writing checkpoint files safely."""
import os
import tempfile
from os import path as osp

import torch

from sd_plugin.errors import ConfigError


def atomic_save(obj, path, save=None):
    """``save(obj, file)`` (default ``torch.save``) to a temporary file in the same folder, then rename it over
    ``path``: a crash mid-save never leaves a half-written file under ``path``."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            (save or torch.save)(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path):
    """Load a checkpoint dict onto the CPU, with a one-line ConfigError for a missing or unreadable file."""
    if not osp.isfile(path):
        raise ConfigError(f'{path}: no such checkpoint file')
    try:
        ckpt = torch.load(path, map_location='cpu')
    except Exception as err:  # torch raises many types for a corrupt file
        raise ConfigError(f'{path}: not a readable checkpoint ({type(err).__name__})') from None
    if not isinstance(ckpt, dict):
        raise ConfigError(f'{path}: not a checkpoint dict (found {type(ckpt).__name__})')
    return ckpt


def params(ckpt, param_key, path):
    """``ckpt[param_key]``, or a ConfigError naming the key and what the file has instead."""
    if param_key not in ckpt:
        keys = [k for k, v in ckpt.items() if isinstance(v, dict)]
        raise ConfigError(f'{path}: no param_key {param_key!r} (it has: {", ".join(keys) or "none"})')
    return ckpt[param_key]
