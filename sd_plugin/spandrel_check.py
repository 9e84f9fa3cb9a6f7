"""What spandrel (chaiNNer's loader; 0.4.2 tried, ``pip install -e .[spandrel]``) does with an exported student:
``sd-export --safetensors`` prints one line of it. Where spandrel is installed, it loads the file and compares its
output with the student's (``check``); else the line is what docs/archs.md's table says for the arch
(``prediction``)."""
import torch

from sd_plugin.registries import SUFFIX

VERSION = '0.4.2'  # the version the table of docs/archs.md and tests/test_multi_exit_spandrel.py hold to
ORIGINAL_NAMES = ('MSRResNet', 'EDSR', 'RCAN')  # spandrel detects the original repositories' names, not BasicSR's


def refusal(arch):
    """Why spandrel 0.4.2 refuses a student of the stock network_g ``arch`` (docs/archs.md's table), or None."""
    kind = arch['type'][:-len(SUFFIX)] if arch['type'].endswith(SUFFIX) else arch['type']
    if kind in ORIGINAL_NAMES:
        return f'it detects {kind} by the original repository\'s parameter names, not BasicSR\'s'
    if kind == 'RRDBNet' and arch.get('num_grow_ch', 32) != 32:
        return f'it assumes RRDBNet\'s num_grow_ch is 32 (this one has {arch["num_grow_ch"]})'
    if kind == 'SRVGGNetCompact' and arch.get('act_type', 'prelu') != 'prelu':
        return f'it detects SRVGGNetCompact by its PReLU weights (this one has act_type={arch["act_type"]})'
    return None


def prediction(arch):
    """One line: what spandrel 0.4.2 does with a student of the stock network_g ``arch``, by docs/archs.md's
    table; None for an arch the table does not list."""
    kind = arch['type'][:-len(SUFFIX)] if arch['type'].endswith(SUFFIX) else arch['type']
    if refusal(arch):
        return f'spandrel {VERSION} will not load it: {refusal(arch)}'
    if kind == 'SwinIR' and arch.get('img_range', 1.0) != 1:
        return (f'spandrel {VERSION} loads it with img_range 1 (the file does not hold it): its output differs '
                f'from the student\'s (img_range {arch["img_range"]})')
    if kind in ('RRDBNet', 'SRVGGNetCompact', 'SwinIR'):
        return f'spandrel {VERSION} loads it, with the student\'s output'
    return None


def check(path, student, arch, in_channels=3):
    """Load the safetensors file ``path`` with spandrel and compare with ``student`` (the stock network of ``arch``,
    eval) on a random (1, in_channels, 16, 16) input: one line; None when spandrel is not installed."""
    try:
        import spandrel
    except ImportError:
        return None
    try:
        loaded = spandrel.ModelLoader().load_from_file(path)
    except Exception as err:  # noqa: BLE001  (spandrel's refusal, whatever its type, is the answer)
        message = str(err).strip().splitlines()[0] if str(err).strip() else ''
        why = f': {refusal(arch)}' if refusal(arch) else ''
        return f'spandrel {spandrel.__version__} does not load it ({type(err).__name__}{": " if message else ""}' \
               f'{message}){why}'
    x = torch.rand(1, in_channels, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((loaded.model.eval()(x) - student(x)).abs().max())
    same = 'the student\'s output' if diff <= 1e-4 else 'ANOTHER output than the student\'s'
    return (f'spandrel {spandrel.__version__} loads it as {loaded.architecture.name} x{loaded.scale}: {same} (max '
            f'abs difference {diff:.2e} on a random input)')
