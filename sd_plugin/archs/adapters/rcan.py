"""RCAN: unit = a residual group of ``body`` (``num_group``); tail = as EDSR's (``conv_after_body``, the global
residual, ``upsample``, ``conv_last``, mean / ``img_range``). Its channel attention pools over the whole image, so
an output pixel depends on every input pixel: no exact tiling."""
from .base import register_adapter
from .edsr import EDSRAdapter


@register_adapter('RCAN')
class RCANAdapter(EDSRAdapter):
    unit = 'residual group'
    depth_key = 'num_group'

    def receptive_field(self, net, depth):
        return None  # global average pooling in every RCAB
