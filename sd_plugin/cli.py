"""What every command-line entry point shares: bad input ends in one line on stderr and a non-zero exit."""
import functools
import sys

from sd_plugin.errors import ConfigError


def one_line_errors(prog):
    """Decorator for a ``main``: a ConfigError (bad key, value or file) prints ``<prog>: error: <message>`` and
    exits with status 2, without a traceback. Any other exception is a bug and keeps its traceback."""

    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except ConfigError as err:
                print(f'{prog}: error: {err}', file=sys.stderr)
                sys.exit(2)
        return run
    return wrap
