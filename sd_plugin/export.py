"""sd-export: cut exit k out of a SRResNetMultiExit checkpoint as a stock BasicSR ``MSRResNet(num_block=k)`` one."""
import io
import re
import warnings
from collections import OrderedDict
from os import path as osp

import torch

from sd_plugin.checkpoint import atomic_save, load_checkpoint, params
from sd_plugin.errors import ConfigError
from sd_plugin.files import atomic_write

PARAM_KEYS = ('params', 'params_ema')


def infer_arch(state_dict):
    """The SRResNetMultiExit options a state dict was made with, read off its keys and shapes.

    Returns:
        dict: ``num_in_ch``, ``num_out_ch``, ``num_feat``, ``num_block``, ``upscale``, ``exits``.
    """
    if 'conv_first.weight' not in state_dict or 'conv_last.weight' not in state_dict:
        raise ConfigError('not an MSRResNet / SRResNetMultiExit state dict (no conv_first / conv_last)')
    blocks = {int(m.group(1)) for k in state_dict for m in [re.match(r'body\.(\d+)\.', k)] if m}
    exits = sorted({int(m.group(1)) for k in state_dict for m in [re.match(r'exit_heads\.(\d+)\.', k)] if m})
    num_feat, num_in_ch = state_dict['conv_first.weight'].shape[:2]
    if 'upconv2.weight' in state_dict:
        upscale = 4
    else:
        upscale = round((state_dict['upconv1.weight'].shape[0] // num_feat)**0.5)
    return dict(num_in_ch=num_in_ch, num_out_ch=state_dict['conv_last.weight'].shape[0], num_feat=num_feat,
                num_block=max(blocks) + 1 if blocks else 0, upscale=upscale, exits=exits)


def student_keys(state_dict, depth):
    """{MSRResNet(num_block=depth) parameter name: its name in ``state_dict``}, an SRResNetMultiExit state dict:
    the shared first conv, the trunk up to ``depth``, and exit head ``depth`` (or the teacher's own head, at its
    depth) under MSRResNet's head names."""
    arch = infer_arch(state_dict)
    if depth != arch['num_block'] and depth not in arch['exits']:
        raise ConfigError(f'--exit {depth}: the checkpoint has exits {arch["exits"]} and teacher depth '
                          f'{arch["num_block"]}')
    keys = OrderedDict()
    for key in state_dict:
        body = re.match(r'body\.(\d+)\.', key)
        if key.startswith('exit_heads.'):
            prefix = f'exit_heads.{depth}.'
            if key.startswith(prefix):
                keys[key[len(prefix):]] = key
        elif body:
            if int(body.group(1)) < depth:
                keys[key] = key
        elif key.startswith('conv_first.') or depth == arch['num_block']:
            keys[key] = key  # the shared first conv, and the teacher's own head
    return keys


def student_state_dict(state_dict, depth):
    """The ``MSRResNet(num_block=depth)`` state dict of exit ``depth`` (or of the teacher, at its own depth)."""
    return OrderedDict((name, state_dict[key]) for name, key in student_keys(state_dict, depth).items())


def export(ckpt_path, depth, out_path, param_key=None):
    """Write exit ``depth`` of ``ckpt_path`` to ``out_path`` as a stock BasicSR checkpoint.

    The file holds ``params`` (and ``params_ema`` when the source has it; with ``param_key`` only that one, saved
    as ``params``) plus ``sd_plugin``: where it came from (source path, exit, param keys, MSRResNet options).
    Returns the MSRResNet options (dict) that load it.
    """
    ckpt = load_checkpoint(ckpt_path)
    if param_key is not None:
        sources = {'params': param_key}
    else:
        sources = {key: key for key in PARAM_KEYS if key in ckpt} or {'params': 'params'}
    result = {dst: student_state_dict(params(ckpt, src, ckpt_path), depth) for dst, src in sources.items()}
    arch = infer_arch(result['params'])
    arch = dict(type='MSRResNet', **{k: arch[k] for k in ('num_in_ch', 'num_out_ch', 'num_feat', 'num_block',
                                                           'upscale')})
    result['sd_plugin'] = dict(source=osp.abspath(ckpt_path), exit=depth, param_keys=sources, arch=arch)
    atomic_save(result, out_path)
    return arch


def export_onnx(arch, state_dict, onnx_path):
    """Write ``MSRResNet(**arch)`` with ``state_dict`` to ``onnx_path`` as ONNX (opset 17), input ``lr`` and output
    ``sr`` with dynamic batch, height and width. Uses torch's TorchScript-based exporter (``dynamo=False``), which
    needs only the ``onnx`` package. When onnxruntime is installed, runs the file on a random input of another size
    and returns the max abs difference to PyTorch (a RuntimeError above 1e-4, and nothing is written); else None."""
    try:
        import onnx
    except ImportError:
        raise ConfigError('--onnx needs the onnx package: pip install -e .[onnx]') from None
    from basicsr.archs.srresnet_arch import MSRResNet
    net = MSRResNet(**{k: v for k, v in arch.items() if k != 'type'}).eval()
    net.load_state_dict(state_dict, strict=True)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the TorchScript-based exporter's deprecation warning
        torch.onnx.export(net, (torch.rand(1, arch['num_in_ch'], 16, 16),), buffer, dynamo=False, opset_version=17,
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
        x = torch.rand(2, arch['num_in_ch'], 19, 27)
        session = onnxruntime.InferenceSession(model, providers=['CPUExecutionProvider'])
        with torch.no_grad():
            diff = float((torch.from_numpy(session.run(None, {'lr': x.numpy()})[0]) - net(x)).abs().max())
        if not diff <= 1e-4:
            raise RuntimeError(f'{onnx_path}: onnxruntime differs from PyTorch by {diff:.3g} (> 1e-4)')
    atomic_write(onnx_path, lambda f: f.write(model))
    return diff
