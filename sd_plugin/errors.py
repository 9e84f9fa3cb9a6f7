"""The exceptions the launchers turn into a one-line message and a non-zero exit, without a traceback."""


class ConfigError(ValueError):
    """Bad user input: a YAML key, a command-line value or a file. The message names the key, value or file."""


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or Inf. The message names the iteration and the loss term."""


USER_ERRORS = (ConfigError, NonFiniteLossError)
