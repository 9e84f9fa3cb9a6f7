"""What every command-line entry point shares: bad input ends in one line on stderr and a non-zero exit."""
import functools
import sys

from sd_plugin.errors import USER_ERRORS


def one_line_errors(prog):
    """Decorator for a ``main``: a ConfigError (bad key, value or file) or NonFiniteLossError prints
    ``<prog>: error: <message>`` and exits with status 2, without a traceback; Ctrl-C (KeyboardInterrupt) that the
    command does not handle itself prints ``<prog>: interrupted ...`` and exits with status 130. Any other exception
    is a bug and keeps its traceback. An error re-raised from a DataLoader worker carries the worker's traceback in
    its message: only its last line, the original message, is printed."""

    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except USER_ERRORS as err:
                message = str(err).strip().splitlines()[-1]
                message = message.split(f'{type(err).__name__}: ', 1)[-1]
                print(f'{prog}: error: {message}', file=sys.stderr)
                sys.exit(2)
            except KeyboardInterrupt:
                print(f'\n{prog}: interrupted; every file is written whole or not at all, so what it had not yet '
                      'written is simply absent', file=sys.stderr)
                sys.exit(130)
        return run
    return wrap
