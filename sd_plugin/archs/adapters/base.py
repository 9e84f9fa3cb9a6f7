"""The adapter interface: how ``MultiExitSR`` runs a stock arch in three pieces (stem, blocks, tail), and the
registry that maps an arch's ``type`` to its adapter.

A user's own arch gets an adapter from outside the package (docs/archs.md, "Adapters")::

    from sd_plugin.archs.adapters import Adapter, register_adapter

    @register_adapter('MyNet')          # the name the arch has in BasicSR's ARCH_REGISTRY
    class MyNetAdapter(Adapter):
        depth_key = 'num_block'         # the argument of MyNet that sets its depth
        tail_names = ('conv_after_body', 'upsample', 'conv_last')
        def stem(self, net, x): ...     # -> (features, extras)
        def tail(self, net, head, feat, extras): ...  # -> (SR image, head features or None)

Every method gets ``net``, the stock network as built from ``network_g.arch`` (its own attributes: ``upscale``,
``img_range``, ``mean``, ...). ``head`` is where the tail's layers come from: for the teacher, an object whose
attributes are ``tail_modules(net)`` (``net``'s own tail); for an exit, an exit head, a module holding fresh copies
of a stock arch's tail modules under the same names. docs/archs.md lists every hook with its shapes.
"""
import inspect
import re

from sd_plugin.errors import ConfigError
from sd_plugin.registries import aliases
from sd_plugin.text import did_you_mean

ADAPTERS = {}  # arch type -> Adapter instance
DOCS = 'docs/archs.md, section "Adapters"'


def register_adapter(arch_type):
    """Class decorator: register an ``Adapter`` subclass for the arch registered in BasicSR as ``arch_type``."""
    def register(cls):
        ADAPTERS[arch_type] = cls()
        return cls
    return register


def get_adapter(arch_type):
    """The adapter of ``arch_type`` (or of the name BasicSR's suffix fallback takes it for: ``SRVGGNetCompact`` and
    ``SRVGGNetCompact_basicsr`` are one arch), or a ConfigError naming the archs that have one."""
    for name in aliases(arch_type):
        if name in ADAPTERS:
            return ADAPTERS[name]
    hint = did_you_mean(arch_type, ADAPTERS) if isinstance(arch_type, str) else ''
    raise ConfigError(f'network_g.arch.type={arch_type!r}: MultiExitSR has no adapter for it; it knows '
                      f'{", ".join(sorted(ADAPTERS))} (a new arch needs an adapter: {DOCS}){hint}')


def stock_depth(net):
    """The number of units of ``net``, a stock network of an arch with an adapter (its class name is the arch's
    registered name: ``len(adapter.blocks(net))``); None for any other network."""
    try:
        return len(get_adapter(type(net).__name__).blocks(net))
    except (ConfigError, AttributeError, TypeError):
        return None


def with_defaults(cls, arch_opt):
    """``arch_opt`` (a network_g dict with ``type``) with every keyword default of ``cls.__init__`` filled in."""
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD}
    return {**defaults, **arch_opt}


class Adapter:
    """How one arch family splits into stem, units and tail. Subclasses set ``depth_key`` and ``tail_names`` and
    implement ``stem`` and ``tail``; the rest has defaults that fit archs whose units are ``net.<block_attr>`` and
    whose tail modules are attributes of ``net``. Training, export, tiling and routing use only these hooks.

    Attributes:
        unit (str): what a depth counts ('block', 'residual group', 'RSTB layer'), for messages and docs.
        depth_key (str): the stock arch's argument that sets the number of units.
        block_attr (str): the attribute holding the units (an ``nn.Sequential`` / ``nn.ModuleList``); their state
            dict keys start with ``<block_attr>.<index>.`` (the defaults of ``blocks`` and ``student_key``).
        tail_names (tuple[str]): the stock arch's modules that form the tail (what follows the units); an exit head
            holds fresh copies of them under these names. ``tail_modules`` may narrow them per instance.
        tokens (bool): False: the features between units are (N, C, h, w) maps at the LR resolution. True: they are
            (N, h*w, C) tokens of such a map, row by row (SwinIR, HAT); routing turns them into the map to crop it.
    """
    unit = 'block'
    depth_key = 'num_block'
    block_attr = 'body'
    tail_names = ()
    depth_keys = None  # the arguments that stock_options changes (default: depth_key); their defaults are filled in
    tokens = False

    def resolve(self, cls, arch_opt):
        """``arch_opt`` with the arch's defaults filled in for the arguments ``stock_options`` changes, so that the
        network_g printed for a student names them."""
        defaults = with_defaults(cls, {})
        keys = self.depth_keys or (self.depth_key,)
        return {**arch_opt, **{key: defaults[key] for key in keys if key in defaults and key not in arch_opt}}

    def stock_options(self, arch_opt, depth):
        """The stock network_g of the arch at ``depth`` units (``arch_opt`` with the depth argument set)."""
        return {**arch_opt, self.depth_key: depth}

    def depth(self, arch_opt):
        """The number of units of the arch ``arch_opt`` (resolved: ``resolve``) builds."""
        return arch_opt[self.depth_key]

    def check_options(self, arch_opt):
        """Raise ConfigError when ``arch_opt`` (with defaults filled in) cannot be cut at every depth."""

    def in_channels(self, arch_opt):
        """The channels of the LR input of the arch ``arch_opt`` (``num_in_ch``, SwinIR's ``in_chans``; else 3)."""
        return arch_opt.get('num_in_ch', arch_opt.get('in_chans', 3))

    def scale(self, net):
        """The upscaling factor of ``net``."""
        return net.upscale

    def blocks(self, net):
        """The units of ``net``, in order: what ``run_block`` runs one after the other (modules, or anything
        ``run_block`` takes, e.g. a (conv, activation) pair); their number is the depth."""
        return list(getattr(net, self.block_attr))

    def tail_modules(self, net):
        """{name: module} of ``net``'s tail: what an exit head copies, under those names, and what ``tail`` reads as
        ``head.<name>`` (default: every name of ``tail_names`` that ``net`` has, as ``getattr(net, name)``)."""
        return {name: getattr(net, name) for name in self.tail_names if hasattr(net, name)}

    def student_key(self, key, depth, teacher):
        """The stock state dict name, in the arch at ``depth`` units, of ``key`` (a name in a MultiExitSR state
        dict whose teacher has ``teacher`` units), or None when output ``depth`` does not use it. Exit head k's
        names are ``exit_heads.<k>.<tail name>.*``. ``sd-export`` and ``MultiExitSR.student`` cut students with it;
        for each depth it must map the keys it keeps one to one onto the stock arch's state dict.

        Default: a unit ``<block_attr>.<i>.*`` is kept for i < depth; ``exit_heads.<depth>.<name>.*`` becomes
        ``<name>.*``; the teacher's own tail (``tail_names``) is kept at the teacher depth only; every other key
        (the stem) is kept as it is."""
        if key.startswith('exit_heads.'):
            prefix = f'exit_heads.{depth}.'
            return key[len(prefix):] if key.startswith(prefix) else None
        unit = re.match(re.escape(self.block_attr) + r'\.(\d+)\.', key)
        if unit:
            return key if int(unit.group(1)) < depth else None
        if key.split('.', 1)[0] in self.tail_names:
            return key if depth == teacher else None
        return key

    def stem(self, net, x):
        """(N, C, h, w) LR input -> (features the first unit takes, ``extras``: a dict that ``run_block`` and
        ``tail`` read, e.g. the global skip)."""
        raise NotImplementedError

    def block_extras(self, net, size):
        """The extras ``run_block`` reads, for features of an (h, w) = ``size`` LR map (SwinIR: ``{'x_size':
        size}``). Routing runs units on crops of the map and passes these; ``stem`` must put the same keys in its
        extras. Default: {} (``run_block`` reads none)."""
        return {}

    def run_block(self, net, block, feat, extras):
        """One unit: features in, features out (same shape). ``extras``: the stem's (training) or
        ``block_extras`` of the crop (routing)."""
        return block(feat)

    def tail(self, net, head, feat, extras):
        """Features after some unit -> (the (N, C, h*s, w*s) SR image, the head's last features before its final
        convolution, or None when the arch has none to offer for feature distillation). ``head.<name>`` are the
        tail's modules (``tail_modules``): the teacher's own or exit head k's."""
        raise NotImplementedError

    def tail_halo(self, net):
        """LR pixels of context ``crop_tail`` reads on each side for an exact crop, or None when it has no finite
        field (default: ``receptive_field(net, 0)``: the stem, which the default reruns for the extras, and the
        tail)."""
        return self.receptive_field(net, 0)

    def crop_tail(self, net, head, feat, x, margins):
        """``tail`` on a crop (routing): ``feat`` the features after some unit on an (h, w) LR crop, ``x`` the
        (N, C, h, w) LR input of the same crop, ``margins`` = (top, bottom, left, right) LR pixels of context around
        the pixels wanted (each 0, below ``tail_halo`` at the image border, or ``tail_halo``) -> the SR image of
        the wanted pixels, (N, C, (h - top - bottom) * s, (w - left - right) * s). Default: the stem's extras
        recomputed from ``x``, ``tail``, the margins cut off the SR image. An adapter may cut the context earlier
        (MSRResNet: after each layer), so that its high-resolution layers compute little of it; it then says what
        that costs (``crop_tail_macs``)."""
        sr = self.tail(net, head, feat, self.stem(net, x)[1])[0]
        return trim(sr, [m * self.scale(net) for m in margins])

    def crop_tail_macs(self, net, head, size, margins):
        """The multiply-accumulates (convolutions and matrix products, as ``torch.utils.flop_counter`` counts them)
        that ``crop_tail`` runs on an (h, w) = ``size`` crop with ``margins``, or None when they are the stem's and
        the tail's MACs per LR pixel times h * w (the default ``crop_tail``'s). Routing plans its budget with it."""
        return None

    def receptive_field(self, net, depth):
        """Radius in LR pixels of the input an output pixel depends on at ``depth`` units; None when an output
        pixel depends on the whole image or on where a tile starts (tiling is then approximate)."""
        return None

    def tile_multiple(self, net):
        """Tiles start at multiples of this many LR pixels (SwinIR: its window size); 1 for convolutional archs.
        Routing pads the input to such a multiple (reflect, as SwinIR does) before the stem."""
        return 1


def trim(t, cut):
    """(N, C, H, W) tensor less ``cut`` = (top, bottom, left, right) pixels."""
    top, bottom, left, right = cut
    return t[..., top:t.shape[-2] - bottom, left:t.shape[-1] - right]
