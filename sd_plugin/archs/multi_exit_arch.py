"""MultiExitSR: any stock BasicSR arch (EDSR, RCAN, RRDBNet, SRVGGNetCompact, SwinIR, MSRResNet, or a user's own with
an adapter) with extra exits inside its trunk, each a fresh copy of the arch's own tail.

    network_g:
      type: MultiExitSR
      arch: {type: EDSR, num_in_ch: 3, num_out_ch: 3, num_feat: 64, num_block: 16, upscale: 4}
      exits: [4, 8]          # depths in the arch's unit (docs/archs.md)

The stock network's parameters are this module's own, under the stock names: with ``exits: []`` the state dict is
exactly the stock arch's, and it loads strictly both ways. Exit k's head is ``exit_heads.<k>.<tail name>``; the
adapter's ``student_key`` renames the stem, units 1..k and head k to the state dict of the stock arch at depth k
(``adapter.stock_options(arch, k)``; ``student_keys``). A state dict with exits also carries ``multi_exit_options``, the
wrapper's options as JSON bytes (a uint8 tensor), so that a checkpoint alone rebuilds its network
(``options_from_state_dict``).
"""
import inspect
import json
import re
from collections import OrderedDict
from types import SimpleNamespace

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from sd_plugin.archs.adapters import get_adapter
from sd_plugin.archs.adapters.base import with_defaults
from sd_plugin.errors import ConfigError
from sd_plugin.registries import lookup, registry_name
from sd_plugin.text import did_you_mean

OPTIONS_KEY = 'multi_exit_options'


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


def build_stock(arch_opt, key='network_g.arch'):
    """The stock network of ``arch_opt`` (a network_g dict with ``type``), built from BasicSR's ARCH_REGISTRY; an
    argument the arch does not name, or one it needs and lacks, is a ConfigError naming ``key``.its name (SwinIR's
    ``**kwargs`` would swallow a misspelling), and so is an error the arch's own code raises while building."""
    if registry_name(ARCH_REGISTRY, arch_opt['type']) is None:
        raise ConfigError(f'{key}.type={arch_opt["type"]!r}: not registered in BasicSR\'s ARCH_REGISTRY '
                          '(import the module that registers it: --import MODULE, or custom_imports in the YAML)')
    cls = lookup(ARCH_REGISTRY, arch_opt['type'])
    check_arguments(cls, arch_opt, key)
    try:
        return cls(**{k: v for k, v in arch_opt.items() if k != 'type'})
    except ConfigError:
        raise
    except (AssertionError, IndexError, KeyError, RuntimeError, TypeError, ValueError, ZeroDivisionError) as err:
        raise ConfigError(f'{key}: {cls.__name__} cannot be built with {arch_opt} '
                          f'({type(err).__name__}: {str(err).splitlines()[0] if str(err) else "no message"})') from None


def check_arguments(cls, arch_opt, key='network_g.arch'):
    """ConfigError naming ``key``.name for an argument ``cls`` does not name, or one it needs and ``arch_opt``
    lacks."""
    params = inspect.signature(cls.__init__).parameters
    known = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD and n != 'self']
    for name in arch_opt:
        if name != 'type' and name not in known:
            raise ConfigError(f'{key}.{name}: not an argument of {cls.__name__}{did_you_mean(name, known)}')
    missing = [n for n in known if params[n].default is inspect.Parameter.empty and n not in arch_opt]
    if missing:
        raise ConfigError(f'{key}.{missing[0]}: missing; {cls.__name__} has no default for it')


def resolve_arch(arch):
    """(adapter, ``arch`` with the defaults its adapter's depth arguments need) for a ``network_g.arch`` dict, whose
    options the adapter checked (``check_options``: one line, before anything is built)."""
    if not isinstance(arch, dict) or not isinstance(arch.get('type'), str):
        raise ConfigError(f'network_g.arch={arch!r}: must be the stock network_g mapping, with its type (a name)')
    adapter = get_adapter(arch['type'])
    if registry_name(ARCH_REGISTRY, arch['type']) is None:
        build_stock(arch)  # the one-line error
    cls = lookup(ARCH_REGISTRY, arch['type'])
    check_arguments(cls, arch)
    arch = adapter.resolve(cls, dict(arch))
    try:
        adapter.check_options(with_defaults(cls, arch))
    except (KeyError, TypeError) as err:  # a value of the wrong type, which the adapter's checks cannot read
        raise ConfigError(f'network_g.arch: {arch["type"]} options of the wrong type ({type(err).__name__}: '
                          f'{err})') from None
    return adapter, arch


def output_depths(network_opt):
    """The output depths (exits, then the teacher) of a network_g dict, without building it: a MultiExitSR one, or
    an SRResNetMultiExit / MSRResNet one (``num_block``)."""
    exits = sorted(network_opt.get('exits') or [])
    if network_opt.get('type') == 'MultiExitSR':
        adapter, arch = resolve_arch(network_opt.get('arch'))
        return [*exits, adapter.depth(arch)]
    return [*exits, network_opt.get('num_block', 16)]


def student_network_opt(network_opt, depth):
    """The stock network_g of output ``depth`` of a network_g dict: the wrapped arch at ``depth`` for a MultiExitSR,
    ``MSRResNet(num_block=depth)`` for an SRResNetMultiExit / MSRResNet."""
    if network_opt.get('type') == 'MultiExitSR':
        adapter, arch = resolve_arch(network_opt.get('arch'))
        return adapter.stock_options(arch, depth)
    keys = {'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'upscale': 4}
    return {'type': 'MSRResNet', **{k: network_opt.get(k, v) for k, v in keys.items()}, 'num_block': depth}


def student_keys(adapter, state_dict, depth, teacher):
    """{stock name at ``depth``: its name in ``state_dict``} of a MultiExitSR state dict whose teacher has
    ``teacher`` units: ``adapter.student_key`` of every key (the saved options left out)."""
    keys = OrderedDict()
    for key in state_dict:
        name = None if key == OPTIONS_KEY else adapter.student_key(key, depth, teacher)
        if name is not None:
            keys[name] = key
    return keys


def encode_options(options):
    """JSON of ``options`` as a uint8 tensor (a state dict value BasicSR's save_network can ``.cpu()``), or None when
    they are not JSON data."""
    try:
        data = json.dumps(options).encode()
    except (TypeError, ValueError):
        return None
    return torch.tensor(list(data), dtype=torch.uint8)


def options_from_state_dict(state_dict, path=None):
    """``{'arch': stock network_g, 'exits': [...]}`` saved in a MultiExitSR state dict, or None when it has none (a
    stock arch's, an SRResNetMultiExit's). The one reader of the saved options: every tool loads them here.

    ``path``: the file ``state_dict`` was read from, an input: the options are then checked as one, each fault a
    ConfigError naming the file and the key: removed from a wrapped arch's weights, not a uint8 tensor, not JSON
    (truncated, damaged), the wrong types, an arch without an adapter or that cannot be built, another arch or width
    than the weights (stem, tail and first unit compared with the arch built at depth 1), another depth, or exits
    the weights do not hold. Without ``path`` (a network's own state dict) they are only decoded.
    """
    value = state_dict.get(OPTIONS_KEY)
    if path is None:
        return None if value is None else json.loads(bytes(value.tolist()).decode())
    where = f'{path}: {OPTIONS_KEY}'
    heads = sorted({int(m.group(1)) for k in state_dict for m in [re.match(r'exit_heads\.(\d+)\.', k)] if m})
    if value is None:
        if heads and 'upconv1.weight' not in state_dict:  # exit heads, but not an SRResNetMultiExit's
            raise ConfigError(f'{where}: missing, but the weights hold exit heads {heads} of a wrapped arch (the '
                              'file was cut or edited; save it again from its network)')
        return None
    if not torch.is_tensor(value) or value.dtype != torch.uint8 or value.dim() != 1:
        found = f'a {value.dtype} tensor of shape {tuple(value.shape)}' if torch.is_tensor(value) else repr(value)[:60]
        raise ConfigError(f'{where}: must be the JSON of the wrapper\'s options as a 1-D uint8 tensor, found {found}')
    try:
        options = json.loads(bytes(value.tolist()).decode())
    except ValueError:  # UnicodeDecodeError, JSONDecodeError
        raise ConfigError(f'{where}: not JSON (truncated or damaged)') from None
    if not isinstance(options, dict) or not isinstance(options.get('arch'), dict):
        raise ConfigError(f'{where}: must be {{"arch": {{"type": ...}}, "exits": [...]}}, found {str(options)[:80]}')
    try:
        check_saved_layout(options, state_dict, heads)
    except ConfigError as err:
        raise ConfigError(f'{where}: {err}') from None
    return options


def stock_names(adapter, arch, depth):
    """The state dict names of the stock arch ``arch`` at ``depth`` (built on the meta device when the arch can be:
    no weights)."""
    try:
        with torch.device('meta'):
            return set(build_stock(adapter.stock_options(arch, depth)).state_dict())
    except ConfigError:  # an arch whose constructor computes with tensors (SwinIR's attention masks)
        return set(build_stock(adapter.stock_options(arch, depth)).state_dict())


def check_saved_layout(options, state_dict, heads):
    """ConfigError unless the saved ``options`` fit the weights ``state_dict`` (with exit heads ``heads``)."""
    adapter, arch = resolve_arch(options['arch'])
    unit = re.compile(re.escape(adapter.block_attr) + r'\.(\d+)\.')
    try:
        depth = adapter.depth(arch)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f'arch.{adapter.depth_key}={arch.get(adapter.depth_key)!r}: not a depth') from None
    # the weights' stem and first unit (and exit 1's head, if any), renamed by the adapter as the arch at depth 1
    expected = {k: tuple(v.shape) for k, v in build_stock(adapter.stock_options(arch, 1)).state_dict().items()}
    try:
        found = {name: tuple(state_dict[key].shape) if torch.is_tensor(state_dict[key]) else None
                 for name, key in student_keys(adapter, state_dict, 1, depth).items()}
    except (IndexError, KeyError, ValueError):  # keys the adapter cannot read: another arch's
        found = {}
    wrong = [name for name in found if expected.get(name) != found[name]] or ([] if found else ['(no key)'])
    if wrong:
        name = wrong[0]
        raise ConfigError(f'names {arch["type"]} {dict(options["arch"])}, but the weights are another arch\'s or '
                          f'width ({name}: {found.get(name, "absent")} in the weights, {expected.get(name, "absent")} '
                          'in that arch)')
    guess = 1 + max((int(m.group(1)) for k in state_dict for m in [unit.match(k)] if m), default=-1)
    if guess != depth:  # a unit need not be one entry of the list (SRVGG's is two): compare with the stock names
        found = {k for k in state_dict if k != OPTIONS_KEY and not k.startswith('exit_heads.')}
        if stock_names(adapter, arch, depth) != found:
            held = guess if guess >= 1 and stock_names(adapter, arch, guess) == found else 'another number'
            raise ConfigError(f'names a {arch["type"]} of {depth} {adapter.unit}s, the weights hold {held}')
    exits = check_exits(options['exits'], None, depth, f'{arch["type"]} has {depth} {adapter.unit}s')
    if exits != heads:
        raise ConfigError(f'names exits {exits}, the weights hold exit heads {heads}')


def _add_options(module, state_dict, prefix, local_metadata):
    """state_dict post-hook: the wrapper's options under ``multi_exit_options`` (only when it has exits)."""
    if module.exits and module.encoded_options is not None:
        state_dict[prefix + OPTIONS_KEY] = module.encoded_options.clone()


def _drop_options(module, state_dict, prefix, *args):
    """load_state_dict pre-hook: the options are not a parameter; the shapes of the rest say whether they fit."""
    state_dict.pop(prefix + OPTIONS_KEY, None)


class NoHeadFeatures(dict):
    """{depth: head features} of an arch whose adapter has none: asking for one is a ConfigError."""

    def __init__(self, arch_type, features):
        super().__init__(features)
        self.arch_type = arch_type

    def __missing__(self, depth):
        raise ConfigError(f'train.self_distill.feature_distill_opt: the {self.arch_type} adapter gives no head '
                          'features to distil (set it to null)')


@ARCH_REGISTRY.register()
class MultiExitSR(nn.Module):
    """A stock arch with early exits; the API is ``SRResNetMultiExit``'s.

    Args:
        arch (dict): the stock network_g, e.g. ``{type: EDSR, num_feat: 64, num_block: 16, upscale: 4}``; its type
            needs an adapter (``sd_plugin.archs.adapters``).
        exits (list[int]): depths (in the arch's unit) with an exit head, strictly increasing, in [1, depth - 1].
        deploy_exit (int | None): the depth plain ``forward(x)`` returns: None or the teacher depth, or an exit.

    Attributes:
        stock (nn.Module): the stock network, whose parameters, buffers and children are this module's own.
        adapter: how the arch splits into stem, units and tail.
        num_block (int): the teacher depth in the arch's unit (the name ``SelfDistillSRModel`` reads).
        upscale (int): the scale factor.
    """

    def __init__(self, arch, exits=(), deploy_exit=None):
        super().__init__()
        adapter, arch_opt = resolve_arch(arch)
        stock = build_stock(arch_opt)
        depth = len(adapter.blocks(stock))
        exits = check_exits(exits, deploy_exit, depth, f'{arch["type"]} has {depth} {adapter.unit}s')
        # The stock network's parameters, buffers and children ARE this module's (the same dicts), so the state
        # dict has the stock names with no prefix; ``stock`` itself is kept unregistered, for its attributes.
        for name in ('_parameters', '_buffers', '_non_persistent_buffers_set', '_modules'):
            object.__setattr__(self, name, getattr(stock, name))
        object.__setattr__(self, 'stock', stock)
        self.adapter, self.arch_opt, self.exits = adapter, arch_opt, exits
        self.num_block, self.deploy_exit = depth, deploy_exit or depth
        self.upscale = adapter.scale(stock)
        self.num_in_ch = adapter.in_channels(arch_opt)
        self.exit_heads = nn.ModuleDict({str(k): self.make_exit_head(k) for k in exits})
        self.encoded_options = encode_options({'arch': arch_opt, 'exits': exits})
        self.register_state_dict_post_hook(_add_options)
        self.register_load_state_dict_pre_hook(_drop_options)

    def make_exit_head(self, depth):
        """A module holding the tail of a freshly built stock arch at ``depth``: the arch's own initialisation."""
        donor = build_stock(self.adapter.stock_options(self.arch_opt, depth))
        head = nn.Module()
        for name, module in self.adapter.tail_modules(donor).items():
            head.add_module(name, module)
        return head

    def train(self, mode=True):
        super().train(mode)
        self.stock.training = mode
        return self

    @property
    def depths(self):
        """Every output depth, exits first, the teacher last."""
        return [*self.exits, self.num_block]

    def head(self, depth):
        """Where the tail's layers of output ``depth`` are: an exit head, or for the teacher an object whose
        attributes are the stock network's own tail modules (``adapter.tail_modules``)."""
        if depth == self.num_block:
            return SimpleNamespace(**self.adapter.tail_modules(self.stock))
        return self.exit_heads[str(depth)]

    def forward_exits(self, x, depths=None, trunk_grad_scale=1.0, features=False, grad_equilibrium=False):
        """One pass through the trunk, stopping at the deepest requested depth.

        Args:
            x (Tensor): (N, C, h, w) LR input.
            depths (list[int] | None): depths to output; None means every exit and the teacher.
            trunk_grad_scale (float): at each exit, the share of the deeper outputs' gradient that flows back into
                the units before it (the forward pass is unchanged).
            features (bool): also return each head's last features before its final convolution.
            grad_equilibrium (bool): rescale the gradient as ``gradient_scales`` says, instead of
                ``trunk_grad_scale``.
        Returns:
            OrderedDict[int, Tensor]: depth -> (N, C, h*s, w*s) SR output, in increasing depth; with ``features``, a
            pair (outputs, {depth: head features}); the arch's adapter may have none to give (``NoHeadFeatures``).
        """
        depths = self.depths if depths is None else sorted(depths)
        for d in depths:
            if d not in self.depths:
                raise ConfigError(f'exit {d!r}: this model has exits {self.exits} and teacher depth {self.num_block}')
        into_head, into_trunk = gradient_scales(depths, self.exits, trunk_grad_scale, grad_equilibrium)
        adapter, net = self.adapter, self.stock
        feat, extras = adapter.stem(net, x)
        outputs, head_features = OrderedDict(), OrderedDict()
        for depth, block in enumerate(adapter.blocks(net)[:depths[-1]], start=1):
            feat = adapter.run_block(net, block, feat, extras)
            if depth in depths:
                head_in = scale_gradient(feat, into_head.get(depth, 1))
                outputs[depth], head_feat = adapter.tail(net, self.head(depth), head_in, extras)
                if head_feat is not None:
                    head_features[depth] = head_feat
            feat = scale_gradient(feat, into_trunk.get(depth, 1))
        if not features:
            return outputs
        if len(head_features) < len(outputs):
            head_features = NoHeadFeatures(self.arch_opt['type'], head_features)
        return outputs, head_features

    def forward(self, x, all_exits=False, **kwargs):
        """``forward(x)``: the output at ``deploy_exit`` (the teacher by default). ``forward(x, all_exits=True,
        **kwargs)``: ``forward_exits(x, None, **kwargs)``, every output from one trunk pass."""
        if all_exits:
            return self.forward_exits(x, **kwargs)
        return self.forward_exits(x, [self.deploy_exit])[self.deploy_exit]

    def student(self, depth):
        """(stock network_g, state dict) of output ``depth`` as the stock arch: stem, units 1..depth, head depth
        under the tail's stock names (``student_keys``)."""
        state = self.state_dict()
        keys = student_keys(self.adapter, state, depth, self.num_block)
        return self.adapter.stock_options(self.arch_opt, depth), OrderedDict((n, state[k]) for n, k in keys.items())
