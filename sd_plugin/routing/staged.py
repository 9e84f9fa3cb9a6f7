"""A multi-exit network cut into stages, for the shared-trunk routed run (``sd_plugin.routing.execute``).

The interface (one adapter per architecture family; ``staged(net)`` picks it):

* ``depths``: every output depth, cheapest first, the teacher last; ``scale``: the upscaling factor;
* ``stem(x)``: (N, 3, h, w) LR in [0, 1] -> (N, C, h, w) features before the first block (depth 0);
* ``advance(feat, from_depth, to_depth)``: features after block ``from_depth`` -> after block ``to_depth``;
* ``head(feat, depth, x)``: features after block ``depth`` and the same region of the LR input -> the (N, 3, h*s,
  w*s) SR output of that depth;
* ``block_halo``: LR pixels of context one block reads on each side (a residual block of two 3x3 convolutions: 2);
  ``head_halo``: the same for a head, the global skip included (MSRResNet's head: 2, see
  ``sd_plugin.inference.receptive_field``);
* ``macs_per_pixel(depth)``: multiply-accumulates of output ``depth`` per LR pixel (``complexity.count_macs``).

A region computed on a crop that has at least the halo of real neighbouring pixels on every side where the image
has them equals the same region of the whole-image pass: convolutions zero-pad only at the image's own border.
"""
from torch.nn import functional as F

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit, upsample
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.complexity import count_macs

PROBE = (16, 16)  # LR size on which MACs are counted (convolution MACs are proportional to the pixels)


class StagedSRResNet:
    """The stages of an ``SRResNetMultiExit`` (its ``conv_first`` + ``lrelu``, ``body`` and ``upsample`` heads)."""

    block_halo = 2
    head_halo = 2

    def __init__(self, net):
        self.net = net
        self.depths = list(net.depths)
        self.scale = net.upscale
        self.num_feat = net.conv_first.out_channels
        self._macs = {d: count_macs(net, d, PROBE) / (PROBE[0] * PROBE[1]) for d in self.depths}

    def stem(self, x):
        return self.net.lrelu(self.net.conv_first(x))

    def advance(self, feat, from_depth, to_depth):
        for block in self.net.body[from_depth:to_depth]:
            feat = block(feat)
        return feat

    def head(self, feat, depth, x):
        base = F.interpolate(x, scale_factor=self.scale, mode='bilinear', align_corners=False)
        return upsample(self.net.head(depth), feat, base)[0]

    def macs_per_pixel(self, depth):
        return self._macs[depth]


def staged(net):
    """The staged adapter of a multi-exit network; ConfigError for a network without one (or without exits)."""
    if isinstance(net, SRResNetMultiExit):
        if not net.exits:
            raise ConfigError('--budget needs a multi-exit checkpoint (this one has no exits: a single output)')
        return StagedSRResNet(net)
    raise ConfigError(f'--budget: no staged adapter for {type(net).__name__} (routing supports SRResNetMultiExit)')
