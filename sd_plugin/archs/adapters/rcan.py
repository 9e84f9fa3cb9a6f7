"""RCAN: unit = a residual group of ``body`` (``num_group``); tail = as EDSR's (``conv_after_body``, the global
residual, ``upsample``, ``conv_last``, mean / ``img_range``). Its channel attention pools over the whole image, so
an output pixel depends on every input pixel: no exact tiling."""
from sd_plugin.errors import ConfigError

from .base import register_adapter
from .edsr import EDSRAdapter


@register_adapter('RCAN')
class RCANAdapter(EDSRAdapter):
    unit = 'residual group'
    depth_key = 'num_group'

    def check_options(self, arch_opt):
        super().check_options(arch_opt)
        squeeze, feat = arch_opt['squeeze_factor'], arch_opt['num_feat']
        if isinstance(squeeze, int) and isinstance(feat, int) and not 1 <= squeeze <= feat:
            raise ConfigError(f'network_g.arch.squeeze_factor={squeeze}: must be in [1, num_feat={feat}] (the channel '
                              f'attention has num_feat // squeeze_factor channels)')

    def receptive_field(self, net, depth):
        return None  # global average pooling in every RCAB
