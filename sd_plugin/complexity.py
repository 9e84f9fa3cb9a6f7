"""What an output of an SRResNet costs: multiply-accumulates counted by ``torch.utils.flop_counter`` and CPU latency.

``count_macs`` counts convolutions only (MACs = FLOPs / 2) on a meta-device copy: the bilinear global skip, pixel
shuffle, activations, biases and additions are not counted (a few MACs per output pixel, against ~1.4 M per LR pixel
in the convolutions of the paper's model). Exit k runs only the first k blocks, so it costs exactly an
``MSRResNet(num_block=k)``.
"""
import copy
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def in_channels(net):
    """Channels of ``net``'s LR input: a MultiExitSR's ``num_in_ch`` (its adapter's), else the input channels of
    its first convolution (a stock network's first layer; not so after a pixel-unshuffle, as RRDBNet's at x1/x2)."""
    return getattr(net, 'num_in_ch', None) or next(m.in_channels for m in net.modules() if isinstance(m, nn.Conv2d))


def count_macs(net, depth, lr_size):
    """Multiply-accumulates of ``net`` on one ``lr_size`` = (W, H) input, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) on a meta-device copy (no compute).

    ``depth``: an output of an SRResNetMultiExit, run as ``forward_exits(x, [depth])`` (only the first ``depth``
    blocks); None: plain ``net(x)`` (any network, e.g. a stock ``MSRResNet``)."""
    meta = copy.deepcopy(net).to('meta')
    x = torch.empty(1, in_channels(net), lr_size[1], lr_size[0], device='meta')
    with FlopCounterMode(display=False) as counter:
        if depth is None:
            meta(x)
        else:
            meta.forward_exits(x, [depth])
    return counter.get_total_flops() // 2


@torch.inference_mode()
def cpu_latency(net, depth, lr_size, warmup=1, repeats=5):
    """Median wall time (ms) of ``net.forward_exits(x, [depth])`` on a random ``lr_size`` = (W, H) CPU input, over
    ``repeats`` runs after ``warmup`` runs, with the current ``torch.get_num_threads()``."""
    x = torch.rand(1, in_channels(net), lr_size[1], lr_size[0])
    for _ in range(warmup):
        net.forward_exits(x, [depth])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net.forward_exits(x, [depth])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)
