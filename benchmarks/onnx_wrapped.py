"""ONNX export of students cut from wrapped archs (docs/archs.md, "Export"): for a tiny randomly initialised EDSR,
RRDBNet and RCAN wrapped with an exit at 1, export the student with ``sd_plugin.export.export_onnx`` and print the
max abs difference between onnxruntime and PyTorch on a random input (``export_onnx`` measures it).

    python benchmarks/onnx_wrapped.py
"""
import os
import tempfile
import warnings

import torch

import sd_plugin  # noqa: F401  (registrations)
from sd_plugin.archs.multi_exit_arch import MultiExitSR
from sd_plugin.export import export_onnx

ARCHS = [dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, upscale=4),
         dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, num_grow_ch=4, scale=4),
         dict(type='RCAN', num_in_ch=3, num_out_ch=3, num_feat=16, num_group=3, num_block=1, squeeze_factor=4,
              upscale=4)]


def main():
    warnings.simplefilter('ignore')
    for arch in ARCHS:
        torch.manual_seed(0)
        network_g, state_dict = MultiExitSR(arch=arch, exits=[1]).student(1)
        with tempfile.TemporaryDirectory() as folder:
            diff = export_onnx(network_g, state_dict, os.path.join(folder, 'student.onnx'))
        print(f'{arch["type"]} student: onnxruntime vs PyTorch max abs difference {diff}')


if __name__ == '__main__':
    main()
