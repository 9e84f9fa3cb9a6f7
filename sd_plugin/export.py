"""sd-export: cut exit k out of a multi-exit checkpoint as a stock BasicSR one: the wrapped arch at depth k
(``adapter.stock_options``; an SRResNetMultiExit is the MSRResNet case, its options read off its keys)."""
import io
import json
import warnings
from collections import OrderedDict
from os import path as osp

import torch

from sd_plugin.archs.srresnet_multiexit_arch import inferred_options
from sd_plugin.checkpoint import atomic_save, load_checkpoint, params
from sd_plugin.errors import ConfigError
from sd_plugin.files import atomic_write

PARAM_KEYS = ('params', 'params_ema')


def wrapped_student_keys(state_dict, depth, options):
    """{stock parameter name at ``depth``: its name in ``state_dict``} for a MultiExitSR state dict with ``options``
    (``options_from_state_dict``): what the arch's adapter maps (``Adapter.student_key``: the stem, units 1..depth,
    and exit head ``depth`` under the tail's stock names; the teacher's own tail at the teacher depth)."""
    from sd_plugin.archs.adapters import get_adapter
    from sd_plugin.archs.multi_exit_arch import student_keys
    adapter = get_adapter(options['arch']['type'])
    teacher = adapter.depth(options['arch'])
    if depth != teacher and depth not in options['exits']:
        raise ConfigError(f'--exit {depth}: the checkpoint has exits {options["exits"]} and teacher depth {teacher} '
                          f'({adapter.unit}s of {options["arch"]["type"]})')
    return student_keys(adapter, state_dict, depth, teacher)


def wrapper_options(state_dict, network_opt=None):
    """``{'arch': stock network_g, 'exits': [...]}`` of a MultiExitSR state dict: the options saved in it, else those
    of ``network_opt`` when it is a MultiExitSR network_g (a wrapper without exits saves the stock state dict
    alone); None for an SRResNetMultiExit / MSRResNet one."""
    from sd_plugin.archs.multi_exit_arch import options_from_state_dict, resolve_arch
    options = options_from_state_dict(state_dict)
    if options is None and (network_opt or {}).get('type') == 'MultiExitSR':
        options = {'arch': resolve_arch(network_opt.get('arch'))[1], 'exits': list(network_opt.get('exits') or [])}
    return options


def any_options(state_dict, network_opt=None):
    """``wrapper_options``, or for an SRResNetMultiExit / MSRResNet state dict those read off its keys and shapes
    (``inferred_options``: the MSRResNet case)."""
    return wrapper_options(state_dict, network_opt) or inferred_options(state_dict)


def student_arch(state_dict, depth, network_opt=None):
    """The stock network_g that loads ``student_state_dict(state_dict, depth, network_opt)``."""
    from sd_plugin.archs.adapters import get_adapter
    options = any_options(state_dict, network_opt)
    return get_adapter(options['arch']['type']).stock_options(options['arch'], depth)


def student_keys(state_dict, depth, network_opt=None):
    """{stock parameter name: its name in ``state_dict``} of output ``depth`` (``wrapped_student_keys`` of
    ``any_options``). ``network_opt``: see ``wrapper_options``."""
    return wrapped_student_keys(state_dict, depth, any_options(state_dict, network_opt))


def student_state_dict(state_dict, depth, network_opt=None):
    """The stock state dict of exit ``depth`` (or of the teacher, at its own depth): the wrapped arch's at ``depth``
    (``MSRResNet(num_block=depth)``'s for an SRResNetMultiExit)."""
    return OrderedDict((name, state_dict[key]) for name, key in student_keys(state_dict, depth, network_opt).items())


def export(ckpt_path, depth, out_path, param_key=None, network_opt=None):
    """Write exit ``depth`` of ``ckpt_path`` to ``out_path`` as a stock BasicSR checkpoint.

    The file holds ``params`` (and ``params_ema`` when the source has it; with ``param_key`` only that one, saved
    as ``params``) plus ``sd_plugin``: where it came from (source path, exit, param keys, the stock network_g).
    Checks that each state dict loads strictly into the stock arch built from that network_g before writing.
    ``network_opt``: the network_g the checkpoint was trained with, needed only for a MultiExitSR without exits
    (its checkpoint is the stock arch's alone). Returns that network_g (dict).
    """
    from sd_plugin.archs.multi_exit_arch import build_stock, options_from_state_dict
    ckpt = load_checkpoint(ckpt_path)
    if param_key is not None:
        sources = {'params': param_key}
    else:
        sources = {key: key for key in PARAM_KEYS if key in ckpt} or {'params': 'params'}
    for src in sources.values():  # the saved wrapper options, or the SRResNet layout, checked as an input
        where, state = f'{ckpt_path} [{src}]', params(ckpt, src, ckpt_path)
        if not isinstance(state, dict):
            raise ConfigError(f'{where}: a {type(state).__name__}, not a state dict')
        if options_from_state_dict(state, where) is None and (network_opt or {}).get('type') != 'MultiExitSR':
            try:
                inferred_options(state)  # the SRResNet layout, read off its keys
            except ConfigError as err:
                raise ConfigError(f'{where}: {err}') from None
    result = {dst: student_state_dict(params(ckpt, src, ckpt_path), depth, network_opt)
              for dst, src in sources.items()}
    arch = student_arch(params(ckpt, sources['params'], ckpt_path), depth, network_opt)
    stock = build_stock(arch)
    for state in result.values():
        stock.load_state_dict(state, strict=True)
    result['sd_plugin'] = dict(source=osp.abspath(ckpt_path), exit=depth, param_keys=sources, arch=arch)
    atomic_save(result, out_path)
    return arch


def export_safetensors(arch, state_dict, path):
    """Write ``state_dict`` to ``path`` as safetensors (what chaiNNer / spandrel read), with the network_g that
    loads it as JSON in the metadata (``network_g``)."""
    try:
        from safetensors.torch import save
    except ImportError:
        raise ConfigError('--safetensors needs the safetensors package: pip install safetensors') from None
    tensors = {name: value.detach().contiguous().clone() for name, value in state_dict.items()}
    data = save(tensors, metadata={'network_g': json.dumps(arch, sort_keys=True)})
    atomic_write(path, lambda f: f.write(data))


def export_onnx(arch, state_dict, onnx_path):
    """Write the stock network ``arch`` (a network_g dict) with ``state_dict`` to ``onnx_path`` as ONNX (opset 17),
    input ``lr`` and output ``sr`` with dynamic batch, height and width. Uses torch's TorchScript-based exporter
    (``dynamo=False``), which needs only the ``onnx`` package. When onnxruntime is installed, runs the file on a
    random input of another size and returns the max abs difference to PyTorch (a RuntimeError above 1e-4, and
    nothing is written); else None."""
    try:
        import onnx
    except ImportError:
        raise ConfigError('--onnx needs the onnx package: pip install -e .[onnx]') from None
    from sd_plugin.archs.multi_exit_arch import build_stock
    net = build_stock(arch).eval()
    net.load_state_dict(state_dict, strict=True)
    in_ch = arch.get('num_in_ch', arch.get('in_chans', 3))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the TorchScript-based exporter's deprecation warning
        torch.onnx.export(net, (torch.rand(1, in_ch, 16, 16),), buffer, dynamo=False, opset_version=17,
                          input_names=['lr'], output_names=['sr'],
                          dynamic_axes={'lr': {0: 'batch', 2: 'height', 3: 'width'},
                                        'sr': {0: 'batch', 2: 'out_height', 3: 'out_width'}})
    model = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(model))
    diff = None
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None:
        x = torch.rand(2, in_ch, 19, 27)
        session = onnxruntime.InferenceSession(model, providers=['CPUExecutionProvider'])
        with torch.no_grad():
            diff = float((torch.from_numpy(session.run(None, {'lr': x.numpy()})[0]) - net(x)).abs().max())
        if not diff <= 1e-4:
            raise RuntimeError(f'{onnx_path}: onnxruntime differs from PyTorch by {diff:.3g} (> 1e-4)')
    atomic_write(onnx_path, lambda f: f.write(model))
    return diff
