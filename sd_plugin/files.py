"""Writing files without losing any: atomic writes, outputs kept apart from inputs, and folders a tool owns.

The guarantees every command of the plugin keeps:
  * a file is written under a temporary name in its folder and renamed into place, so a crash or a full disk never
    leaves a half-written file under the final name, and the previous version stays intact;
  * an output is never one of the inputs, nor a folder that holds one (``check_apart``);
  * a tool deletes only what it created: a folder it may clear carries its marker file (``claim_folder``).
"""
import os
import tempfile
from os import path as osp

from sd_plugin.errors import ConfigError


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, mode='wb'):
    """Call ``write(file)`` on a temporary file in ``path``'s folder, fsync it, give it the permissions a plain
    ``open(path, 'w')`` would (0666 minus the umask), and rename it over ``path``. On any error the temporary file
    is removed, ``path`` keeps its old content, and the error propagates."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def is_leftover_tmp(name, final_names=None):
    """True for a temporary file ``atomic_write`` leaves behind when killed: ``.<final name>.<random>.tmp``."""
    if not (name.startswith('.') and name.endswith('.tmp')):
        return False
    return final_names is None or any(name.startswith(f'.{final}.') for final in final_names)


def _inside(child, parent):
    child, parent = osp.realpath(child), osp.realpath(parent)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def check_apart(outputs, inputs):
    """Raise ConfigError when an output path is an input, or a folder that holds one.

    Args:
        outputs (dict[str, str]): {what names it, e.g. '--out': path}.
        inputs (dict[str, str | list[str]]): {what names it, e.g. '--hr': path or paths}.
    """
    for out_key, out in outputs.items():
        if out is None:
            continue
        for in_key, paths in inputs.items():
            for path in [paths] if isinstance(paths, (str, os.PathLike)) else (paths or []):
                if path is not None and _inside(path, out):
                    same = osp.realpath(path) == osp.realpath(out)
                    raise ConfigError(f'{out_key} {out}: {"is" if same else "holds"} the input {in_key} {path}; '
                                      'an output must never replace an input')


MARKER = '.sd_plugin_owner'


def claim_folder(folder, tool):
    """Make ``folder`` a folder that ``tool`` owns: create it with a marker file, or accept it when it is empty or
    already carries ``tool``'s marker. Any other existing path is refused (ConfigError), so the tool never clears
    a folder it did not create. Returns True when the folder held an earlier run of ``tool``."""
    marker = osp.join(folder, MARKER)
    if osp.lexists(folder):
        if not osp.isdir(folder) or osp.islink(folder):
            raise ConfigError(f'--out {folder}: exists and is not a folder')
        if osp.isfile(marker):
            with open(marker) as f:
                owner = f.read().strip()
            if owner != tool:
                raise ConfigError(f'--out {folder}: belongs to {owner}, not {tool}')
            return True
        if os.listdir(folder):
            raise ConfigError(f'--out {folder}: exists and was not made by {tool}; choose a new or empty folder '
                              '(nothing was deleted)')
    os.makedirs(folder, exist_ok=True)
    with open(marker, 'w') as f:
        f.write(tool + '\n')
    return False


def shipped_options(*parts):
    """Path of a file or folder of the option files shipped with the package (``sd_plugin.options``, the
    repository's ``options/``), e.g. ``shipped_options('cpu')``; a ConfigError when the installation lacks it."""
    from importlib import resources
    try:
        root = str(resources.files('sd_plugin.options'))
    except ModuleNotFoundError:
        root = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'options')
    path = osp.join(root, *parts)
    if not osp.exists(path):
        raise ConfigError(f'{path}: not found in this installation of sd_plugin (reinstall it, or give the path)')
    return path
