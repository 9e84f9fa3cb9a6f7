"""SRVGGNetCompact (Real-ESRGAN's compact net, "RealESRGAN Compact"; BasicSR registers it as
``SRVGGNetCompact_basicsr``): a flat ``body`` list [conv, act, (conv, act) x num_conv, last conv] with the tail's conv
at its end. Unit = one (conv, activation) pair of the body; stem = the first conv and activation; tail = the last
conv, the pixel shuffle and the nearest-upsampled input added. Depth k = ``SRVGGNetCompact(num_conv=k)``, whose last
conv is ``body.<2k+2>``: an exit head holds it as ``conv_last``, and ``student_key`` renames it."""
from torch.nn import functional as F

from .base import Adapter, register_adapter


@register_adapter('SRVGGNetCompact')
class SRVGGNetCompactAdapter(Adapter):
    unit = 'conv'
    depth_key = 'num_conv'
    tail_names = ('conv_last', 'upsampler')

    def blocks(self, net):
        """(conv, activation) pairs: ``body[2i]``, ``body[2i + 1]`` for i in 1..num_conv."""
        return [(net.body[i], net.body[i + 1]) for i in range(2, len(net.body) - 1, 2)]

    def run_block(self, net, block, feat, extras):
        conv, act = block
        return act(conv(feat))

    def tail_modules(self, net):
        return {'conv_last': net.body[-1], 'upsampler': net.upsampler}

    def student_key(self, key, depth, teacher):
        last = 2 * depth + 2  # the index of the last conv in the body of the arch at ``depth``
        if key.startswith('exit_heads.'):
            prefix = f'exit_heads.{depth}.conv_last.'
            return f'body.{last}.{key[len(prefix):]}' if key.startswith(prefix) else None
        index = int(key.split('.')[1])  # every other key is body.<index>.*
        return key if index < last or (index == last and depth == teacher) else None

    def stem(self, net, x):
        return net.body[1](net.body[0](x)), {'input': x}

    def tail(self, net, head, feat, extras):
        base = F.interpolate(extras['input'], scale_factor=net.upscale, mode='nearest')
        return head.upsampler(head.conv_last(feat)) + base, None

    def receptive_field(self, net, depth):
        # the first conv, one conv per unit and the last conv widen the field by one LR pixel each; the pixel
        # shuffle and the nearest skip read one LR pixel
        return depth + 2
