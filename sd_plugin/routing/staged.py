"""A multi-exit network cut into stages, for the shared-trunk routed run (``sd_plugin.routing.execute``), through
its arch adapter's hooks (``sd_plugin.archs.adapters``): one ``Staged`` for every arch.

The interface (``staged(net)`` makes it):

* ``depths``: every output depth, cheapest first, the teacher last; ``scale``: the upscaling factor; ``unit``: what
  a depth counts (the adapter's word);
* ``prepare(x)``: the (1, 3, H, W) LR input as the routed run takes it (padded to whole windows where the adapter's
  ``tile_multiple`` is above 1, as SwinIR's; else x);
  ``tile_multiple``: tiles start at multiples of it (SwinIR: its window); ``exact``: whether a tile equals its output
  on the whole image (False for archs without a finite receptive field: RCAN, SwinIR), and ``note``: one line
  saying so (None when exact);
* ``trunk_depth``: the depth of the shared trunk, run once on the whole image (the first exit's; see
  ``sd_plugin.routing.bicubic`` for an output below it);
* ``stem(x)``: (N, 3, h, w) LR in [0, 1] -> (N, C, h, w) features before the first unit (depth 0);
* ``advance(feat, from_depth, to_depth)``: features after unit ``from_depth`` -> after unit ``to_depth``;
* ``head(feat, depth, x, margins)``: features after unit ``depth`` and the same region of the LR input -> the SR
  output of that depth, less ``margins`` = (top, bottom, left, right) LR pixels of context (each side: 0, or less
  than ``head_halo`` at the image border, or ``head_halo`` where the crop ends inside the image): the adapter's
  ``crop_tail``, which may trim the context as early as each layer allows (MSRResNet);
  ``head_macs(depth, h, w, margins)``: the MACs of that call on an (h, w) crop (``crop_tail_macs``);
* ``block_halo``: LR pixels of context one unit reads on each side (a residual block of two 3x3 convolutions: 2);
  ``head_halo``: the same for a head (the adapter's ``tail_halo``);
* ``macs_per_pixel(depth)``: multiply-accumulates of output ``depth`` per LR pixel (``complexity.count_macs``), and
  its parts: ``trunk_macs_per_pixel()`` (stem and units up to the first exit), ``block_macs_per_pixel()`` (one
  unit), ``head_macs_per_pixel(depth)``.

A region computed on a crop that has at least the halo of real neighbouring pixels on every side where the image
has them equals the same region of the whole-image pass: convolutions zero-pad only at the image's own border.
"""
import copy

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from sd_plugin.archs.adapters.base import trim
from sd_plugin.complexity import count_macs
from sd_plugin.errors import ConfigError

__all__ = ['Staged', 'staged', 'trim']

PROBE = (16, 16)  # LR size on which MACs are counted (convolution MACs are proportional to the pixels)


class Staged:
    """The stages of a ``MultiExitSR`` (``sd_plugin.archs.multi_exit_arch``; ``SRResNetMultiExit`` is one) through its
    arch adapter's hooks (``stem``, ``blocks``, ``block_extras``, ``run_block``, ``crop_tail``, ``crop_tail_macs``,
    ``tail_halo``, ``receptive_field``, ``tile_multiple``, ``tokens``), for archs whose trunk keeps the LR
    resolution. Staged features are (N, C, h, w) maps; an adapter whose features are tokens (``tokens``: SwinIR) gets
    them back as (N, h*w, C) tokens of the crop, row by row, so a map crop is the tokens of that region. Each unit
    gets ``block_extras`` of the crop it runs on.

    With a finite receptive field (MSRResNet, EDSR, RRDBNet at x4, SRVGGNetCompact) tiles are exact: ``block_halo``
    is the field's growth per unit, ``head_halo`` the adapter's ``tail_halo``. An arch without one (RCAN: channel
    attention pools the whole image; SwinIR: windows) has ``exact = False``: a deep crop reads
    ``wrapped_network.tile_padding`` LR pixels of context (``head_halo``; ``block_halo`` 0), the approximation
    ``--tile`` makes for it. The input is padded to a multiple of ``tile_multiple`` first (reflect, as SwinIR pads
    it), so tiles and context are whole windows. The trunk up to the first exit still runs once on the whole image,
    and tiles routed alike merge into one crop, so the teacher everywhere (or any output everywhere) is one
    whole-image pass, exactly.

    MACs: every output's per LR pixel, counted once (``_macs``); the stem's (``_stem``); one unit's, the slope
    between the cheapest output and the teacher (every head costs the same); a head crop's (``head_macs``)."""

    def __init__(self, net):
        from sd_plugin.wrapped_network import tile_multiple, tile_padding
        adapter, stock = net.adapter, net.stock
        self.net, self.adapter, self.stock, self.unit = net, adapter, stock, adapter.unit
        self.depths = list(net.depths)
        self.scale = net.upscale
        self._macs = {d: count_macs(net, d, PROBE) / (PROBE[0] * PROBE[1]) for d in self.depths}
        self.tile_multiple = tile_multiple(net)
        fields = [adapter.receptive_field(stock, d) for d in (0, 1)]
        halo = adapter.tail_halo(stock)
        self.exact = None not in fields and halo is not None
        self.note = None
        if self.exact:
            self.block_halo, self.head_halo = fields[1] - fields[0], halo
        else:
            self.block_halo, self.head_halo = 0, tile_padding(net, net.num_block)
            self.note = (f'{net.arch_opt["type"]} has no finite receptive field, so routed tiles approximate their '
                         f'outputs: each strip of tiles routed deeper than exit {self.depths[0]} reads '
                         f'{self.head_halo} LR px of context around it, as --tile does (budget 1, or one output '
                         'everywhere, is the whole-image pass)')
        side = max(8, self.tile_multiple)
        probe = torch.zeros(1, net.num_in_ch, side, side)
        feat = adapter.stem(stock, probe)[0]
        kept = feat.shape[1] == side * side if adapter.tokens else feat.shape[-2:] == probe.shape[-2:]
        if not kept:
            what = 'tokens are not one per LR pixel' if adapter.tokens else 'trunk does not keep the LR resolution'
            raise ConfigError(f'--budget: a {net.arch_opt["type"]} {what} (features {tuple(feat.shape)} for a '
                              f'{side}x{side} input), so it cannot be cut into LR tiles')
        meta = copy.deepcopy(net).to('meta')
        with FlopCounterMode(display=False) as counter:
            adapter.stem(meta.stock, torch.empty(1, net.num_in_ch, *PROBE, device='meta'))
        self._stem = counter.get_total_flops() / 2 / (PROBE[0] * PROBE[1])

    @property
    def trunk_depth(self):
        return self.depths[0]

    def macs_per_pixel(self, depth):
        return self._macs[depth]

    def block_macs_per_pixel(self):
        first, last = self.depths[0], self.depths[-1]
        return (self._macs[last] - self._macs[first]) / (last - first)

    def trunk_macs_per_pixel(self):
        return self._stem + self.trunk_depth * self.block_macs_per_pixel()

    def head_macs_per_pixel(self, depth):
        return self._macs[depth] - self._stem - depth * self.block_macs_per_pixel()

    def prepare(self, x):
        """The (1, 3, H, W) LR input as the routed run takes it: padded to whole windows (reflect)."""
        multiple = self.tile_multiple
        pad_h, pad_w = -x.shape[2] % multiple, -x.shape[3] % multiple
        return F.pad(x, (0, pad_w, 0, pad_h), 'reflect') if pad_h or pad_w else x

    def to_map(self, feat, size):
        """The adapter's features of an (h, w) = ``size`` region as an (N, C, h, w) map."""
        return feat.transpose(1, 2).reshape(feat.shape[0], feat.shape[2], *size) if self.adapter.tokens else feat

    def from_map(self, fmap):
        """An (N, C, h, w) map as the adapter's features (tokens: (N, h*w, C), row by row)."""
        return fmap.flatten(2).transpose(1, 2) if self.adapter.tokens else fmap

    def stem(self, x):
        return self.to_map(self.adapter.stem(self.stock, x)[0], x.shape[-2:])

    def advance(self, feat, from_depth, to_depth):
        size = tuple(feat.shape[-2:])
        extras = self.adapter.block_extras(self.stock, size)
        out = self.from_map(feat)
        for block in self.adapter.blocks(self.stock)[from_depth:to_depth]:
            out = self.adapter.run_block(self.stock, block, out, extras)
        return self.to_map(out, size)

    def head(self, feat, depth, x, margins=(0, 0, 0, 0)):
        return self.adapter.crop_tail(self.stock, self.net.head(depth), self.from_map(feat), x, tuple(margins))

    def head_macs(self, depth, height, width, margins):
        """The MACs of ``head`` on one (height, width) crop with ``margins``: the adapter's ``crop_tail_macs``, by
        default the head's and the stem's MACs per pixel (the default ``crop_tail`` reruns the stem)."""
        macs = self.adapter.crop_tail_macs(self.stock, self.net.head(depth), (height, width), tuple(margins))
        return height * width * (self.head_macs_per_pixel(depth) + self._stem) if macs is None else macs


def staged(net):
    """The staged network of a multi-exit network; ConfigError for a network without exits or without an adapter."""
    if not getattr(net, 'exits', None):
        raise ConfigError('--budget needs a multi-exit checkpoint (this one has no exits: a single output)')
    if not (hasattr(net, 'adapter') and hasattr(net, 'stock')):
        raise ConfigError(f'--budget: {type(net).__name__} is not a MultiExitSR; routing runs through its arch '
                          'adapter')
    return Staged(net)
