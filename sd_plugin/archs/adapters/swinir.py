"""SwinIR: unit = a residual Swin Transformer block (RSTB) of ``layers``; the stem pads the input to a multiple of
the window size (BasicSR's SwinIR needs it), runs ``conv_first`` and ``patch_embed``; the tail is ``norm``,
``patch_unembed``, ``conv_after_body``, the residual to ``conv_first``'s features, the upsampler of
``upsampler`` ('pixelshuffle', 'pixelshuffledirect', 'nearest+conv', or '' for x1 restoration) and the
de-normalisation, cropped back to the unpadded size. Depth k = ``SwinIR(depths=depths[:k], num_heads=num_heads[:k])``.
Windows make a pixel depend on where the image (or a tile) starts: no exact tiling, tiles aligned to the window."""
from torch.nn import functional as F

from sd_plugin.errors import ConfigError

from .base import Adapter, register_adapter
from .edsr import check_img_range

UPSAMPLERS = ('pixelshuffle', 'pixelshuffledirect', 'nearest+conv', '')


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@register_adapter('SwinIR')
class SwinIRAdapter(Adapter):
    unit = 'RSTB layer'
    depth_key = 'depths'
    depth_keys = ('depths', 'num_heads')
    block_attr = 'layers'
    tokens = True
    tail_names = ('norm', 'conv_after_body', 'conv_before_upsample', 'upsample', 'conv_up1', 'conv_up2', 'conv_hr',
                  'conv_last', 'lrelu')

    def check_options(self, arch_opt):
        depths, heads = arch_opt['depths'], arch_opt['num_heads']
        if len(depths) != len(heads):
            raise ConfigError(f'network_g.arch: num_heads={list(heads)} and depths={list(depths)} have unequal '
                              f'lengths ({len(heads)} != {len(depths)}); each RSTB layer needs one of each, and '
                              'exit k is SwinIR(depths=depths[:k], num_heads=num_heads[:k])')
        check_img_range(arch_opt)
        if not all(_count(d) for d in depths) or arch_opt['patch_size'] != 1:
            raise ConfigError(f'network_g.arch: depths={list(depths)} must be whole numbers >= 1 and patch_size='
                              f'{arch_opt["patch_size"]!r} must be 1 (BasicSR\'s SwinIR embeds single pixels)')
        window, size, dim = arch_opt['window_size'], arch_opt['img_size'], arch_opt['embed_dim']
        if not _count(window):
            raise ConfigError(f'network_g.arch.window_size={window!r}: must be a whole number >= 1')
        for side in size if isinstance(size, (list, tuple)) else [size]:
            if not _count(side) or side % window:
                raise ConfigError(f'network_g.arch.img_size={size!r}: must be a positive multiple of window_size='
                                  f'{window} (the attention masks are built for whole windows)')
        for head in heads:
            if not _count(head) or not _count(dim) or dim % head:
                raise ConfigError(f'network_g.arch.num_heads={list(heads)}: each must divide embed_dim={dim!r}')
        upsampler, scale = arch_opt['upsampler'], arch_opt['upscale']
        if upsampler not in UPSAMPLERS:
            raise ConfigError(f'network_g.arch.upsampler={upsampler!r}: must be one of '
                              f'{", ".join(map(repr, UPSAMPLERS))} (another value runs as \'\', x1)')
        if (upsampler == '') != (scale == 1) or (upsampler == 'nearest+conv' and scale != 4):
            need = {'': 'upscale 1', 'nearest+conv': 'upscale 4'}.get(upsampler, 'an upscale > 1')
            raise ConfigError(f'network_g.arch.upsampler={upsampler!r} with upscale={scale!r}: it needs {need}')

    def depth(self, arch_opt):
        return len(arch_opt['depths'])

    def stock_options(self, arch_opt, depth):
        return {**arch_opt, 'depths': list(arch_opt['depths'])[:depth],
                'num_heads': list(arch_opt['num_heads'])[:depth]}

    def tile_multiple(self, net):
        return net.layers[0].residual_group.blocks[0].window_size * net.patch_embed.patch_size[0]

    def stem(self, net, x):
        height, width = x.shape[2:]
        multiple = self.tile_multiple(net)
        pad_h, pad_w = -height % multiple, -width % multiple
        net.mean = net.mean.type_as(x)
        x = (x - net.mean) * net.img_range
        if pad_h or pad_w:  # reflect needs more pixels than it pads: an image smaller than that is replicated
            x = F.pad(x, (0, pad_w, 0, pad_h), 'reflect' if pad_h < height and pad_w < width else 'replicate')
        first = net.conv_first(x)
        x_size = (first.shape[2], first.shape[3])
        tokens = net.patch_embed(first)
        if net.ape:
            tokens = tokens + net.absolute_pos_embed
        extras = {'input': x, 'first': first, 'x_size': x_size, 'out_size': (height * net.upscale,
                                                                             width * net.upscale)}
        return net.pos_drop(tokens), extras

    def block_extras(self, net, size):
        return {'x_size': tuple(size)}

    def run_block(self, net, block, feat, extras):
        return block(feat, extras['x_size'])

    def tail(self, net, head, feat, extras):
        res = head.conv_after_body(net.patch_unembed(head.norm(feat), extras['x_size'])) + extras['first']
        hr_feat = None
        if net.upsampler == 'pixelshuffle':
            hr_feat = head.upsample(head.conv_before_upsample(res))
            out = head.conv_last(hr_feat)
        elif net.upsampler == 'pixelshuffledirect':
            out = head.upsample(res)
        elif net.upsampler == 'nearest+conv':
            out = head.conv_before_upsample(res)
            out = head.lrelu(head.conv_up1(F.interpolate(out, scale_factor=2, mode='nearest')))
            out = head.lrelu(head.conv_up2(F.interpolate(out, scale_factor=2, mode='nearest')))
            hr_feat = head.lrelu(head.conv_hr(out))
            out = head.conv_last(hr_feat)
        else:
            out = extras['input'] + head.conv_last(res)
        height, width = extras['out_size']
        out = out / net.img_range + net.mean
        return out[:, :, :height, :width], None if hr_feat is None else hr_feat[:, :, :height, :width]
