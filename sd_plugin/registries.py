"""BasicSR's suffix fallback, in one place: ``Registry.get(name)`` falls back to ``<name>_basicsr`` when ``name`` is
not registered (basicsr 1.4.2 registers ``SRVGGNetCompact`` and ``UNetDiscriminatorSN`` so). Every check of the
plugin that a ``type`` is registered, and every adapter look-up, goes through ``registry_name`` / ``aliases``, so
``arch: {type: SRVGGNetCompact}`` works wherever BasicSR's own ``get`` does."""
SUFFIX = '_basicsr'  # what BasicSR's Registry.get appends (its default ``suffix='basicsr'``)


def aliases(name):
    """The names BasicSR's ``get`` takes as ``name``: ``name`` itself, then ``<name>_basicsr`` (or, for a suffixed
    name, the name without the suffix), e.g. ``['SRVGGNetCompact', 'SRVGGNetCompact_basicsr']``."""
    if not isinstance(name, str):
        return []
    return [name, name[:-len(SUFFIX)] if name.endswith(SUFFIX) else name + SUFFIX]


def registry_name(registry, name):
    """The name under which ``registry`` (a BasicSR ``Registry``) holds ``name`` (one of ``aliases(name)``), e.g.
    ``SRVGGNetCompact_basicsr`` for ``SRVGGNetCompact``; None when it holds none of them."""
    for candidate in aliases(name):
        if candidate in registry:
            return candidate
    return None


def lookup(registry, name):
    """``registry.get(name)`` with BasicSR's suffix fallback but without its print; KeyError when not registered."""
    found = registry_name(registry, name)
    if found is None:
        raise KeyError(name)
    return registry.get(found)
