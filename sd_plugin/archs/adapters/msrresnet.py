"""MSRResNet (BasicSR's modified SRResNet): unit = a residual block of ``body``; tail = ``upconv1`` (+ ``upconv2``
at x4) with pixel shuffles, ``conv_hr``, ``conv_last`` and the bilinear global skip."""
from torch.nn import functional as F

from sd_plugin.errors import ConfigError

from .base import Adapter, register_adapter


@register_adapter('MSRResNet')
class MSRResNetAdapter(Adapter):
    depth_key = 'num_block'
    tail_names = ('upconv1', 'upconv2', 'pixel_shuffle', 'conv_hr', 'conv_last', 'lrelu')

    def check_options(self, arch_opt):
        if arch_opt['upscale'] not in (2, 3, 4):
            raise ConfigError(f'network_g.arch.upscale={arch_opt["upscale"]!r}: MSRResNet upscales by 2, 3 or 4 (it '
                              'builds no upsampling for another)')

    def stem(self, net, x):
        base = F.interpolate(x, scale_factor=net.upscale, mode='bilinear', align_corners=False)
        return net.lrelu(net.conv_first(x)), {'base': base}

    def tail(self, net, head, feat, extras):
        out = head.lrelu(head.pixel_shuffle(head.upconv1(feat)))
        if net.upscale == 4:
            out = head.lrelu(head.pixel_shuffle(head.upconv2(out)))
        hr_feat = head.lrelu(head.conv_hr(out))
        return head.conv_last(hr_feat) + extras['base'], hr_feat

    def receptive_field(self, net, depth):
        return 2 * depth + 3  # sd_plugin.inference's derivation
