"""The exceptions the launchers turn into a one-line message and a non-zero exit, without a traceback. Anything
else is a bug and keeps its traceback."""


class ConfigError(ValueError):
    """Bad user input: a YAML key, a command-line value or a file. The message names the key, value or file."""


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or Inf. The message names the iteration and the loss term."""


class CheckpointSaveError(OSError):
    """A checkpoint or training state could not be written (a full disk, a read-only folder). The message names the
    file; the previous checkpoint is intact."""


class WriteError(OSError):
    """A file could not be written (a full disk, a read-only or missing folder, a folder at the file's name): raised
    by ``sd_plugin.files.atomic_write``, the one place every write goes through. ``filename`` is the file; ``errno``
    and ``strerror`` are the system's; ``cause`` is the original error. Its message is one line: ``cannot write PATH
    (reason)``."""

    def __init__(self, path, err):
        super().__init__(getattr(err, 'errno', None), getattr(err, 'strerror', None) or str(err), str(path))
        self.cause = err

    def __str__(self):
        return f'cannot write {self.filename} ({self.strerror})'


USER_ERRORS = (ConfigError, NonFiniteLossError, CheckpointSaveError, WriteError)
