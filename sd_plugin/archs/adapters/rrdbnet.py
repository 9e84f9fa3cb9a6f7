"""RRDBNet (ESRGAN, Real-ESRGAN): unit = an RRDB of ``body``; stem = pixel-unshuffle (scale 1 and 2) and
``conv_first``; tail = ``conv_body``, the residual to the stem's features, two nearest x2 upsamplings with
``conv_up1`` / ``conv_up2``, ``conv_hr`` and ``conv_last``. At scale 1 and 2 the pixel-unshuffle needs sides that
are multiples of 4 / scale: the stem pads the input at its bottom and right edges (replicating them, as
Real-ESRGAN's inference pads) and the tail crops the output back; tiles start at multiples of 4 / scale."""
from basicsr.archs.arch_util import pixel_unshuffle
from torch.nn import functional as F

from sd_plugin.errors import ConfigError

from .base import Adapter, register_adapter


@register_adapter('RRDBNet')
class RRDBNetAdapter(Adapter):
    depth_key = 'num_block'
    tail_names = ('conv_body', 'conv_up1', 'conv_up2', 'conv_hr', 'conv_last', 'lrelu')

    def scale(self, net):
        return net.scale

    def check_options(self, arch_opt):
        if arch_opt['scale'] not in (1, 2, 4):
            raise ConfigError(f'network_g.arch.scale={arch_opt["scale"]!r}: RRDBNet upscales by 1, 2 or 4 (another '
                              'scale runs as x4)')

    def tile_multiple(self, net):
        return self.unshuffle(net)

    @staticmethod
    def unshuffle(net):
        return 4 // net.scale if net.scale in (1, 2) else 1

    def stem(self, net, x):
        height, width = x.shape[2:]
        multiple = self.unshuffle(net)
        if multiple > 1:
            x = pixel_unshuffle(F.pad(x, (0, -width % multiple, 0, -height % multiple), 'replicate'), scale=multiple)
        first = net.conv_first(x)
        return first, {'first': first, 'out_size': (height * net.scale, width * net.scale)}

    def tail(self, net, head, feat, extras):
        feat = extras['first'] + head.conv_body(feat)
        feat = head.lrelu(head.conv_up1(F.interpolate(feat, scale_factor=2, mode='nearest')))
        feat = head.lrelu(head.conv_up2(F.interpolate(feat, scale_factor=2, mode='nearest')))
        height, width = extras['out_size']
        hr_feat = head.lrelu(head.conv_hr(feat))
        return head.conv_last(hr_feat)[..., :height, :width], hr_feat[..., :height, :width]

    def receptive_field(self, net, depth):
        # at the trunk's resolution: conv_first, 15 convs per RRDB (3 dense blocks of 5), conv_body, then one pixel
        # at most for each of conv_up1, conv_up2, conv_hr, conv_last; the trunk runs at 1/(4/scale) of the LR
        # resolution for scale 1 and 2 (pixel-unshuffle), where one trunk pixel spans 4/scale LR pixels
        return self.unshuffle(net) * (15 * depth + 6)
