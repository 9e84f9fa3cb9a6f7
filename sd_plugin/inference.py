"""Running a trained SRResNet on images: the one inference path that ``sd-eval`` and ``sd-upscale`` share.

* ``load_sr_network``: any SRResNet checkpoint (a ``SRResNetMultiExit`` one, a stock BasicSR ``MSRResNet`` one, an
  ``sd-export``-ed student, fp16 parameters included) as an ``SRResNetMultiExit`` in eval mode whose plain forward
  is the chosen output (``deploy_exit``: only that many blocks run).
* ``run_network``: the forward pass on a float tensor, whole or in tiles that overlap by a padding of real
  neighbouring pixels, so the tiled result equals the untiled one.
* ``upscale_array``: an image as ``sd_plugin.imageio.read_image`` returns it (grey, BGR or BGRA, 8 or 16 bits) in,
  the same kind of image, ``scale`` times larger, out.

Receptive field (``receptive_field``), in LR pixels, of an output pixel of an SRResNet running ``d`` residual blocks
at any scale (2, 3, 4): ``2 d + 3``. Each 3x3 convolution at LR resolution widens it by one LR pixel: ``conv_first``
(1), two per residual block (2 d), ``upconv1`` (1). The convolutions after the first pixel shuffle work at 2x or
3x / 4x resolution: at x4, ``upconv2`` (one 2x pixel), ``conv_hr`` and ``conv_last`` (one 4x pixel each), together
one LR pixel for every sub-pixel position (HR pixel ``4p + r`` depends on LR pixels ``p - 1 .. p + 1`` through
them, for each r in 0..3); at x2 and x3 ``conv_hr`` + ``conv_last`` also reach exactly one LR pixel. The bilinear
global skip reads LR pixels ``p - 1 .. p + 1`` too, in parallel with the convolutions, so it does not add to the
radius. A tile padded by at least this many real pixels on every side that has them therefore gives exactly the
pixels of the untiled pass (the network's zero padding then only ever touches the image border, as untiled);
``tests/test_upscale.py`` checks the radius against the gradient's support and the tiled against the untiled output.

Speed options of ``run_network`` / ``upscale_array`` (``benchmarks/bench_infer.py --eval-path`` measures each; the
ratios below were measured on 2 CPU cores shared with training runs, 1 thread, 32-feature MSRResNet-4 and -16):

* ``channels_last`` (default on the CPU): each input tile copied to canonical ``torch.channels_last`` (NHWC) strides
  (``as_channels_last``), so that oneDNN runs every convolution in NHWC: 0.62-0.69x the time. The images sd-eval and
  sd-upscale feed (a permuted HWC array) used to run in NCHW. Same float32 arithmetic: the output differs by float
  rounding only (~3e-7; ``tests/test_inference_speed_options.py`` checks 1e-5). The network is left as it is. Not
  the default on CUDA (not measured there).
* ``precision='bf16'``: ``torch.autocast`` to bfloat16, opt-in: 0.47-0.54x the fp32 time alone and 0.31-0.36x with
  channels_last on this AVX512-BF16 CPU (CPUs without bf16 instructions: not measured), but the output moves by up
  to ~0.1 and PSNR by about a thousandth of a dB. 'fp16': CUDA only.
* ``threads``: torch's CPU threads for the call (restored after it): an int, or 'auto'
  (``sd_plugin.threads.choose_threads``: the cores that are idle now, at least 1). On cores busy with other work,
  torch's default (one thread per core) makes the threads wait on each other: 2 threads took 1.4-4.4x as long as 1.
* ``torch.inference_mode`` always.
"""
import contextlib
import math

import numpy as np
import torch
from torch.nn import functional as F

from sd_plugin.archs.adapters import stock_depth
from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit, infer_arch
from sd_plugin.checkpoint import load_checkpoint, select_params
from sd_plugin.errors import ConfigError
from sd_plugin.export import student_state_dict
from sd_plugin.threads import TORCH_DEFAULT, choose_threads  # noqa: F401  (choose_threads: imported from here)
from sd_plugin.wrapped_network import align_tile, load_wrapped, tile_padding, wrapped_options

PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
ALPHA_MODES = ('bicubic', 'network')
# A grey image runs as R = G = B; its output goes back to grey with the BT.601 luma on the full range (the weights
# sd-eval uses, 65.481/219, 128.553/219, 24.966/219): the exact inverse of the replication.
GREY_WEIGHTS = (0.299, 0.587, 0.114)
BICUBIC_PAD = 2  # radius (LR pixels) of bicubic interpolation: taps floor(u) - 1 .. floor(u) + 2
DEFAULT_THREADS = TORCH_DEFAULT  # torch's count at import: the most that threads='auto' picks (sd_plugin.threads)


def receptive_field(depth):
    """Radius in LR pixels of the input an output pixel depends on, for an SRResNet running ``depth`` blocks (see
    the module docstring): ``2 * depth + 3``. The default tile padding."""
    return 2 * depth + 3


# ----------------------------------------------------------------------------------------------- loading


def load_sr_network(ckpt, exit=None, param_key=None):
    """Load an SRResNet checkpoint for inference.

    Args:
        ckpt (str): a ``SRResNetMultiExit`` checkpoint (keys ``exit_heads.*``), a stock BasicSR ``MSRResNet`` one or
            an ``sd-export``-ed student; a dict with ``params`` / ``params_ema``, or a bare state dict. The
            architecture is read off the state dict (``sd_plugin.archs.srresnet_multiexit_arch.infer_arch``).
        exit (int | None): the output to run: an exit depth or the teacher depth of a multi-exit checkpoint; None:
            the teacher (``num_block``). A single-output checkpoint accepts only None or its ``num_block``.
        param_key (str | None): weights to use; default ``params_ema`` when present, else ``params``.
    Returns:
        tuple[SRResNetMultiExit, dict]: the network (CPU, float32, eval mode, no grad; ``deploy_exit`` = the chosen
        depth, so ``net(x)`` runs only those blocks) and ``info``: ``path``, ``param_key`` (None for a bare state
        dict), ``kind`` ('multi-exit' or 'MSRResNet'), ``arch``, ``depth``, ``scale``, ``receptive_field``,
        ``params`` (parameters that run for that output), ``stored_dtype``.
    Raises:
        ConfigError: one line naming the file, key or exit.
    """
    path = str(ckpt)
    loaded = load_checkpoint(path)
    key, state = select_params(loaded, path, param_key)
    if not isinstance(state, dict):
        raise ConfigError(f'{path}: {key} is a {type(state).__name__}, not a state dict')
    wrapped = wrapped_options(loaded, state, path)
    if wrapped is not None:  # a MultiExitSR checkpoint, or a student of a wrapped arch (EDSR, RCAN, RRDBNet, ...)
        return load_wrapped(path, key, state, wrapped, exit)
    try:
        arch = infer_arch(state)
    except ConfigError as err:
        raise ConfigError(f'{path}: {err}') from None
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f'{path}: not an MSRResNet / SRResNetMultiExit state dict ({type(err).__name__})') from None
    if arch['num_in_ch'] != 3 or arch['num_out_ch'] != 3 or arch['num_block'] < 1 or arch['upscale'] not in (2, 3, 4):
        raise ConfigError(f'{path}: a {arch["num_in_ch"]}-in / {arch["num_out_ch"]}-out channel, x{arch["upscale"]} '
                          f'network with {arch["num_block"]} blocks; only RGB x2/x3/x4 SRResNets are supported')
    depth = arch['num_block'] if exit is None else exit
    if depth != arch['num_block'] and depth not in arch['exits']:
        if arch['exits']:
            raise ConfigError(f'--exit {exit}: {path} has exits {arch["exits"]} and teacher depth {arch["num_block"]}')
        raise ConfigError(f'--exit {exit}: {path} is a single-output MSRResNet with {arch["num_block"]} blocks '
                          f'(leave --exit out)')
    net = SRResNetMultiExit(**arch, deploy_exit=depth)
    try:
        net.load_state_dict(state, strict=True)  # copies fp16 / bf16 parameters into the float32 network
    except RuntimeError as err:
        raise ConfigError(f'{path}: not an MSRResNet / SRResNetMultiExit state dict '
                          f'({str(err).splitlines()[0]})') from None
    net.eval().requires_grad_(False)
    dtypes = sorted({str(v.dtype).replace('torch.', '') for v in state.values() if torch.is_tensor(v)})
    info = {'path': path, 'param_key': key, 'kind': 'multi-exit' if arch['exits'] else 'MSRResNet', 'arch': arch,
            'depth': depth, 'unit': 'block', 'scale': arch['upscale'], 'receptive_field': receptive_field(depth),
            'params': sum(v.numel() for v in student_state_dict(state, depth).values()),
            'stored_dtype': '/'.join(dtypes)}
    return net, info


class OnnxNetwork:
    """An ONNX SR model run by onnxruntime, with what ``run_network`` and ``upscale_array`` need: ``upscale``,
    ``deploy_exit`` (its number of residual blocks, read off the initializer names and shapes by ``infer_arch``, as
    from a state dict; None when they are not there) and ``net(x)`` on a float tensor. The file has one input and
    one output (``sd-export --onnx`` writes ``lr`` -> ``sr``); the scale is measured on an 8 x 8 probe input. CPU
    (``CPUExecutionProvider``; ``threads``: its intra-op threads), or CUDA with onnxruntime-gpu."""

    def __init__(self, path, device='cpu', threads=None):
        try:
            import onnx
            import onnxruntime
        except ImportError:
            raise ConfigError('--backend onnxruntime needs onnx and onnxruntime: pip install -e .[onnx]') from None
        device = torch.device(device)
        providers = ['CPUExecutionProvider']
        if device.type == 'cuda':
            if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
                raise ConfigError('--backend onnxruntime --device cuda: this onnxruntime has no CUDAExecutionProvider '
                                  '(install onnxruntime-gpu, or use --device cpu)')
            providers.insert(0, 'CUDAExecutionProvider')
        try:
            model = onnx.load(path, load_external_data=False)
            options = onnxruntime.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            self.session = onnxruntime.InferenceSession(path, options, providers=providers)
        except Exception as err:  # noqa: BLE001  (onnx / onnxruntime raise many types for a bad file)
            raise ConfigError(f'{path}: not a readable ONNX model ({type(err).__name__})') from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ConfigError(f'{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}')
        self.input_name, self.output_name, self.path = inputs[0].name, outputs[0].name, path
        shapes = {i.name: torch.empty(tuple(i.dims), device='meta') for i in model.graph.initializer}
        try:
            arch = infer_arch(shapes)
            self.deploy_exit = arch['num_block'] or None
        except (ConfigError, KeyError, ValueError, ZeroDivisionError):
            arch, self.deploy_exit = None, None
        probe = self(torch.zeros(1, 3, 8, 8))
        if probe.ndim != 4 or probe.shape[1] != 3 or probe.shape[2] % 8 or probe.shape[2] != probe.shape[3]:
            raise ConfigError(f'{path}: an (1, 3, 8, 8) input gives {tuple(probe.shape)}, not an RGB SR output')
        self.upscale = probe.shape[2] // 8
        self.arch = arch

    def __call__(self, x):
        out = self.session.run([self.output_name], {self.input_name: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out)

    def to(self, device):
        return self


def network_depth(net, depth=None):
    """The number of units that run for output ``depth`` of ``net`` (None: its plain forward's): a multi-exit
    network's ``deploy_exit``, a stock network's depth by its arch adapter (``stock_depth``); None: unknown."""
    if depth is not None:
        return depth
    if hasattr(net, 'deploy_exit'):
        return net.deploy_exit
    return stock_depth(net)


def net_device(net):
    """The device of ``net``'s parameters (a network without parameters, e.g. an ONNX session: the CPU)."""
    tensor = next(iter(net.parameters()), None) if hasattr(net, 'parameters') else None
    return torch.device('cpu') if tensor is None else tensor.device


# ----------------------------------------------------------------------------------------------- running


def tile_grid(height, width, tile):
    """[(y0, y1, x0, x1)] LR tiles of at most ``tile`` x ``tile`` pixels covering the image, row by row; the last
    ones of a row / column are cut at the border. ``tile <= 0``: the whole image."""
    if tile <= 0:
        return [(0, height, 0, width)]
    return [(y0, min(y0 + tile, height), x0, min(x0 + tile, width))
            for y0 in range(0, height, tile) for x0 in range(0, width, tile)]


def run_tiled(fn, x, scale, tile=0, tile_pad=0, sink=None, progress=None):
    """Apply ``fn`` (an (N, C, h, w) tensor -> list of (N, C', h*scale, w*scale) tensors) to ``x`` tile by tile.

    Each tile of ``tile_grid`` is cut out of ``x`` with ``tile_pad`` more pixels on every side where the image has
    them (real neighbouring pixels, never zeros beyond the tile), and only its own part of the output is kept.

    Args:
        sink (callable | None): ``sink(rows, cols, outputs)`` receives each tile's outputs and the HR slices they
            fill; the function then returns None. Without it, the outputs are assembled into full-size tensors
            (allocated once, on the outputs' device and dtype) and returned as a list.
        progress (callable | None): called with no argument after each tile.
    """
    _, _, height, width = x.shape
    grid = tile_grid(height, width, tile)
    results = None
    for y0, y1, x0, x1 in grid:
        ya, yb = max(0, y0 - tile_pad), min(height, y1 + tile_pad)
        xa, xb = max(0, x0 - tile_pad), min(width, x1 + tile_pad)
        outputs = fn(x[:, :, ya:yb, xa:xb])
        if (ya, yb, xa, xb) != (y0, y1, x0, x1):
            keep = (slice(None), slice(None), slice((y0 - ya) * scale, (y1 - ya) * scale),
                    slice((x0 - xa) * scale, (x1 - xa) * scale))
            outputs = [out[keep] for out in outputs]
        rows, cols = slice(y0 * scale, y1 * scale), slice(x0 * scale, x1 * scale)
        if sink is not None:
            sink(rows, cols, outputs)
        elif len(grid) == 1:
            results = outputs
        else:
            if results is None:
                results = [out.new_empty((out.shape[0], out.shape[1], height * scale, width * scale))
                           for out in outputs]
            for result, out in zip(results, outputs):
                result[:, :, rows, cols] = out
        del outputs
        if progress is not None:
            progress()
    return results


@contextlib.contextmanager
def torch_threads(threads):
    """Run the block with ``choose_threads(threads)`` torch CPU threads, then restore the previous count (None: no
    change)."""
    if threads is None:
        yield
        return
    previous, wanted = torch.get_num_threads(), choose_threads(threads)
    if wanted != previous:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted != previous:
            torch.set_num_threads(previous)


def use_channels_last(net, device, channels_last=None):
    """Whether ``run_network`` feeds ``net`` channels_last input: ``channels_last`` if given, else True for a torch
    module on the CPU (measured faster there, same float32 results) and False otherwise (CUDA: not measured; an
    ONNX session takes numpy arrays)."""
    if channels_last is not None:
        return bool(channels_last)
    return isinstance(net, torch.nn.Module) and torch.device(device).type == 'cpu'


def as_channels_last(t):
    """``t`` (N, C, H, W) with the canonical channels_last strides (C*H*W, 1, W*C, C), copied only when needed.

    A permuted HWC array with a batch dimension added (what ``model_sr`` and ``upscale_array`` make of an image) has
    batch stride C: PyTorch calls it channels_last-contiguous, so ``.contiguous(memory_format=torch.channels_last)``
    returns it as it is, but its convolutions then run in NCHW (1.5x slower on the CPU, measured)."""
    n, c, h, w = t.shape
    if t.is_contiguous(memory_format=torch.channels_last) and (n == 0 or t.stride(0) == c * h * w):
        return t
    return torch.empty_like(t, memory_format=torch.channels_last).copy_(t)


def run_network(net, x, depth=None, tile=0, tile_pad=None, sink=None, progress=None, precision='fp32',
                channels_last=None, threads=None):
    """The SR output(s) of ``net`` for a float input ``x`` (N, 3, h, w) in [0, 1], under ``torch.inference_mode``.

    Args:
        net: an ``SRResNetMultiExit`` (run as ``forward_exits(x, depths)``: one trunk pass, only as many blocks as
            the deepest output needs) or any network called as ``net(x)`` (a stock ``MSRResNet``, whose depth is
            its number of blocks).
        x (Tensor): the whole LR input; each tile is moved to ``net``'s device.
        depth (int | list[int] | None): the output depth; None: the network's plain output (``deploy_exit``); a
            list: several outputs of the same trunk pass.
        tile (int): tile size in LR pixels; 0: the whole input in one pass.
        tile_pad (int | None): pixels of overlap on every side of a tile; None: ``receptive_field`` of the deepest
            output, with which the tiled output equals the untiled one up to float rounding.
        sink, progress: as ``run_tiled``.
        precision (str): 'fp32' (default: no autocast), 'bf16' (autocast) or 'fp16' (autocast, CUDA only); a
            network that is not a torch module (``OnnxNetwork``) runs fp32 only.
        channels_last (bool | None): feed each tile in ``torch.channels_last`` memory order (``as_channels_last``);
            None: on the CPU for a torch module (``use_channels_last``); False: each tile as it comes (before, the
            only behaviour). The outputs are then channels_last too (same values and shape).
        threads (int | str | None): torch CPU threads for this call (``torch_threads``; 'auto': the idle cores,
            measured in 0.2 s); None: unchanged.
    Returns:
        Tensor (``depth`` an int or None) or {depth: Tensor} (``depth`` a list), on ``net``'s device; None with a
        ``sink``, which then receives ``(rows, cols, [outputs in the order of depth])`` per tile.
    """
    several = isinstance(depth, (list, tuple))
    depths = [network_depth(net, d) for d in (depth if several else [depth])]
    if tile_pad is None and tile > 0 and None in depths:
        raise ConfigError('the receptive field of this network is unknown (its residual blocks were not found): give '
                          '--tile-pad')
    if hasattr(net, 'adapter'):  # a wrapped arch: its own receptive field; SwinIR's tiles in whole windows
        tile = align_tile(net, tile)
        pad = align_tile(net, tile_pad) if tile_pad is not None else 0 if tile <= 0 else tile_padding(net, max(depths))
    else:
        pad = tile_pad if tile_pad is not None else 0 if tile <= 0 else receptive_field(max(depths))
    if pad < 0:
        raise ConfigError(f'--tile-pad {pad}: must be >= 0')
    if not hasattr(net, 'forward_exits') and any(d != network_depth(net) for d in depths):
        raise ConfigError(f'exit {depths}: this network has a single output, at depth {network_depth(net)}')
    device = net_device(net)
    cast = autocast(device, precision)
    if precision != 'fp32' and not isinstance(net, torch.nn.Module):
        raise ConfigError(f'--precision {precision}: this network ({type(net).__name__}) runs fp32 only')
    channels_last = use_channels_last(net, device, channels_last)

    def forward(t):
        t = t.to(device, non_blocking=True)
        if channels_last:
            t = as_channels_last(t)
        if hasattr(net, 'forward_exits'):
            outputs = net.forward_exits(t, depths)
            return [outputs[d] for d in depths]
        return [net(t)] * len(depths)

    with torch.inference_mode(), cast, torch_threads(threads):
        results = run_tiled(forward, x, net.upscale, tile, pad, sink, progress)
    if results is None:
        return None
    return dict(zip(depths, results)) if several else results[0]


def count_tiles(height, width, tile):
    """Number of tiles ``run_network`` runs for an LR image of that size."""
    return 1 if tile <= 0 else math.ceil(height / tile) * math.ceil(width / tile)


def autocast(device, precision):
    """A ``torch.autocast`` context for ``precision`` ('fp32': disabled) on ``device``; ConfigError for fp16 off
    CUDA."""
    if precision not in PRECISIONS:
        raise ConfigError(f'--precision {precision!r}: must be one of {", ".join(PRECISIONS)}')
    device = torch.device(device)
    if precision == 'fp16' and device.type != 'cuda':
        raise ConfigError(f'--precision fp16 needs --device cuda (this run is on {device.type}; use fp32 or bf16)')
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def upscale_array(net, img, tile=0, tile_pad=None, device=None, precision='fp32', alpha='bicubic', progress=None,
                  channels_last=None, threads=None):
    """Super-resolve an image as ``sd_plugin.imageio.read_image`` returns it.

    Args:
        net: a network as ``load_sr_network`` returns it (``upscale`` = s); moved to ``device`` (``nn.Module.to``).
        img (ndarray): (H, W) grey, (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA; uint8 (/ 255) or uint16 (/ 65535).
        tile, tile_pad: as ``run_network`` (None: the receptive field).
        device (str | torch.device | None): None: where ``net`` is.
        precision (str): 'fp32', 'bf16' (autocast) or 'fp16' (autocast, CUDA only).
        alpha (str): the alpha channel of a BGRA image: 'bicubic' (bicubic interpolation, PyTorch's with a = -0.75
            as OpenCV's INTER_CUBIC, done tile by tile with the 2 pixels of padding that make it exact) or
            'network' (run through the network as a grey image).
        progress (callable | None): called after each network tile (twice as many with ``alpha='network'``).
        channels_last, threads: as ``run_network`` (None: channels_last on the CPU; torch's thread count).
    Returns:
        ndarray: (H*s, W*s) with the same channels (grey stays grey, BGRA stays BGRA) and dtype. Grey images run as
        R = G = B and the output is brought back with the BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of its channels
        clipped to [0, 1] (as sd-eval). Values are clipped to [0, 1] and rounded. The output is allocated once, in its
        final dtype; tiles are converted and written into it one at a time, so the memory besides the input (as
        float32) and the output is one tile's.
    """
    if img.dtype == np.uint8:
        top = 255.
    elif img.dtype == np.uint16:
        top = 65535.
    else:
        raise ConfigError(f'a {img.dtype} image: only 8- and 16-bit images are supported')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim != 2 and not (img.ndim == 3 and img.shape[2] in (3, 4)):
        raise ConfigError(f'an image of shape {img.shape}: expected grey, BGR or BGRA')
    if alpha not in ALPHA_MODES:
        raise ConfigError(f'--alpha {alpha!r}: must be one of {", ".join(ALPHA_MODES)}')
    if device is not None:
        net = net.to(device)
    device = net_device(net)
    cast = autocast(device, precision)
    scale, (height, width) = net.upscale, img.shape[:2]
    out = np.empty((height * scale, width * scale) + img.shape[2:], img.dtype)
    grey_weights = torch.tensor(GREY_WEIGHTS, device=device).view(3, 1, 1)

    def to_input(channels):
        """(H, W) or (H, W, 3) RGB integer array -> (1, 3, H, W) float32 tensor in [0, 1] (grey: a 3-channel view)."""
        t = torch.from_numpy(np.ascontiguousarray(channels)).to(torch.float32).div_(top)
        return t.expand(1, 3, height, width) if channels.ndim == 2 else t.permute(2, 0, 1)[None]

    def quantise(t):
        t = t.float().clamp_(0, 1).mul_(top).round_()
        return t.to(torch.uint8 if top == 255. else torch.int32).cpu().numpy()

    def write(channel_index, to_grey):
        def sink(rows, cols, outputs):
            t = outputs[0][0]
            if to_grey:  # each channel clipped first, as sd-eval measures the RGB output brought back to grey
                t = (t.float().clamp(0, 1) * grey_weights).sum(0, keepdim=True)
            values = quantise(t).transpose(1, 2, 0)  # (h, w, c)
            if out.ndim == 2:
                out[rows, cols] = values[..., 0]
            elif channel_index is None:
                out[rows, cols, :3] = values[..., ::-1]  # RGB -> BGR
            else:
                out[rows, cols, channel_index] = values[..., 0]
        return sink

    grey = img.ndim == 2
    options = dict(precision=precision, channels_last=channels_last)
    with cast, torch_threads(threads):
        run_network(net, to_input(img if grey else img[..., 2::-1]), None, tile, tile_pad, write(None, grey), progress,
                    **options)
        if img.ndim == 3 and img.shape[2] == 4:
            if alpha == 'network':
                run_network(net, to_input(img[..., 3]), None, tile, tile_pad, write(3, True), progress, **options)
            else:
                def bicubic(t):
                    t = t.to(device).float()
                    return [F.interpolate(t, scale_factor=scale, mode='bicubic', align_corners=False)]
                alpha_in = torch.from_numpy(np.ascontiguousarray(img[..., 3])).to(torch.float32).div_(top)[None, None]
                with torch.inference_mode():
                    run_tiled(bicubic, alpha_in, scale, tile, BICUBIC_PAD, write(3, False))
    return out


def available_memory():
    """Bytes of memory a new allocation can still get: MemAvailable + SwapFree of /proc/meminfo (Linux); None
    elsewhere."""
    try:
        with open('/proc/meminfo') as f:
            fields = dict(line.split(':', 1) for line in f)
        return sum(int(fields[key].split()[0]) * 1024 for key in ('MemAvailable', 'SwapFree'))
    except (OSError, KeyError, ValueError):
        return None


def output_too_large(img, scale):
    """A one-line reason when the output of ``img`` (as ``upscale_array`` takes it) at ``scale`` cannot fit in the
    memory left (``available_memory``), which no tile size changes; else None."""
    channels = img.shape[2] if img.ndim == 3 else 1
    need = img.shape[0] * img.shape[1] * scale * scale * channels * img.dtype.itemsize
    free = available_memory()
    if free is None or need <= free:
        return None
    return (f'the output image itself ({img.shape[1] * scale}x{img.shape[0] * scale}, {need / 2**30:.2f} GiB) cannot '
            f'fit in the memory left ({free / 2**30:.2f} GiB); no --tile changes that')
