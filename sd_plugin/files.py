"""Writing files without losing any: atomic writes, outputs kept apart from inputs, and folders a tool owns.

The guarantees every command of the plugin keeps:
  * a file is written under a temporary name in its folder and renamed into place, so a crash or a full disk never
    leaves a half-written file under the final name, and the previous version stays intact;
  * an output is never one of the inputs, nor a folder that holds one (``check_apart``);
  * a tool deletes only what it created: a folder it may clear carries its marker file (``claim_folder``), and the
    files it wrote into a folder are listed there (``record_written``), so a rerun replaces or removes only those;
  * before any work, the outputs are checked as a whole (``plan_outputs``): never a file the run reads, never two
    outputs at one path, an existing file replaced only when the user says so, and a folder that can take them;
  * a failed write raises ``WriteError``, one line naming the file (``atomic_write``).
"""
import contextlib
import os
import tempfile
from os import path as osp

from sd_plugin.errors import ConfigError, WriteError


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, mode='wb'):
    """Call ``write(file)`` on a temporary file in ``path``'s folder, fsync it, give it the permissions a plain
    ``open(path, 'w')`` would (0666 minus the umask), and rename it over ``path``. On any error the temporary file
    is removed, ``path`` keeps its old content, and the error propagates; an OSError (a full disk, a read-only or
    missing folder, a folder at ``path``) as ``WriteError`` naming ``path``."""
    folder = osp.dirname(osp.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and osp.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(path, err) from None
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


def _paths(value):
    return [value] if isinstance(value, (str, os.PathLike)) else [p for p in (value or []) if p is not None]


def writable_folder(path, key):
    """ConfigError naming ``key`` unless the file ``path`` can be created: its folder exists, or can be made, under
    the nearest existing ancestor, which must be a folder the user may write in."""
    folder = osp.dirname(osp.abspath(path))
    while not osp.exists(folder):
        folder = osp.dirname(folder)
    if not osp.isdir(folder):
        raise ConfigError(f'{key} {path}: {folder} is a file, not a folder')
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f'{key} {path}: cannot write in the folder {folder} (permission denied)')


def plan_outputs(outputs, inputs=None, overwrite=False, read_folders=None):
    """Check, before any work, that the files ``outputs`` may and can be written; a ConfigError naming the option and
    the path otherwise. Every tool calls it with every output and every input of its run.

    Args:
        outputs (dict[str, str | None]): {what names it, e.g. '--json': the file to write}; None: not written.
        inputs (dict[str, str | list[str]]): every file and folder the run reads, e.g. {'CKPT': [...], '--hr': dir}:
            an output is never one of them, nor a folder that holds one (``check_apart``).
        overwrite (bool | None): whether an existing output file may be replaced; None: the tool decides per file
            (sd-upscale skips it), only its kind is checked here.
        read_folders (dict[str, str | list[str]]): folders whose images the run reads (a benchmark set): an output
            never lies inside one, where the next run would read it.
    Checks, in order: apart from the inputs; outside ``read_folders``; no two outputs at the same path (any
    spelling); an existing output is a file, replaced only with ``overwrite``; its folder exists or can be made and
    is writable (``writable_folder``).
    """
    outputs = {key: str(path) for key, path in outputs.items() if path is not None}
    check_apart(outputs, inputs or {})
    for out_key, out in outputs.items():
        for in_key, folders in (read_folders or {}).items():
            for folder in _paths(folders):
                if _inside(out, folder):
                    raise ConfigError(f'{out_key} {out}: lies in {in_key} {folder}, which this run reads; write it '
                                      'elsewhere')
    seen = {}
    for out_key, out in outputs.items():
        real = osp.realpath(out)
        if real in seen:
            raise ConfigError(f'{out_key} {out}: is also {seen[real]}; give each output its own path')
        seen[real] = out_key
    for out_key, out in outputs.items():
        if osp.isdir(out):
            raise ConfigError(f'{out_key} {out}: is a folder; give a file name')
        if osp.lexists(out) and overwrite is False:
            raise ConfigError(f'{out_key} {out}: exists; pass --overwrite to replace it')
        writable_folder(out, out_key)


@contextlib.contextmanager
def new_folder(path, key='--out'):
    """Make the folder ``path`` (and its missing parents) for the block; when the block raises, remove the folders
    this made that are still empty, so a refused run leaves nothing behind. Yields ``path``. A ConfigError naming
    ``key`` when it cannot be made."""
    missing, folder = [], osp.abspath(path)
    while not osp.exists(folder):
        missing.append(folder)
        folder = osp.dirname(folder)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ConfigError(f'{key} {path}: cannot make this folder ({err.strerror})') from None
    try:
        yield path
    except BaseException:
        for made in missing:  # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(made)
        raise


def _written_list(folder, tool):
    return osp.join(folder, f'.{tool}.written')


def written_by(folder, tool):
    """The files (paths relative to ``folder``) that ``tool`` recorded as written into ``folder``, as a set."""
    try:
        with open(_written_list(folder, tool)) as f:
            return {line.rstrip('\n') for line in f if line.strip()}
    except FileNotFoundError:
        return set()


def record_written(folder, tool, names, forget=()):
    """Add ``names`` (paths relative to ``folder``) to the list of files ``tool`` wrote into ``folder`` (the hidden
    file ``folder/.<tool>.written``) and drop ``forget``; later runs replace or remove only those."""
    names = (written_by(folder, tool) - set(forget)) | set(names)
    atomic_write(_written_list(folder, tool), lambda f: f.write(''.join(f'{n}\n' for n in sorted(names))), mode='w')


def files_under(folder):
    """Every file under ``folder`` (recursive), as paths relative to it; a set."""
    found = set()
    for root, _, names in os.walk(folder):
        found.update(osp.relpath(osp.join(root, n), folder) for n in names)
    return found


def remove_written(folder, names):
    """Remove the files ``names`` (relative to ``folder``) and then every folder between them and ``folder`` that is
    left empty. Nothing else is touched: a file a user put beside them stays, and so does its folder."""
    parents = set()
    for name in names:
        path = osp.join(folder, name)
        if osp.lexists(path) and not osp.isdir(path):
            os.remove(path)
        parent = osp.dirname(name)
        while parent:
            parents.add(parent)
            parent = osp.dirname(parent)
    for parent in sorted(parents, key=lambda p: -p.count(os.sep)):
        with contextlib.suppress(OSError):
            os.rmdir(osp.join(folder, parent))  # only when empty


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
                owner = f.readline().strip()
            if owner != tool:
                raise ConfigError(f'--out {folder}: belongs to {owner}, not {tool}')
            return True
        if os.listdir(folder):
            raise ConfigError(f'--out {folder}: exists and was not made by {tool}; choose a new or empty folder '
                              '(nothing was deleted)')
    atomic_write(marker, lambda f: f.write(tool + '\n'), mode='w')
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
