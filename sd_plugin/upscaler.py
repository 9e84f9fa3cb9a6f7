"""``Upscaler``: one model ready to upscale images, the per-image work that ``sd-upscale``, ``sd-compare``, the
quickstart and ``sd-eval --budget`` share, so that a fixed output and a routed mix (``--budget``) run one way.

    up = Upscaler('net_g_latest.pth', budget=0.7, router='edge')   # or exit=8, or neither: the teacher
    sr = up.upscale(read_image('photo.png'))                      # same kind of image, s times larger
    up.plans[-1].spent                                             # share of the teacher's MACs it spent

Without ``budget`` it is ``sd_plugin.inference.upscale_array`` on the loaded network (tiles, precision, alpha as
there). With ``budget`` (a share of the teacher's MACs in (0, 1]) each ``route_tile`` x ``route_tile`` LR tile gets
the output a router chose (``sd_plugin.routing.plan.route_image``); the routed run does its own exact tiling, so
``tile`` must then be 0.
"""
import torch
from basicsr.utils import tensor2img

from sd_plugin.errors import ConfigError
from sd_plugin.inference import as_channels_last, load_sr_network, upscale_array
from sd_plugin.routing.bicubic import WithBicubic, output_name
from sd_plugin.routing.calibration import load_calibration, to_input
from sd_plugin.routing.plan import (
    DEFAULT_MARGIN,
    DEFAULT_ROUTE_TILE,
    check_budget,
    check_margin,
    check_route_tile,
    needs_gains,
    route_image,
)
from sd_plugin.routing.routers import DEFAULT_ROUTER, ROUTERS, USER_ROUTERS
from sd_plugin.routing.staged import staged


class RoutedNetwork:
    """What ``upscale_array`` needs of a network (``upscale``, ``deploy_exit``, ``parameters``, ``to``, a call on an
    (1, 3, h, w) float tensor), running ``route_image`` instead of one output; each call's plan is appended to
    ``plans``."""

    deploy_exit = None

    def __init__(self, net, stages, budget, router, route_tile, calibration, channels_last=True, margin=DEFAULT_MARGIN):
        self.net, self.stages, self.upscale = net, stages, net.upscale
        self.budget, self.router, self.route_tile, self.calibration = budget, router, route_tile, calibration
        self.channels_last, self.margin = channels_last, margin
        self.plans = []

    def parameters(self):
        return self.net.parameters()

    def to(self, device):
        self.net.to(device)
        return self

    def __call__(self, x, gt=None):
        if self.channels_last:
            x = as_channels_last(x)
        sr, plan = route_image(self.stages, x, self.budget, self.router, self.route_tile, self.calibration, gt,
                               margin=self.margin)
        self.plans.append(plan)
        return sr


class Upscaler:
    """A checkpoint loaded once, for many images.

    Args:
        model (str): checkpoint path (see ``sd_plugin.inference.load_sr_network``); or None with ``loaded``.
        exit (int | None): a fixed output (None: the teacher); not with ``budget``.
        param_key (str | None): weights to use (default: params_ema if present, else params).
        tile, tile_pad, precision, alpha, channels_last, threads: as ``upscale_array``.
        budget (float | None): route tiles under this share of the teacher's MACs; None: one output everywhere.
        router (str): 'edge' or 'learned' (need ``CKPT.routing.json``, ``sd-calibrate``), or 'random' / 'oracle'
            (evaluation).
        route_tile (int): routing tile side in LR pixels.
        margin (float): standard errors of the predicted gain a mix must be ahead of the best fixed output by
            (``sd_plugin.routing.plan.against_fixed``; 0: none).
        bicubic (bool): bicubic upsampling is one more choice, below the cheapest exit (``sd_plugin.routing.bicubic``).
        loaded (tuple | None): (net, info) already loaded (``load_sr_network``, or an ``OnnxNetwork`` and its info
            for a fixed output); ``model`` then only names the checkpoint (its calibration is ``model`` +
            '.routing.json').
    Attributes:
        net, info: as ``load_sr_network`` returns them; ``plans``: the ``RoutePlan`` of each routed call.
    """

    def __init__(self, model, exit=None, param_key=None, tile=0, tile_pad=None, precision='fp32', alpha='bicubic',
                 channels_last=None, threads=None, budget=None, router=DEFAULT_ROUTER, route_tile=DEFAULT_ROUTE_TILE,
                 bicubic=False, loaded=None, margin=DEFAULT_MARGIN):
        if budget is not None and exit is not None:
            raise ConfigError('--exit and --budget: choose one (a fixed output, or a routed mix under a budget)')
        self.net, self.info = loaded if loaded is not None else load_sr_network(model, exit, param_key)
        self.options = dict(tile=tile, tile_pad=tile_pad, precision=precision, alpha=alpha,
                            channels_last=channels_last, threads=threads)
        self.routed = None
        if budget is not None:
            check_budget(budget)
            check_margin(margin)
            if router not in ROUTERS:
                raise ConfigError(f'--router {router!r}: must be one of {", ".join(ROUTERS)}')
            if tile:
                raise ConfigError(f'--tile {tile} and --budget: the routed run tiles by --route-tile (give --tile 0)')
            stages = staged(self.net)
            check_route_tile(stages, route_tile)
            depths = stages.depths  # what the calibration is for
            if bicubic:
                stages = WithBicubic(stages)
            needed = router in USER_ROUTERS and needs_gains(stages, budget)  # not at 1, nor below the cheapest
            calibration = load_calibration(model, depths, self.info.get('param_key')) if needed else None
            self.routed = RoutedNetwork(self.net, stages, budget, router, route_tile, calibration,
                                        channels_last is not False, margin)

    @property
    def plans(self):
        return self.routed.plans if self.routed else []

    @property
    def scale(self):
        return self.info['scale']

    def to(self, device):
        self.net.to(device)
        return self

    def upscale(self, img, progress=None):
        """``img`` as ``sd_plugin.imageio.read_image`` returns it -> the same kind of image, ``scale`` times larger."""
        return upscale_array(self.routed or self.net, img, progress=progress, **self.options)

    @torch.inference_mode()
    def sr_rgb(self, lr, gt=None):
        """uint8 (H*s, W*s, 3) RGB output of a uint8 (H, W, 3) RGB or (H, W) grey LR image (grey replicated), rounded
        as sd-eval rounds it (``tensor2img``); ``gt`` (uint8 HR): for the ``oracle`` router only."""
        x = to_input(lr)
        sr = self.routed(x, gt) if self.routed else self.net(as_channels_last(x))
        return tensor2img(sr, rgb2bgr=False, min_max=(0, 1))


def describe_plan(plan):
    """One line: what ran (one output everywhere, or a routed mix, and why), the MAC share it spent and how many
    tiles each output got."""
    mix = ', '.join(f'{n} {output_name(d, plan.depths)}' for d, n in plan.counts.items() if n)
    return (f'{what_ran(plan)}; spent {plan.executed:.3f} of the teacher\'s MACs (budget {plan.budget:g}; the '
            f'tiles\' own outputs: {plan.spent:.3f}), router {plan.router}; tiles: {mix}')


def what_ran(plan):
    """'ran exit 8 everywhere (fixed, whole image)' or 'ran the routed mix', with the predicted gains compared: of the
    greedy mix from the cheapest output, of the best fixed output that fits and of the greedy mix from it, and the
    margin a mix had to be ahead by."""
    ran = ('the routed mix' if plan.fixed is None else
           f'{output_name(plan.fixed, plan.depths)} everywhere (fixed, whole image)')
    if plan.versus is None:
        return f'ran {ran}'
    best, versus = output_name(plan.versus['depth'], plan.depths), plan.versus
    return (f'ran {ran}; predicted gains: mix from {output_name(plan.depths[0], plan.depths)} {versus["mix"]:.0f}, '
            f'{best} everywhere (the best fixed output that fits) {versus["fixed"]:.0f}, mix from {best} '
            f'{versus["upgraded"]:.0f}; a mix runs when ahead of the fixed exits at its MACs '
            f'({versus["level"]:.0f}) by more than {versus["margin"]:.0f} (--margin)')



def routed_network(model, loaded, budget, router=DEFAULT_ROUTER, route_tile=DEFAULT_ROUTE_TILE, bicubic=False,
                   margin=DEFAULT_MARGIN):
    """The ``RoutedNetwork`` of an already loaded checkpoint (``loaded`` = (net, info) of ``load_sr_network``), for
    ``upscale_array`` with ``tile=0`` (sd-upscale --budget)."""
    return Upscaler(model, budget=budget, router=router, route_tile=route_tile, bicubic=bicubic, loaded=loaded,
                    margin=margin).routed


def report_route(plans, lr_path, route_map=None, log=print):
    """Print the share a routed image spent (and the budget's note), and draw its route map over the LR image
    ``lr_path`` when ``route_map`` names a PNG. ``plans``: the image's new ``RoutedNetwork.plans`` (the first is
    its colour channels'; none when it failed). Returns whether it wrote the route map."""
    from sd_plugin.imageio import read_rgb
    from sd_plugin.routing.route_map import save_route_map
    if not plans:
        return False
    plan = plans[0]
    log(f'{lr_path}: {describe_plan(plan)}')
    if plan.note:
        log(f'{lr_path}: {plan.note}')
    if route_map:
        save_route_map(plan, route_map, read_rgb(lr_path))
        log(f'wrote {route_map}')
    return bool(route_map)
