"""A user's own modules (an arch registered in BasicSR's ``ARCH_REGISTRY`` and its adapter, a loss, a data set),
imported before the options are checked: ``--import MODULE`` (repeatable) on every sd-* command, and the top-level
YAML key ``custom_imports: [module, ...]`` (as mmengine's), which sd-train, sd-test and sd-study honour.

A module is looked up on ``sys.path``, then in the current folder (so ``--import my_archs`` finds ./my_archs.py). One
that does not import is refused in one line naming it and why."""
import importlib
import os
import sys

from sd_plugin.errors import ConfigError

KEY = 'custom_imports'
HELP = ('import MODULE before anything else (a module that registers your arch and its adapter: docs/archs.md); '
        'repeatable; looked up on sys.path, then in the current folder')


def import_modules(names, where):
    """Import each module of ``names`` (dotted names); ``where`` names their source for the error ('--import',
    'custom_imports'). Raises ConfigError naming the first module that does not import."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001  (any error of the user's module is reported in one line)
            first = str(err).strip().splitlines()[0] if str(err).strip() else 'no message'
            raise ConfigError(f'{where} {name}: does not import ({type(err).__name__}: {first})') from None


def yaml_imports(opt, where=KEY):
    """The module names of ``opt``'s ``custom_imports`` (a list of dotted names; absent or null: [])."""
    names = opt.get(KEY) if isinstance(opt, dict) else None
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError(f'{where}={names!r}: must be a list of module names, e.g. [my_project.archs]')
    return names


def add_import_option(parser):
    """Add ``--import MODULE`` (repeatable; ``args.imports``, a list) to an argparse parser."""
    parser.add_argument('--import', dest='imports', action='append', default=[], metavar='MODULE', help=HELP)


def split_imports(argv):
    """(``argv`` without its ``--import MODULE`` / ``--import=MODULE`` pairs, the modules), for the commands whose
    command line BasicSR's own parser reads (sd-train, sd-test)."""
    rest, names = [], []
    args = iter(argv)
    for arg in args:
        if arg == '--import':
            name = next(args, None)
            if name is None or name.startswith('-'):
                raise ConfigError('--import: needs a module name, e.g. --import my_project.archs')
            names.append(name)
        elif arg.startswith('--import='):
            names.append(arg.split('=', 1)[1])
        else:
            rest.append(arg)
    return rest, names


def parse_with_imports(parser, argv=None):
    """``parser.parse_args(argv)`` with ``--import MODULE`` added, and those modules imported before returning."""
    add_import_option(parser)
    args = parser.parse_args(argv)
    import_modules(args.imports, '--import')
    return args
