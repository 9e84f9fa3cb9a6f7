"""sd-export --safetensors, read by spandrel (chaiNNer's loader; optional: pip install -e .[spandrel]). Which
exported students spandrel 0.4.2 loads as they are is stated in docs/archs.md; this test holds it to that."""
import pytest
import torch

from sd_plugin.archs.multi_exit_arch import MultiExitSR, build_stock
from sd_plugin.tools.export import main as export_main

spandrel = pytest.importorskip('spandrel')

LOADED = {  # spandrel 0.4.2 assumes RRDBNet's num_grow_ch is 32
    'RRDBNet': dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, num_feat=16, num_block=3, num_grow_ch=32, scale=4),
    'SwinIR': dict(type='SwinIR', img_size=8, window_size=4, embed_dim=12, depths=[1, 1, 1], num_heads=[2, 2, 2],
                   mlp_ratio=2, upscale=2, upsampler='pixelshuffle', drop_path_rate=0.0),
}
REFUSED = {  # spandrel's EDSR and RCAN follow their original repositories' parameter names, not BasicSR's
    'EDSR': dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, upscale=4),
    'RCAN': dict(type='RCAN', num_in_ch=3, num_out_ch=3, num_feat=16, num_group=3, num_block=1, squeeze_factor=4),
    'MSRResNet': dict(type='MSRResNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, upscale=4),
}


def export_student(arch, tmp_path):
    """Exit 2 of a random 3-unit wrapped ``arch``, exported with --safetensors: (path, the stock student)."""
    torch.manual_seed(0)
    torch.save({'params': MultiExitSR(arch=arch, exits=[2]).state_dict()}, tmp_path / 'multi.pth')
    path = tmp_path / 'student.safetensors'
    export_main([str(tmp_path / 'multi.pth'), '--exit', '2', '--out', str(tmp_path / 'student.pth'),
                 '--safetensors', str(path)])
    saved = torch.load(tmp_path / 'student.pth')
    student = build_stock(saved['sd_plugin']['arch']).eval()
    student.load_state_dict(saved['params'], strict=True)
    return path, student


@pytest.mark.parametrize('name', LOADED)
def test_spandrel_loads_the_exported_student_and_gives_its_output(name, tmp_path):
    path, student = export_student(LOADED[name], tmp_path)
    loaded = spandrel.ModelLoader().load_from_file(str(path))
    assert loaded.scale == (LOADED[name].get('upscale') or LOADED[name]['scale'])
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert (loaded.model.eval()(x) - student(x)).abs().max() < 1e-5


@pytest.mark.parametrize('name', REFUSED)
def test_spandrel_does_not_know_basicsrs_edsr_rcan_msrresnet_names(name, tmp_path):
    path, _ = export_student(REFUSED[name], tmp_path)
    with pytest.raises(spandrel.UnsupportedModelError):
        spandrel.ModelLoader().load_from_file(str(path))
