"""A multi-exit network cut into stages, for the shared-trunk routed run (``sd_plugin.routing.execute``).

The interface (one adapter per architecture family; ``staged(net)`` picks it):

* ``depths``: every output depth, cheapest first, the teacher last; ``scale``: the upscaling factor;
* ``prepare(x)``: the (1, 3, H, W) LR input as the routed run takes it (SwinIR: padded to whole windows; else x);
  ``tile_multiple``: tiles start at multiples of it (SwinIR: its window); ``exact``: whether a tile equals its output
  on the whole image (False for archs without a finite receptive field: RCAN, SwinIR; see ``StagedMultiExit``), and
  ``note``: one line saying so (None when exact);
* ``trunk_depth``: the depth of the shared trunk, run once on the whole image (the first exit's; see
  ``sd_plugin.routing.bicubic`` for an output below it);
* ``stem(x)``: (N, 3, h, w) LR in [0, 1] -> (N, C, h, w) features before the first block (depth 0);
* ``advance(feat, from_depth, to_depth)``: features after block ``from_depth`` -> after block ``to_depth``;
* ``head(feat, depth, x, margins)``: features after block ``depth`` and the same region of the LR input -> the SR
  output of that depth, less ``margins`` = (top, bottom, left, right) LR pixels of context (each side: 0, or less
  than ``head_halo`` at the image border, or ``head_halo`` where the crop ends inside the image), which the head
  trims as early as each layer allows, so its costly high-resolution layers compute hardly any halo;
  ``head_macs(depth, h, w, margins)``: the MACs of that call on an (h, w) crop;
* ``block_halo``: LR pixels of context one block reads on each side (a residual block of two 3x3 convolutions: 2);
  ``head_halo``: the same for a head, the global skip included (MSRResNet's head: 2, see
  ``sd_plugin.inference.receptive_field``);
* ``macs_per_pixel(depth)``: multiply-accumulates of output ``depth`` per LR pixel (``complexity.count_macs``), and
  its parts: ``trunk_macs_per_pixel()`` (stem and blocks up to the first exit), ``block_macs_per_pixel()`` (one
  block), ``head_macs_per_pixel(depth)``.

A region computed on a crop that has at least the halo of real neighbouring pixels on every side where the image
has them equals the same region of the whole-image pass: convolutions zero-pad only at the image's own border.
"""
import copy

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit, upsample
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.complexity import count_macs

PROBE = (16, 16)  # LR size on which MACs are counted (convolution MACs are proportional to the pixels)


class Staged:
    """What every staged network shares: ``net``, ``depths``, ``scale``, the MACs per LR pixel of each output
    (``_macs``, counted once) and of the stem (``_stem``, set by the subclass), and the parts derived from them (every
    head costs the same, so a block's MACs are the slope between the cheapest output and the teacher)."""

    exact = True
    note = None
    tile_multiple = 1

    def __init__(self, net):
        self.net = net
        self.depths = list(net.depths)
        self.scale = net.upscale
        self._macs = {d: count_macs(net, d, PROBE) / (PROBE[0] * PROBE[1]) for d in self.depths}

    @property
    def trunk_depth(self):
        return self.depths[0]

    def prepare(self, x):
        """The (1, 3, H, W) LR input as the routed run takes it (``StagedSwinIR``: padded to whole windows)."""
        return x

    def macs_per_pixel(self, depth):
        return self._macs[depth]

    def block_macs_per_pixel(self):
        first, last = self.depths[0], self.depths[-1]
        return (self._macs[last] - self._macs[first]) / (last - first)

    def trunk_macs_per_pixel(self):
        return self._stem + self.trunk_depth * self.block_macs_per_pixel()

    def head_macs_per_pixel(self, depth):
        return self._macs[depth] - self._stem - depth * self.block_macs_per_pixel()


class StagedSRResNet(Staged):
    """The stages of an ``SRResNetMultiExit`` (its ``conv_first`` + ``lrelu``, ``body`` and ``upsample`` heads)."""

    block_halo = 2
    head_halo = 2

    def __init__(self, net):
        super().__init__(net)
        self._stem = net.conv_first.weight.numel()

    def stem(self, x):
        return self.net.lrelu(self.net.conv_first(x))

    def advance(self, feat, from_depth, to_depth):
        for block in self.net.body[from_depth:to_depth]:
            feat = block(feat)
        return feat

    def head_layers(self, depth):
        """[(convolution, pixel-shuffle factor after it)] of head ``depth``, in order (as ``upsample`` runs them)."""
        head = self.net.head(depth)
        layers = [(head.upconv1, 2 if self.scale == 4 else self.scale)]
        if self.scale == 4:
            layers.append((head.upconv2, 2))
        return layers + [(head.conv_hr, 1), (head.conv_last, 1)]

    def trims(self, depth, margins):
        """Per head layer, the (top, bottom, left, right) pixels trimmed after it, then the shuffle factor; and the
        pixels trimmed at the end. A side with the full halo loses one pixel after each convolution (its invalid
        ring), a side at the image border (less than the halo) keeps its zero-padded edge until the end."""
        left = list(margins)
        early = [m >= self.head_halo for m in margins]
        steps = []
        for _, factor in self.head_layers(depth):
            cut = [min(1, m) if e else 0 for m, e in zip(left, early)]
            left = [(m - c) * factor for m, c in zip(left, cut)]
            steps.append((cut, factor))
        return steps, left

    def head(self, feat, depth, x, margins=(0, 0, 0, 0)):
        if not any(margins):
            base = F.interpolate(x, scale_factor=self.scale, mode='bilinear', align_corners=False)
            return upsample(self.net.head(depth), feat, base)[0]
        head, out = self.net.head(depth), feat
        layers = self.head_layers(depth)
        steps, left = self.trims(depth, margins)
        for (conv, _), (cut, factor) in zip(layers, steps):
            out = trim(conv(out), cut)
            if factor > 1:
                out = head.pixel_shuffle(out)
            if conv is not head.conv_last:
                out = head.lrelu(out)
        base = F.interpolate(x, scale_factor=self.scale, mode='bilinear', align_corners=False)
        return trim(out, left) + trim(base, [m * self.scale for m in margins])

    def head_macs(self, depth, height, width, margins):
        macs = 0
        steps, _ = self.trims(depth, margins)
        for (conv, _), (cut, factor) in zip(self.head_layers(depth), steps):
            macs += height * width * conv.weight.numel()
            height, width = (height - cut[0] - cut[1]) * factor, (width - cut[2] - cut[3]) * factor
        return macs


def trim(t, cut):
    """(N, C, H, W) tensor less ``cut`` = (top, bottom, left, right) pixels."""
    top, bottom, left, right = cut
    return t[..., top:t.shape[-2] - bottom, left:t.shape[-1] - right]


class StagedMultiExit(Staged):
    """The stages of a ``MultiExitSR`` (``sd_plugin.archs.multi_exit_arch``) through its arch adapter (``stem``,
    ``run_block``, ``tail``, ``receptive_field``), for archs whose trunk keeps the LR resolution.

    With a finite receptive field (MSRResNet, EDSR, RRDBNet at x4) tiles are exact: ``block_halo`` is the field's
    growth per unit, ``head_halo`` the whole field at depth 0 (the stem's own pixel included: a safe margin). An arch
    without one (RCAN: channel attention pools the whole image; SwinIR: ``StagedSwinIR``) has ``exact = False``:
    a deep crop reads ``wrapped_network.tile_padding`` LR pixels of context (``head_halo``; ``block_halo`` 0), the
    approximation ``--tile`` makes for it. The trunk up to the first exit still runs once on the whole image, and
    tiles routed alike merge into one crop, so the teacher everywhere (or any output everywhere) is one whole-image
    pass, exactly. A head crop recomputes the stem's ``extras`` (e.g. EDSR's global residual) from its LR crop, and
    trims its margins at the end."""

    def __init__(self, net):
        from sd_plugin.evaluation.complexity import image_channels
        from sd_plugin.wrapped_network import tile_multiple, tile_padding
        adapter, stock = net.adapter, net.stock
        self.adapter, self.stock = adapter, stock
        self.tile_multiple = tile_multiple(net)
        side = max(8, self.tile_multiple)
        probe = torch.zeros(1, image_channels(net), side, side)
        if self.stem(probe).shape[-2:] != probe.shape[-2:]:  # before anything else runs the network
            raise ConfigError(f'--budget: a {net.arch_opt["type"]} trunk does not keep the LR resolution, so it '
                              'cannot be cut into LR tiles')
        super().__init__(net)
        fields = [adapter.receptive_field(stock, d) for d in (0, 1)]
        if None in fields:
            self.exact = False
            self.block_halo, self.head_halo = 0, tile_padding(net, net.num_block)
            self.note = (f'{net.arch_opt["type"]} has no finite receptive field, so routed tiles approximate their '
                         f'outputs: each strip of tiles routed deeper than exit {self.depths[0]} reads '
                         f'{self.head_halo} LR px of context around it, as --tile does (budget 1, or one output '
                         'everywhere, is the whole-image pass)')
        else:
            self.block_halo, self.head_halo = fields[1] - fields[0], fields[0]
        meta = copy.deepcopy(net).to('meta')
        with FlopCounterMode(display=False) as counter:
            meta.adapter.stem(meta.stock, torch.empty(1, probe.shape[1], *PROBE, device='meta'))
        self._stem = counter.get_total_flops() / 2 / (PROBE[0] * PROBE[1])

    def stem(self, x):
        return self.adapter.stem(self.stock, x)[0]

    def advance(self, feat, from_depth, to_depth):
        for block in self.adapter.blocks(self.stock)[from_depth:to_depth]:
            feat = self.adapter.run_block(self.stock, block, feat, {})
        return feat

    def head(self, feat, depth, x, margins=(0, 0, 0, 0)):
        _, extras = self.adapter.stem(self.stock, x)
        sr = self.adapter.tail(self.stock, self.net.head(depth), feat, extras)[0]
        return trim(sr, [m * self.scale for m in margins])

    def head_macs(self, depth, height, width, margins):
        return height * width * (self.head_macs_per_pixel(depth) + self._stem)  # the stem's extras, recomputed


class StagedSwinIR(StagedMultiExit):
    """SwinIR's stages on (N, C, h, w) feature maps: its units (RSTB layers) run on tokens, which are the map's pixels
    row by row (``PatchUnEmbed`` is a reshape), so a map crop is the tokens of that region. The input is padded to
    whole windows first (reflect, as SwinIR pads it), and tiles and context are whole windows, so every crop's
    windows lie on the whole image's window grid."""

    def prepare(self, x):
        multiple = self.tile_multiple
        pad_h, pad_w = -x.shape[2] % multiple, -x.shape[3] % multiple
        return F.pad(x, (0, pad_w, 0, pad_h), 'reflect') if pad_h or pad_w else x

    @staticmethod
    def to_map(tokens, size):
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *size)

    def stem(self, x):
        tokens, extras = self.adapter.stem(self.stock, x)
        return self.to_map(tokens, extras['x_size'])

    def advance(self, feat, from_depth, to_depth):
        size = tuple(feat.shape[-2:])
        tokens = feat.flatten(2).transpose(1, 2)
        for block in self.adapter.blocks(self.stock)[from_depth:to_depth]:
            tokens = block(tokens, size)
        return self.to_map(tokens, size)

    def head(self, feat, depth, x, margins=(0, 0, 0, 0)):
        _, extras = self.adapter.stem(self.stock, x)
        sr = self.adapter.tail(self.stock, self.net.head(depth), feat.flatten(2).transpose(1, 2), extras)[0]
        return trim(sr, [m * self.scale for m in margins])


def staged(net):
    """The staged adapter of a multi-exit network; ConfigError for a network without one (or without exits)."""
    if not getattr(net, 'exits', None):
        raise ConfigError('--budget needs a multi-exit checkpoint (this one has no exits: a single output)')
    if isinstance(net, SRResNetMultiExit):
        return StagedSRResNet(net)
    if hasattr(net, 'adapter') and hasattr(net, 'stock'):
        from sd_plugin.archs.adapters.swinir import SwinIRAdapter
        return StagedSwinIR(net) if isinstance(net.adapter, SwinIRAdapter) else StagedMultiExit(net)
    raise ConfigError(f'--budget: no staged adapter for {type(net).__name__} (routing supports SRResNetMultiExit and '
                      'MultiExitSR)')
