"""The one exception type the launchers turn into a one-line error message."""


class ConfigError(ValueError):
    """Bad user input: a YAML key, a command-line value or a file. The message names the key, value or file."""
