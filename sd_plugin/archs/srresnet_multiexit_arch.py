"""SRResNetMultiExit: BasicSR's MSRResNet (the teacher) with extra upsampling heads (the exits) inside its trunk."""
from collections import OrderedDict

from basicsr.archs.arch_util import default_init_weights
from basicsr.archs.srresnet_arch import MSRResNet
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from sd_plugin.errors import ConfigError


class ExitHead(nn.Module):
    """MSRResNet's upsampling head, with MSRResNet's parameter names (``upconv1``, ``upconv2`` at x4, ``conv_hr``,
    ``conv_last``), so it maps one-to-one onto the head of a stock ``MSRResNet(num_block=k)``."""

    def __init__(self, num_feat, num_out_ch, upscale):
        super().__init__()
        self.upscale = upscale
        self.upconv1 = nn.Conv2d(num_feat, num_feat * (4 if upscale == 4 else upscale * upscale), 3, 1, 1)
        if upscale == 4:
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2 if upscale == 4 else upscale)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        default_init_weights([m for m in self.children() if isinstance(m, nn.Conv2d)], 0.1)


def upsample(head, feat, base):
    """Run an MSRResNet upsampling head.

    Args:
        head (nn.Module): the teacher (an ``MSRResNet``) or an ``ExitHead``: anything with MSRResNet's head layers.
        feat (Tensor): (N, num_feat, h, w) trunk features.
        base (Tensor): (N, num_out_ch, h*s, w*s) bilinear upsampling of the input, the global skip.
    Returns:
        tuple[Tensor, Tensor]: the SR image, (N, num_out_ch, h*s, w*s), and the head's last features (after
        ``conv_hr`` and its activation), (N, num_feat, h*s, w*s): the layer feature distillation compares.
    """
    out = head.lrelu(head.pixel_shuffle(head.upconv1(feat)))
    if head.upscale == 4:
        out = head.lrelu(head.pixel_shuffle(head.upconv2(out)))
    hr_feat = head.lrelu(head.conv_hr(out))
    return head.conv_last(hr_feat) + base, hr_feat


def scale_gradient(x, scale):
    """``x`` unchanged in the forward pass; in the backward pass its gradient is multiplied by ``scale``."""
    return x if scale == 1 else x * scale + x.detach() * (1 - scale)


def gradient_scales(depths, exits, trunk_grad_scale=1.0, equilibrium=False):
    """Where the backward pass rescales the trunk's gradient, for a pass that outputs ``depths`` (sorted).

    Args:
        depths (list[int]): the output depths this pass runs, increasing (the deepest ends the trunk).
        exits (list[int]): every exit depth of the network.
        trunk_grad_scale (float): at each exit, the share of the deeper outputs' gradient passed back into the units
            before it (``train.self_distill.trunk_grad_scale``).
        equilibrium (bool): gradient equilibrium (Li et al., ICCV 2019): with n outputs run, the gradient entering
            the trunk from head i (0-based) is scaled by 1/(n-i) and the deeper outputs' by (n-i-1)/(n-i) at exit
            i, so the units of stage s (between output s-1 and output s) receive the MEAN of the gradients of the
            n-s outputs that depend on them instead of their sum. Replaces ``trunk_grad_scale``.
    Returns:
        tuple[dict, dict]: ({depth: scale on the gradient from that head into the trunk},
        {exit depth: scale on the gradient from the deeper outputs at that exit}); a depth not listed is 1.
    """
    if equilibrium:
        n = len(depths)
        return ({d: 1 / (n - i) for i, d in enumerate(depths)},
                {d: (n - i - 1) / (n - i) for i, d in enumerate(depths[:-1])})
    return {}, {k: trunk_grad_scale for k in exits}


def check_exits(exits, deploy_exit, depth, depth_text):
    """The exits as a list, after checking them and ``deploy_exit`` against the teacher ``depth`` (in the arch's
    unit); a one-line ConfigError otherwise. ``depth_text`` says what the depth is, e.g. 'num_block=16' or
    'EDSR has 16 blocks'."""
    if not isinstance(exits, (list, tuple)) and exits is not None:
        raise ConfigError(f'network_g.exits={exits!r}: must be a list of depths, e.g. [4, 8]')
    exits = list(exits or [])
    for k in exits:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < depth:
            raise ConfigError(f'network_g.exits={exits}: exit {k!r} must be an integer in [1, {depth - 1}] '
                              f'({depth_text})')
    if exits != sorted(set(exits)):
        raise ConfigError(f'network_g.exits={exits}: must be strictly increasing, without duplicates')
    if deploy_exit not in (None, depth, *exits):
        raise ConfigError(f'network_g.deploy_exit={deploy_exit!r}: must be one of exits {exits} or the teacher '
                          f'depth {depth}')
    return exits


@ARCH_REGISTRY.register()
class SRResNetMultiExit(MSRResNet):
    """MSRResNet with early exits: the first k residual blocks plus exit head k form an SRResNet-k, the student.

    The trunk and the final head are MSRResNet's own (same parameter names), so with ``exits: []`` this is exactly
    ``MSRResNet`` and checkpoints load strictly both ways. Exit k's head is ``exit_heads.<k>.*``.

    Args:
        num_in_ch, num_out_ch, num_feat, num_block, upscale: as ``MSRResNet``; ``upscale`` is 2, 3 or 4.
        exits (list[int]): block depths with an exit head, strictly increasing, each in [1, num_block - 1].
        deploy_exit (int | None): depth that plain ``forward(x)`` returns: None or ``num_block`` for the teacher, or
            one of ``exits``, in which case only the first ``deploy_exit`` blocks run. Lets stock ``SRModel`` and
            ``test_pipeline`` evaluate a student without exporting it.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=4, exits=(), deploy_exit=None):
        if upscale not in (2, 3, 4):
            raise ConfigError(f'network_g.upscale={upscale!r}: must be 2, 3 or 4')
        if not isinstance(num_block, int) or num_block < 1:
            raise ConfigError(f'network_g.num_block={num_block!r}: must be a positive integer')
        exits = check_exits(exits, deploy_exit, num_block, f'num_block={num_block}')
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, upscale)
        self.num_block = num_block
        self.exits = exits
        self.deploy_exit = deploy_exit or num_block
        self.exit_heads = nn.ModuleDict({str(k): ExitHead(num_feat, num_out_ch, upscale) for k in exits})

    @property
    def depths(self):
        """Every output depth, exits first, the teacher (``num_block``) last."""
        return [*self.exits, self.num_block]

    def head(self, depth):
        """The upsampling head at ``depth``: an ``ExitHead``, or the model itself for the teacher."""
        return self if depth == self.num_block else self.exit_heads[str(depth)]

    def forward_exits(self, x, depths=None, trunk_grad_scale=1.0, features=False, grad_equilibrium=False):
        """One pass through the trunk, stopping at the deepest requested depth.

        Args:
            x (Tensor): (N, num_in_ch, h, w) LR input.
            depths (list[int] | None): depths to output; None means every exit and the teacher.
            trunk_grad_scale (float): at each exit, the share of the gradient from the deeper outputs that flows
                back into the blocks before it (the forward pass is unchanged). 1: plain backpropagation.
            features (bool): also return each head's last features (see ``upsample``).
            grad_equilibrium (bool): rescale the gradient as ``gradient_scales`` says, instead of
                ``trunk_grad_scale`` (the forward pass is unchanged).
        Returns:
            OrderedDict[int, Tensor]: depth -> (N, num_out_ch, h*s, w*s) SR output, in increasing depth; with
            ``features``, a pair (outputs, {depth: (N, num_feat, h*s, w*s) head features}).
        """
        depths = self.depths if depths is None else sorted(depths)
        for d in depths:
            if d not in self.depths:
                raise ConfigError(f'exit {d!r}: this model has exits {self.exits} and teacher depth {self.num_block}')
        into_head, into_trunk = gradient_scales(depths, self.exits, trunk_grad_scale, grad_equilibrium)
        base = F.interpolate(x, scale_factor=self.upscale, mode='bilinear', align_corners=False)
        feat = self.lrelu(self.conv_first(x))
        outputs, head_features = OrderedDict(), OrderedDict()
        for depth, block in enumerate(self.body[:depths[-1]], start=1):
            feat = block(feat)
            if depth in depths:
                head_in = scale_gradient(feat, into_head.get(depth, 1))
                outputs[depth], head_features[depth] = upsample(self.head(depth), head_in, base)
            feat = scale_gradient(feat, into_trunk.get(depth, 1))
        return (outputs, head_features) if features else outputs

    def forward(self, x, all_exits=False, **kwargs):
        """``forward(x)``: the output at ``deploy_exit`` (the teacher by default), an (N, C, h*s, w*s) tensor.
        ``forward(x, all_exits=True, **kwargs)``: ``forward_exits(x, None, **kwargs)``, every output from one trunk
        pass. Training calls this form through the (possibly DDP-wrapped) module, so every parameter takes part in
        the graph."""
        if all_exits:
            return self.forward_exits(x, **kwargs)
        return self.forward_exits(x, [self.deploy_exit])[self.deploy_exit]
