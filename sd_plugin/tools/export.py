"""sd-export: cut exit k out of a SRResNetMultiExit checkpoint as a stock BasicSR ``MSRResNet(num_block=k)`` one."""
import argparse

from sd_plugin.checkpoint import load_checkpoint
from sd_plugin.cli import one_line_errors
from sd_plugin.errors import ConfigError
from sd_plugin.export import export, export_onnx, export_safetensors
from sd_plugin.files import plan_outputs
from sd_plugin.imports import parse_with_imports


@one_line_errors('sd-export')
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='sd-export', description=__doc__,
        epilog='example: sd-export experiments/sd/models/net_g_latest.pth --exit 8 --out student_x4.pth')
    parser.add_argument('ckpt', help='SRResNetMultiExit checkpoint (net_g_*.pth)')
    parser.add_argument('--exit', type=int, required=True, dest='depth',
                        help='exit depth k to export, or the teacher depth')
    parser.add_argument('--out', required=True, help='output .pth')
    parser.add_argument('--param-key', default=None,
                        help='export only this key (e.g. params_ema) as params; default: params and params_ema')
    parser.add_argument('--onnx', default=None, metavar='PATH',
                        help='also write the student as ONNX (dynamic height/width; params_ema when exported, else '
                        'params); needs pip install -e .[onnx]')
    parser.add_argument('--safetensors', default=None, metavar='PATH',
                        help='also write the student as .safetensors (params_ema when exported, else params), the '
                        'format chaiNNer / spandrel load; needs the safetensors package')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out / --onnx / '
                        '--safetensors file that sd-export wrote (listed in .sd-export.written beside it)')
    args = parse_with_imports(parser, argv)
    plan_outputs({'--out': args.out, '--onnx': args.onnx, '--safetensors': args.safetensors}, {'CKPT': args.ckpt},
                 args.overwrite, tool='sd-export')
    if args.onnx:
        try:
            import onnx  # noqa: F401  (fail before writing anything)
        except ImportError:
            raise ConfigError('--onnx needs the onnx package: pip install -e .[onnx]') from None
    arch = export(args.ckpt, args.depth, args.out, args.param_key)
    print(f'wrote {args.out}: network_g: {arch}')
    if args.safetensors:
        saved = load_checkpoint(args.out)
        key = 'params_ema' if 'params_ema' in saved else 'params'
        export_safetensors(arch, saved[key], args.safetensors)
        print(f'wrote {args.safetensors} ({key}; metadata network_g)')
        line = spandrel_line(arch, saved[key], args.safetensors)
        if line:
            print(line)
    if args.onnx:
        saved = load_checkpoint(args.out)
        key = 'params_ema' if 'params_ema' in saved else 'params'
        diff = export_onnx(arch, saved[key], args.onnx)
        check = ('onnxruntime not installed: not run' if diff is None else
                 f'onnxruntime vs PyTorch max abs diff {diff:.2e}')
        print(f'wrote {args.onnx} ({key}, dynamic batch/height/width): {check}')


def spandrel_line(arch, state_dict, path):
    """What spandrel does with the student written to ``path``: its own answer where it is installed, else the
    documented one (``sd_plugin.spandrel_check``); None when neither knows."""
    from sd_plugin.archs.adapters import get_adapter
    from sd_plugin.archs.multi_exit_arch import build_stock
    from sd_plugin.spandrel_check import check, prediction
    student = build_stock(arch).eval()
    student.load_state_dict(state_dict, strict=True)
    return check(path, student, arch, get_adapter(arch['type']).in_channels(arch)) or prediction(arch)


if __name__ == '__main__':
    main()
