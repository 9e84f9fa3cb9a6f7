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
``img_range``, ``mean``, ...). ``head`` is where the tail's layers come from: ``net`` itself for the teacher, or an
exit head, a module holding fresh copies of ``net``'s tail modules under the same names (``tail_names``).
"""
import inspect

from sd_plugin.errors import ConfigError
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
    """The adapter of ``arch_type``, or a ConfigError naming the archs that have one."""
    if arch_type not in ADAPTERS:
        hint = did_you_mean(arch_type, ADAPTERS) if isinstance(arch_type, str) else ''
        raise ConfigError(f'network_g.arch.type={arch_type!r}: MultiExitSR has no adapter for it; it knows '
                          f'{", ".join(sorted(ADAPTERS))} (a new arch needs an adapter: {DOCS}){hint}')
    return ADAPTERS[arch_type]


def with_defaults(cls, arch_opt):
    """``arch_opt`` (a network_g dict with ``type``) with every keyword default of ``cls.__init__`` filled in."""
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD}
    return {**defaults, **arch_opt}


class Adapter:
    """How one arch family splits into stem, blocks and tail. Subclasses set ``depth_key`` and ``tail_names`` and
    implement ``stem`` and ``tail``; the rest has defaults that fit archs whose blocks are ``net.body``.

    Attributes:
        unit (str): what a depth counts ('block', 'residual group', 'RSTB layer'), for messages and docs.
        depth_key (str): the stock arch's argument that sets the number of units.
        block_attr (str): the attribute holding the units (an ``nn.Sequential`` / ``nn.ModuleList``); their state
            dict keys start with ``<block_attr>.<index>.``.
        tail_names (tuple[str]): the stock arch's modules that form the tail (what follows the blocks); an exit head
            holds fresh copies of them under these names. ``tail_modules`` may narrow them per instance.
    """
    unit = 'block'
    depth_key = 'num_block'
    block_attr = 'body'
    tail_names = ()
    depth_keys = None  # the arguments that stock_options changes (default: depth_key); their defaults are filled in

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

    def scale(self, net):
        """The upscaling factor of ``net``."""
        return net.upscale

    def blocks(self, net):
        """The units of ``net``, in order: the modules ``run_block`` runs one after the other."""
        return list(getattr(net, self.block_attr))

    def tail_modules(self, net):
        """Names of ``net``'s tail modules that this instance has (default: every name of ``tail_names`` it has)."""
        return [name for name in self.tail_names if hasattr(net, name)]

    def stem(self, net, x):
        """(N, C, h, w) LR input -> (features the first unit takes, ``extras``: a dict the tail needs, e.g. the
        global skip)."""
        raise NotImplementedError

    def run_block(self, net, block, feat, extras):
        """One unit: features in, features out."""
        return block(feat)

    def tail(self, net, head, feat, extras):
        """Features after some unit -> (the (N, C, h*s, w*s) SR image, the head's last features before its final
        convolution, or None when the arch has none to offer for feature distillation)."""
        raise NotImplementedError

    def receptive_field(self, net, depth):
        """Radius in LR pixels of the input an output pixel depends on at ``depth`` units; None when an output
        pixel depends on the whole image or on where a tile starts (tiling is then approximate)."""
        return None

    def tile_multiple(self, net):
        """Tiles start at multiples of this many LR pixels (SwinIR: its window size); 1 for convolutional archs."""
        return 1

