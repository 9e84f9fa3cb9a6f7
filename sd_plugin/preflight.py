"""Check a parsed BasicSR option dict before BasicSR creates any folder or starts training.

Everything here raises ``ConfigError`` with a one-line message naming the key and value.
"""
import difflib

import torch
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY

from sd_plugin.errors import ConfigError


def registered(registry, key, name):
    """Raise ConfigError unless ``name`` is registered in ``registry``; ``key`` names the YAML key."""
    if name in registry:
        return
    close = difflib.get_close_matches(str(name), [registered_name for registered_name, _ in registry], n=1)
    hint = f'; did you mean {close[0]!r}?' if close else ''
    raise ConfigError(f'{key}={name!r}: not registered in BasicSR or sd_plugin{hint}')


def check_options(opt):
    """Validate the parts of ``opt`` the plugin owns or that BasicSR would only reject deep inside torch."""
    from sd_plugin.models.self_distill_sr_model import self_distill_options

    num_gpu = opt.get('num_gpu')
    if num_gpu != 0 and not torch.cuda.is_available():
        raise ConfigError(f'num_gpu={num_gpu!r}: CUDA is not available here; use num_gpu: 0 (CPU) or auto')
    registered(MODEL_REGISTRY, 'model_type', opt.get('model_type'))
    network_opt = dict(opt.get('network_g') or {})
    registered(ARCH_REGISTRY, 'network_g.type', network_opt.pop('type', None))
    if opt['model_type'] == 'SelfDistillSRModel':
        try:
            net = ARCH_REGISTRY.get(opt['network_g']['type'])(**network_opt)  # validates exits, upscale, ...
        except TypeError as err:  # an unknown or misspelled argument
            raise ConfigError(f'network_g: {err}') from None
        if opt.get('is_train') and opt.get('train'):
            self_distill_options(opt['train'], getattr(net, 'exits', []))
