"""Names that become folder names (an experiment's ``name``, a data set's ``name``, a study arm, ``sd-prepare
--name``) must be plain names: one path component. ``name: ../../victim`` would otherwise make BasicSR rename a
user's folder outside ``experiments/`` aside, and an arm named so would write outside ``--out``."""
from sd_plugin.errors import ConfigError


def plain_name(key, name):
    """Return ``name`` when it is a plain name, else raise a one-line ConfigError naming ``key``.

    A plain name is a non-empty string of one line without ``/``, ``\\`` or NUL, and not ``.`` or ``..``: used as a
    folder name it stays inside the folder it is joined to.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f'{key}={name!r}: must be a non-empty name (text), e.g. my_experiment')
    bad = next((c for c in ('/', '\\', '\0', '\n', '\r') if c in name), None)
    if bad is not None or name in ('.', '..'):
        why = f'holds {bad!r}' if bad is not None else 'is a path'
        raise ConfigError(f'{key}={name!r}: {why}; it becomes a folder name, so it must be a plain name (one '
                          'path component, e.g. my_experiment)')
    return name
