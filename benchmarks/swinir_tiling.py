"""How far SwinIR's tiled output is from its untiled one (docs/archs.md, "Tiling at inference").

SwinIR has no finite receptive field: attention spans each window, and shifted windows spread it further at every
layer. `sd-upscale --tile` aligns SwinIR tiles to the window grid and pads them (16 LR px by default); this prints the
remaining difference for a randomly initialised lightweight x4 SwinIR (embed_dim 60, depths 4 x 6, window 8,
pixelshuffledirect) wrapped with an exit, on a 96x96 crop of the first Set14 LR image, tile 32, padding 8 / 16 / 24.

    python benchmarks/swinir_tiling.py [--lr-folder datasets/Set14/LRbicx4]
"""
import argparse
import os
import warnings

import torch

import sd_plugin  # noqa: F401  (registrations)
from sd_plugin.archs.multi_exit_arch import MultiExitSR
from sd_plugin.imageio import read_uint8
from sd_plugin.inference import run_network


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--lr-folder', default='datasets/Set14/LRbicx4', help='LR images (the first one is used)')
    args = parser.parse_args()
    warnings.simplefilter('ignore')
    torch.manual_seed(0)
    arch = dict(type='SwinIR', img_size=64, window_size=8, embed_dim=60, depths=[6, 6, 6, 6], num_heads=[6, 6, 6, 6],
                mlp_ratio=2, upscale=4, upsampler='pixelshuffledirect', drop_path_rate=0.0)
    net = MultiExitSR(arch=arch, exits=[2]).eval()
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=noise) * 0.02)
    img = read_uint8(os.path.join(args.lr_folder, sorted(os.listdir(args.lr_folder))[0]))[:96, :96, ::-1]  # RGB
    x = torch.from_numpy(img.astype('float32') / 255).permute(2, 0, 1)[None].contiguous()
    whole = run_network(net, x)
    for pad in (8, 16, 24):
        diff = (run_network(net, x, tile=32, tile_pad=pad) - whole).abs()
        print(f'tile 32, padding {pad}: max abs difference {diff.max().item():.1e} '
              f'({diff.max().item() * 255:.3f} 8-bit levels), mean {diff.mean().item():.1e}')


if __name__ == '__main__':
    main()
