"""Writing files without losing any: atomic writes, outputs kept apart from inputs, and folders a tool owns.

The guarantees every command of the plugin keeps:
  * a file is written under a temporary name in its folder and renamed into place, so a crash or a full disk never
    leaves a half-written file under the final name, and the previous version stays intact;
  * an output is never one of the inputs, nor a folder that holds one (``check_apart``);
  * a tool deletes only what it created: a folder it may clear carries its marker file (``claim_folder``), and the
    files it wrote into a folder are listed there (``record_written``), so a rerun replaces or removes only those;
  * before any work, the outputs are checked as a whole (``plan_outputs``): never a file the run reads (a
    checkpoint's calibration ``CKPT.routing.json`` included), never two outputs at one path (those a tool plans per
    file, such as sd-upscale's images, included), an existing file replaced only when the user says so and only
    when the tool recorded it as its own, and a folder that can take them; each planned file is recorded in its
    folder's ``.<tool>.written`` once written (``atomic_write``), under a lock, so concurrent runs lose no entry;
  * a failed write raises ``WriteError``, one line naming the file (``atomic_write``).
"""
import contextlib
import fcntl
import os
import re
import tempfile
from os import path as osp

from sd_plugin.errors import ConfigError, WriteError

COMPANIONS = ('.routing.json',)  # files read beside an input: a checkpoint's calibration (sd_plugin.routing)
_PLANNED = {}  # real path of an output that plan_outputs checked -> the tool whose list records it once written


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
        tool = _PLANNED.get(osp.realpath(path))
        if tool is not None:
            record_written(osp.dirname(osp.abspath(path)), tool, [osp.basename(path)])
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


def check_apart(outputs, inputs, companions=True):
    """Raise ConfigError when an output path is an input, or a folder that holds one, or (``companions``) a file
    read beside an input file (``COMPANIONS``: a checkpoint's calibration).

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
                for suffix in COMPANIONS if companions and path is not None else ():
                    if osp.realpath(out) == osp.realpath(str(path) + suffix):
                        raise ConfigError(f'{out_key} {out}: is the calibration of the input {in_key} {path}, '
                                          'which this run may read; an output must never replace an input')


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


def plan_outputs(outputs, inputs=None, overwrite=False, read_folders=None, tool=None, others=None, companions=True):
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
        tool (str | None): the tool writing them, e.g. 'sd-eval': an existing output is replaced only when listed in
            its folder's ``.<tool>.written``, and each output is added there once ``atomic_write`` wrote it.
        others (dict[str, str | list[str]]): outputs of the run that the tool plans itself, file by file (sd-upscale's
            images): no output here may take one of their paths.
        companions (bool): also refuse the files read beside an input (``check_apart``); False only for the tool
            that writes them (sd-calibrate).
    Checks, in order: apart from the inputs; outside ``read_folders``; no two outputs at the same path (any
    spelling), nor one of ``others``, nor a tool's own record; an existing output is a file, replaced only with
    ``overwrite`` and, with ``tool``, only when the tool wrote it; its folder exists or can be made and is
    writable (``writable_folder``).
    """
    outputs = {key: str(path) for key, path in outputs.items() if path is not None}
    check_apart(outputs, inputs or {}, companions)
    for out_key, out in outputs.items():
        for in_key, folders in (read_folders or {}).items():
            for folder in _paths(folders):
                if _inside(out, folder):
                    raise ConfigError(f'{out_key} {out}: lies in {in_key} {folder}, which this run reads; write it '
                                      'elsewhere')
    seen = {osp.realpath(path): f'{key} {path}' for key, paths in (others or {}).items() for path in _paths(paths)}
    for out_key, out in outputs.items():
        real = osp.realpath(out)
        if real in seen:
            raise ConfigError(f'{out_key} {out}: is also {seen[real]}; give each output its own path')
        if RECORDS.fullmatch(osp.basename(out)):
            raise ConfigError(f'{out_key} {out}: is a file where sd_plugin records what it wrote; give another name')
        seen[real] = out_key
    for out_key, out in outputs.items():
        if osp.isdir(out):
            raise ConfigError(f'{out_key} {out}: is a folder; give a file name')
        if osp.lexists(out) and overwrite is False:
            raise ConfigError(f'{out_key} {out}: exists; pass --overwrite to replace it')
        if osp.lexists(out) and tool and osp.basename(out) not in written_by(osp.dirname(osp.abspath(out)), tool):
            raise ConfigError(f'{out_key} {out}: exists and {tool} did not write it: never replaced, even with '
                              '--overwrite (move it, or give another path)')
        writable_folder(out, out_key)
    if tool:
        _PLANNED.update({osp.realpath(out): tool for out in outputs.values()})


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


@contextlib.contextmanager
def _locked(folder):
    """An exclusive ``flock`` on ``folder`` itself for the block (no lock file is left behind): runs that update
    one folder's list one after the other, so none loses another's entries."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder one may write in but not read: no lock to take (the list is still written whole)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def record_written(folder, tool, names, forget=()):
    """Add ``names`` (paths relative to ``folder``) to the list of files ``tool`` wrote into ``folder`` (the hidden
    file ``folder/.<tool>.written``) and drop ``forget``; later runs replace or remove only those. The read, change
    and write hold a lock on the folder (``_locked``): concurrent runs into one folder keep every entry."""
    with _locked(folder):
        names = (written_by(folder, tool) - set(forget)) | set(names)
        atomic_write(_written_list(folder, tool), lambda f: f.write(''.join(f'{n}\n' for n in sorted(names))),
                     mode='w')


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
RECORDS = re.compile(r'\.[\w-]+\.written|' + re.escape(MARKER))  # the lists of record_written, claim_folder's marker


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
