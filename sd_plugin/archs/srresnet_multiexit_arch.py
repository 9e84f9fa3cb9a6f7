"""SRResNetMultiExit: the MSRResNet case of ``MultiExitSR`` (one implementation), under its own registered name and
arguments, so that option files and checkpoints made with it keep working: BasicSR's MSRResNet (the teacher) with
extra upsampling heads (the exits) inside its trunk."""
import re

from basicsr.archs.arch_util import default_init_weights
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from sd_plugin.archs.multi_exit_arch import MultiExitSR, check_exits
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


def infer_arch(state_dict):
    """The SRResNetMultiExit options an SRResNetMultiExit / MSRResNet state dict (or {name: tensor of that shape})
    was made with, read off its keys and shapes (its checkpoints do not save them).

    Returns:
        dict: ``num_in_ch``, ``num_out_ch``, ``num_feat``, ``num_block`` (0 when no ``body.<i>`` key),
        ``upscale``, ``exits`` (the ``exit_heads.<k>`` found).
    """
    if 'conv_first.weight' not in state_dict or 'conv_last.weight' not in state_dict:
        raise ConfigError('not an MSRResNet / SRResNetMultiExit state dict (no conv_first / conv_last)')
    blocks = {int(m.group(1)) for k in state_dict for m in [re.match(r'body\.(\d+)\.', k)] if m}
    exits = sorted({int(m.group(1)) for k in state_dict for m in [re.match(r'exit_heads\.(\d+)\.', k)] if m})
    num_feat, num_in_ch = state_dict['conv_first.weight'].shape[:2]
    if 'upconv2.weight' in state_dict:
        upscale = 4
    elif 'upconv1.weight' not in state_dict:
        raise ConfigError('not an MSRResNet / SRResNetMultiExit state dict (no upconv1), nor a MultiExitSR one (no '
                          'multi_exit_options)')
    else:
        upscale = round((state_dict['upconv1.weight'].shape[0] // num_feat)**0.5)
    return dict(num_in_ch=num_in_ch, num_out_ch=state_dict['conv_last.weight'].shape[0], num_feat=num_feat,
                num_block=max(blocks) + 1 if blocks else 0, upscale=upscale, exits=exits)


def inferred_options(state_dict):
    """``{'arch': MSRResNet network_g, 'exits': [...]}`` of an SRResNetMultiExit / MSRResNet state dict
    (``infer_arch``): the wrapper options a MultiExitSR checkpoint saves (``options_from_state_dict``)."""
    arch = infer_arch(state_dict)
    exits = arch.pop('exits')
    return {'arch': {'type': 'MSRResNet', **arch}, 'exits': exits}


@ARCH_REGISTRY.register()
class SRResNetMultiExit(MultiExitSR):
    """MSRResNet with early exits: the first k residual blocks plus exit head k form an SRResNet-k, the student. It is
    ``MultiExitSR(arch={type: MSRResNet, ...})`` (its adapter, forward and ``forward_exits``) with three things kept
    as they were: the arguments, exit heads initialised as ``ExitHead`` (so a seed gives the weights it gave), and
    checkpoints without the saved wrapper options (``sd_plugin.export`` reads them off their keys and shapes).

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
        arch = dict(type='MSRResNet', num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat,
                    num_block=num_block, upscale=upscale)
        super().__init__(arch, exits, deploy_exit)
        self.encoded_options = None  # its checkpoints keep their layout: no multi_exit_options

    def make_exit_head(self, depth):
        """An ``ExitHead``: MSRResNet's head alone, initialised as SRResNetMultiExit always initialised it."""
        return ExitHead(self.arch_opt['num_feat'], self.arch_opt['num_out_ch'], self.arch_opt['upscale'])

    def head(self, depth):
        """The upsampling head at ``depth``: an ``ExitHead``, or the model itself for the teacher (the adapter's
        ``tail`` reads the same names on both)."""
        return self if depth == self.num_block else self.exit_heads[str(depth)]
