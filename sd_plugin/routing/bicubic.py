"""``--bicubic``: bicubic interpolation of the LR tile as one more choice, below the cheapest exit (issue 17's optional
zero-cost output for the flattest tiles).

``WithBicubic(stages)`` is a staged network (``sd_plugin.routing.staged``) whose outputs are ``[0] + stages.depths``:
output 0 is PyTorch's bicubic upsampling (``align_corners=False``; it reads 2 LR pixels on each side, replicated at
the image border, so a crop with 2 pixels of context gives the whole image's pixels). It runs no convolution. The
shared trunk still runs up to the first exit on the whole image (``trunk_depth``), so the ``learned`` router sees
the same features, and a bicubic tile saves the cheapest exit's head (its costly high-resolution layers); the
deeper blocks run only where tiles routed deeper need them, as before.

The routers predict the gain of the cheapest exit over bicubic with the ``edge`` table (``calibration``: the
``bicubic`` row of the edge entry), whatever router ranks the exits: a flat tile is what bicubic is good for, and
the edge score measures flatness at no cost. ``random`` draws the same share for both; ``oracle`` measures it.
"""
from torch.nn import functional as F

from sd_plugin.routing.staged import trim

BICUBIC = 0  # the output "depth" of bicubic
BICUBIC_HALO = 2  # LR pixels a bicubic output pixel reads on each side


def bicubic(x, scale):
    """(N, 3, h, w) LR in [0, 1] -> (N, 3, h*s, w*s) PyTorch bicubic upsampling (not clamped)."""
    return F.interpolate(x, scale_factor=scale, mode='bicubic', align_corners=False)


class WithBicubic:
    """``stages`` with bicubic as output 0 (module docstring); everything else is ``stages``' own."""

    def __init__(self, stages):
        self.inner = stages
        self.depths = [BICUBIC, *stages.depths]
        self.head_halo = max(stages.head_halo, BICUBIC_HALO)

    def __getattr__(self, name):  # scale, exact, note, tile_multiple, trunk_depth, prepare, stem, advance, ...
        return getattr(self.inner, name)

    def head(self, feat, depth, x, margins=(0, 0, 0, 0)):
        if depth != BICUBIC:
            return self.inner.head(feat, depth, x, margins)
        return trim(bicubic(x, self.scale), [m * self.scale for m in margins])

    def macs_per_pixel(self, depth):
        """Bicubic: the shared trunk's MACs (it runs on every tile); else the output's own."""
        return self.inner.trunk_macs_per_pixel() if depth == BICUBIC else self.inner.macs_per_pixel(depth)

    def head_macs_per_pixel(self, depth):
        return 0 if depth == BICUBIC else self.inner.head_macs_per_pixel(depth)

    def head_macs(self, depth, height, width, margins):
        return 0 if depth == BICUBIC else self.inner.head_macs(depth, height, width, margins)


def output_name(depth, depths):
    """'bicubic', 'teacher' or 'exit D' for output ``depth`` of a network with outputs ``depths``."""
    return 'bicubic' if depth == BICUBIC else 'teacher' if depth == depths[-1] else f'exit {depth}'
