"""sd-export --safetensors, read by spandrel (chaiNNer's loader; optional: pip install -e .[spandrel]). Which
exported students spandrel 0.4.2 loads as they are is stated in docs/archs.md; this test holds it to that, and holds
sd-export's one line about it to what spandrel does."""
import sys

import pytest
import torch

from sd_plugin.archs.multi_exit_arch import MultiExitSR, build_stock
from sd_plugin.spandrel_check import prediction
from sd_plugin.tools.export import main as export_main

LOADED = {  # spandrel 0.4.2 assumes RRDBNet's num_grow_ch is 32, and a compact net's activation is PReLU
    'RRDBNet': dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, num_feat=16, num_block=3, num_grow_ch=32, scale=4),
    'SwinIR': dict(type='SwinIR', img_size=8, window_size=4, embed_dim=12, depths=[1, 1, 1], num_heads=[2, 2, 2],
                   mlp_ratio=2, upscale=2, upsampler='pixelshuffle', drop_path_rate=0.0),
    'SRVGGNetCompact': dict(type='SRVGGNetCompact', num_feat=8, num_conv=3, upscale=4),
}
REFUSED = {  # spandrel's EDSR and RCAN follow their original repositories' parameter names, not BasicSR's
    'EDSR': dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, upscale=4),
    'RCAN': dict(type='RCAN', num_in_ch=3, num_out_ch=3, num_feat=16, num_group=3, num_block=1, squeeze_factor=4),
    'MSRResNet': dict(type='MSRResNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, upscale=4),
    'RRDBNet grow 4': dict(LOADED['RRDBNet'], num_grow_ch=4),
    'SRVGGNetCompact relu': dict(LOADED['SRVGGNetCompact'], act_type='relu'),
}
SWINIR_255 = dict(LOADED['SwinIR'], img_range=255.)  # loads, but spandrel's SwinIR has img_range 1


def export_student(arch, tmp_path, capsys):
    """Exit 2 of a random 3-unit wrapped ``arch``, exported with --safetensors: (path, the stock student, the line
    sd-export printed about spandrel)."""
    torch.manual_seed(0)
    torch.save({'params': MultiExitSR(arch=arch, exits=[2]).state_dict()}, tmp_path / 'multi.pth')
    path = tmp_path / 'student.safetensors'
    capsys.readouterr()
    export_main([str(tmp_path / 'multi.pth'), '--exit', '2', '--out', str(tmp_path / 'student.pth'),
                 '--safetensors', str(path)])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('spandrel ')]
    saved = torch.load(tmp_path / 'student.pth')
    student = build_stock(saved['sd_plugin']['arch']).eval()
    student.load_state_dict(saved['params'], strict=True)
    assert len(lines) <= 1
    return path, student, lines[0] if lines else None


@pytest.mark.parametrize('name', LOADED)
def test_spandrel_loads_the_exported_student_and_gives_its_output(name, tmp_path, capsys):
    spandrel = pytest.importorskip('spandrel')
    path, student, line = export_student(LOADED[name], tmp_path, capsys)
    loaded = spandrel.ModelLoader().load_from_file(str(path))
    assert loaded.scale == (LOADED[name].get('upscale') or LOADED[name]['scale'])
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert (loaded.model.eval()(x) - student(x)).abs().max() < 1e-5
    assert line.startswith('spandrel 0.4.2 loads it as ') and ": the student's output" in line


@pytest.mark.parametrize('name', REFUSED)
def test_spandrel_refuses_basicsrs_edsr_rcan_msrresnet_and_export_says_so(name, tmp_path, capsys):
    spandrel = pytest.importorskip('spandrel')
    path, _, line = export_student(REFUSED[name], tmp_path, capsys)
    with pytest.raises(spandrel.UnsupportedModelError if name in ('EDSR', 'RCAN', 'MSRResNet') else Exception):
        spandrel.ModelLoader().load_from_file(str(path))
    why = prediction(REFUSED[name]).split('will not load it')[1]  # ': <the reason docs/archs.md gives>'
    assert line.startswith('spandrel 0.4.2 does not load it (') and line.endswith(why)


def test_a_swinir_student_with_img_range_255_loads_but_gives_another_output(tmp_path, capsys):
    spandrel = pytest.importorskip('spandrel')
    path, student, line = export_student(SWINIR_255, tmp_path, capsys)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert (spandrel.ModelLoader().load_from_file(str(path)).model.eval()(x) - student(x)).abs().max() > 1e-2
    assert 'loads it as SwinIR x2: ANOTHER output' in line


@pytest.mark.parametrize('arch, expected', [
    (REFUSED['EDSR'], "will not load it: it detects EDSR by the original repository's parameter names"),
    (REFUSED['MSRResNet'], 'will not load it'),
    (REFUSED['RRDBNet grow 4'], "will not load it: it assumes RRDBNet's num_grow_ch is 32 (this one has 4)"),
    (REFUSED['SRVGGNetCompact relu'], 'will not load it: it detects SRVGGNetCompact by its PReLU weights'),
    (dict(LOADED['SRVGGNetCompact'], type='SRVGGNetCompact_basicsr', act_type='leakyrelu'), 'will not load it'),
    (SWINIR_255, 'loads it with img_range 1 (the file does not hold it): its output differs'),
    (LOADED['RRDBNet'], "loads it, with the student's output"),
])
def test_without_spandrel_export_says_what_the_docs_table_says(arch, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'spandrel', None)  # import spandrel fails, as where it is not installed
    pytest.importorskip('safetensors')
    _, _, line = export_student(arch, tmp_path, capsys)
    assert line.startswith('spandrel 0.4.2 ') and expected in line
