"""The exceptions the launchers turn into a one-line message and a non-zero exit, without a traceback. Anything
else is a bug and keeps its traceback."""


class ConfigError(ValueError):
    """Bad user input: a YAML key, a command-line value or a file. The message names the key, value or file."""


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or Inf. The message names the iteration and the loss term."""


class CheckpointSaveError(OSError):
    """A checkpoint or training state could not be written (a full disk, a read-only folder). The message names the
    file; the previous checkpoint is intact."""


USER_ERRORS = (ConfigError, NonFiniteLossError, CheckpointSaveError)
