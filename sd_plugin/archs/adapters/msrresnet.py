"""MSRResNet (BasicSR's modified SRResNet): unit = a residual block of ``body``; tail = ``upconv1`` (+ ``upconv2``
at x4) with pixel shuffles, ``conv_hr``, ``conv_last`` and the bilinear global skip. On a crop (routing) the tail
cuts its context after each convolution, as far as the context is still valid there."""
from torch.nn import functional as F

from sd_plugin.errors import ConfigError

from .base import Adapter, register_adapter, trim


def bilinear(net, x):
    """The (N, C, h*s, w*s) bilinear upsampling of the LR input: the global skip."""
    return F.interpolate(x, scale_factor=net.upscale, mode='bilinear', align_corners=False)


@register_adapter('MSRResNet')
class MSRResNetAdapter(Adapter):
    depth_key = 'num_block'
    tail_names = ('upconv1', 'upconv2', 'pixel_shuffle', 'conv_hr', 'conv_last', 'lrelu')

    def check_options(self, arch_opt):
        if arch_opt['upscale'] not in (2, 3, 4):
            raise ConfigError(f'network_g.arch.upscale={arch_opt["upscale"]!r}: MSRResNet upscales by 2, 3 or 4 (it '
                              'builds no upsampling for another)')

    def stem(self, net, x):
        return net.lrelu(net.conv_first(x)), {'base': bilinear(net, x)}

    def tail(self, net, head, feat, extras):
        out = head.lrelu(head.pixel_shuffle(head.upconv1(feat)))
        if net.upscale == 4:
            out = head.lrelu(head.pixel_shuffle(head.upconv2(out)))
        hr_feat = head.lrelu(head.conv_hr(out))
        return head.conv_last(hr_feat) + extras['base'], hr_feat

    def receptive_field(self, net, depth):
        return 2 * depth + 3  # sd_plugin.inference's derivation

    def tail_halo(self, net):
        """2: ``upconv1`` reads one LR pixel, the layers after it together one more (``sd_plugin.inference``); the
        bilinear skip reads one. The stem is not rerun."""
        return 2

    def tail_layers(self, net, head):
        """[(convolution, pixel-shuffle factor after it)] of the tail, in the order ``tail`` runs them."""
        factor = 2 if net.upscale == 4 else net.upscale
        layers = [(head.upconv1, factor)] + ([(head.upconv2, 2)] if net.upscale == 4 else [])
        return layers + [(head.conv_hr, 1), (head.conv_last, 1)]

    def cuts(self, net, head, margins):
        """Per tail layer, the (top, bottom, left, right) pixels cut after its convolution, and the pixels cut at
        the end. A side with the full halo (``tail_halo``) loses one pixel, the ring that is no longer valid, after
        each convolution; a side at the image border (less than the halo) keeps its zero-padded edge to the end."""
        early = [m >= self.tail_halo(net) for m in margins]
        left, steps = list(margins), []
        for _, factor in self.tail_layers(net, head):
            cut = [min(1, m) if e else 0 for m, e in zip(left, early)]
            left = [(m - c) * factor for m, c in zip(left, cut)]
            steps.append(cut)
        return steps, left

    def crop_tail(self, net, head, feat, x, margins):
        """The tail with its context cut after each convolution (``cuts``); the skip is the bilinear of ``x``."""
        steps, left = self.cuts(net, head, margins)
        out = feat
        for (conv, factor), cut in zip(self.tail_layers(net, head), steps):
            out = trim(conv(out), cut)
            if factor > 1:
                out = head.pixel_shuffle(out)
            if conv is not head.conv_last:
                out = head.lrelu(out)
        return trim(out, left) + trim(bilinear(net, x), [m * net.upscale for m in margins])

    def crop_tail_macs(self, net, head, size, margins):
        height, width = size
        macs = 0
        for (conv, factor), cut in zip(self.tail_layers(net, head), self.cuts(net, head, margins)[0]):
            macs += height * width * conv.weight.numel()
            height, width = (height - cut[0] - cut[1]) * factor, (width - cut[2] - cut[3]) * factor
        return macs
