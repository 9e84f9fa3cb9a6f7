"""Wrapped archs at inference: a MultiExitSR checkpoint, or a student ``sd-export`` cut out of one (EDSR, RCAN,
RRDBNet, SwinIR, a user's arch with an adapter), loaded as a ``MultiExitSR`` whose plain forward is the chosen output;
and how tiles are padded and aligned for each arch. ``sd_plugin.inference.load_sr_network`` and ``run_network`` call
it; SRResNetMultiExit / MSRResNet checkpoints keep their own path there.

Tiling: an arch whose adapter gives a receptive field (MSRResNet, EDSR, RRDBNet) is tiled exactly with that padding.
RCAN (channel attention pools the whole image) and SwinIR (shifted windows) have none: their tiles get
``APPROX_PAD`` LR pixels of padding, and SwinIR's tiles and padding are whole windows, so every tile's windows lie
on the whole image's window grid (docs/archs.md gives the measured difference).
"""
import math

import torch

from sd_plugin.errors import ConfigError

APPROX_PAD = 16  # LR pixels of padding for archs without a finite receptive field (rounded up to whole windows)


def wrapped_options(ckpt, state, path=None):
    """``{'arch': stock network_g, 'exits': [...]}`` when ``state`` comes from a MultiExitSR (options saved in it)
    or is a student that sd-export cut out of one (its ``sd_plugin.arch`` names a type other than MSRResNet, which
    keeps its SRResNet path); else None. ``path``: the file, whose saved options are checked
    (``options_from_state_dict``)."""
    from sd_plugin.archs.multi_exit_arch import options_from_state_dict
    options = options_from_state_dict(state, path)
    if options is not None:
        return options
    meta = ckpt.get('sd_plugin') if isinstance(ckpt, dict) else None  # sd-export's record, an input too
    arch = meta.get('arch') if isinstance(meta, dict) else None
    if isinstance(arch, dict) and arch.get('type') not in (None, 'MSRResNet'):
        return {'arch': arch, 'exits': []}
    return None


def load_wrapped(path, key, state, options, exit=None):
    """The network of a wrapped checkpoint for inference, as ``load_sr_network`` returns it.

    Returns:
        tuple[MultiExitSR, dict]: the network (CPU, float32, eval, no grad; ``deploy_exit`` = the chosen depth) and
        ``info`` with ``load_sr_network``'s keys (``receptive_field``: the default tile padding; ``exact_tiles``:
        whether it is a receptive field, so that tiles are exact); ``kind`` is 'multi-exit' or the arch's type;
        ``arch`` is ``{type: MultiExitSR, arch: stock network_g, exits, num_block: teacher depth (the arch's unit),
        num_feat, upscale}``.
    """
    from sd_plugin.archs.multi_exit_arch import MultiExitSR
    try:
        net = MultiExitSR(arch=options['arch'], exits=options['exits'])
    except ConfigError as err:
        raise ConfigError(f'{path}: {err}') from None
    depth = net.num_block if exit is None else exit
    if depth not in net.depths:
        if net.exits:
            raise ConfigError(f'--exit {exit}: {path} has exits {net.exits} and teacher depth {net.num_block}')
        raise ConfigError(f'--exit {exit}: {path} is a single-output {options["arch"]["type"]} with {net.num_block} '
                          f'{net.adapter.unit}s (leave --exit out)')
    try:
        net.load_state_dict(state, strict=True)  # copies fp16 / bf16 parameters into the float32 network
    except RuntimeError as err:
        raise ConfigError(f'{path}: does not fit its {options["arch"]["type"]} options '
                          f'({str(err).splitlines()[0]})') from None
    net.deploy_exit = depth
    net.eval().requires_grad_(False)
    arch_opt = net.arch_opt
    dtypes = sorted({str(v.dtype).replace('torch.', '') for v in state.values()
                     if torch.is_tensor(v) and v.is_floating_point()})
    info = {'path': path, 'param_key': key, 'kind': 'multi-exit' if net.exits else arch_opt['type'],
            'arch': {'type': 'MultiExitSR', 'arch': arch_opt, 'exits': net.exits, 'num_block': net.num_block,
                     'num_feat': arch_opt.get('num_feat', arch_opt.get('embed_dim')), 'upscale': net.upscale},
            'depth': depth, 'unit': net.adapter.unit, 'scale': net.upscale, 'receptive_field': tile_padding(net, depth),
            'exact_tiles': net.adapter.receptive_field(net.stock, depth) is not None,
            'params': sum(v.numel() for v in net.student(depth)[1].values()), 'stored_dtype': '/'.join(dtypes)}
    return net, info


def tile_multiple(net):
    """Tiles and their padding are multiples of this many LR pixels (SwinIR: its window; else 1)."""
    adapter = getattr(net, 'adapter', None)
    return 1 if adapter is None else adapter.tile_multiple(net.stock)


def tile_padding(net, depth):
    """Default tile padding of a wrapped ``net`` at ``depth``: its receptive field (exact tiling), or, for an arch
    without one, ``APPROX_PAD``; rounded up to a multiple of ``tile_multiple`` (whole windows, whole unshuffled
    pixels)."""
    field = net.adapter.receptive_field(net.stock, depth)
    multiple = tile_multiple(net)
    return math.ceil((APPROX_PAD if field is None else field) / multiple) * multiple


def align_tile(net, tile):
    """``tile`` rounded up to a multiple of ``tile_multiple(net)`` (0 stays 0: one pass)."""
    multiple = tile_multiple(net)
    return tile if tile <= 0 else math.ceil(tile / multiple) * multiple
