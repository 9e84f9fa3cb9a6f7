"""Adapters: how ``MultiExitSR`` splits each arch into stem, blocks and tail (one file per family), and the registry
a user's project adds its own arch to (``register_adapter``; docs/archs.md)."""
from . import edsr, msrresnet, rcan, rrdbnet, srvgg, swinir  # noqa: F401  (register)
from .base import ADAPTERS, Adapter, get_adapter, register_adapter, stock_depth, with_defaults

__all__ = ['ADAPTERS', 'Adapter', 'get_adapter', 'register_adapter', 'stock_depth', 'with_defaults']
