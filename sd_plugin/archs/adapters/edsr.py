"""EDSR: unit = a residual block of ``body``; tail = ``conv_after_body``, the global residual (the features after
``conv_first``), ``upsample``, ``conv_last`` and the mean / ``img_range`` de-normalisation."""
import math

from basicsr.archs.arch_util import Upsample
from torch import nn

from sd_plugin.errors import ConfigError

from .base import Adapter, register_adapter


def check_img_range(arch_opt):
    """``img_range`` scales the input and divides the output: a number > 0 (0 would give Inf / NaN images)."""
    value = arch_opt['img_range']
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float('inf'):
        raise ConfigError(f'network_g.arch.img_range={value!r}: must be a finite number > 0')


def upsample_convs(upsample):
    """Number of 3x3 convolutions in a BasicSR ``Upsample`` (one per x2 step, one at x3)."""
    return sum(1 for m in upsample.modules() if m.__class__.__name__ == 'Conv2d')


@register_adapter('EDSR')
class EDSRAdapter(Adapter):
    depth_key = 'num_block'
    tail_names = ('conv_after_body', 'upsample', 'conv_last')

    def check_options(self, arch_opt):
        """The mean normalisation is per RGB channel: ``rgb_mean`` three numbers, RGB in and out."""
        mean = arch_opt['rgb_mean']
        if not isinstance(mean, (list, tuple)) or len(mean) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in mean):
            raise ConfigError(f'network_g.arch.rgb_mean={mean!r}: must be three numbers (R, G, B means)')
        check_img_range(arch_opt)
        for key in ('num_in_ch', 'num_out_ch'):
            if arch_opt[key] != 3:
                raise ConfigError(f'network_g.arch.{key}={arch_opt[key]!r}: {arch_opt["type"]} subtracts and adds '
                                  'back an RGB mean (rgb_mean): it needs 3 (RGB images)')

    def scale(self, net):
        """The product of the pixel-shuffle factors of ``upsample`` (EDSR and RCAN do not keep ``upscale``)."""
        return math.prod(m.upscale_factor for m in net.upsample.modules() if isinstance(m, nn.PixelShuffle))

    def stem(self, net, x):
        net.mean = net.mean.type_as(x)
        first = net.conv_first((x - net.mean) * net.img_range)
        return first, {'first': first}

    def tail(self, net, head, feat, extras):
        hr_feat = head.upsample(head.conv_after_body(feat) + extras['first'])
        return head.conv_last(hr_feat) / net.img_range + net.mean, hr_feat

    def receptive_field(self, net, depth):
        # conv_first, 2 convs per block, conv_after_body, the upsampling convs and conv_last: each 3x3 conv widens
        # the field by at most one LR pixel (by a sub-pixel step after the first pixel shuffle)
        assert isinstance(net.upsample, Upsample)
        return 2 * depth + 3 + upsample_convs(net.upsample)
