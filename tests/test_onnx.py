"""sd-export --onnx: the student as ONNX with dynamic height and width, checked against PyTorch."""
import sys

import numpy as np
import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.tools.export import main


@pytest.fixture
def multi_ckpt(tmp_path):
    torch.manual_seed(0)
    net = SRResNetMultiExit(num_feat=8, num_block=4, upscale=3, exits=[2])
    ema = {k: v + 0.01 * torch.randn_like(v) for k, v in net.state_dict().items()}
    path = tmp_path / 'multi.pth'
    torch.save({'params': net.state_dict(), 'params_ema': ema}, path)
    return str(path)


def test_onnx_matches_pytorch_at_any_size(multi_ckpt, tmp_path, capsys):
    pytest.importorskip('onnx')
    onnxruntime = pytest.importorskip('onnxruntime')
    onnx_path = tmp_path / 'student.onnx'
    main([multi_ckpt, '--exit', '2', '--out', str(tmp_path / 'student.pth'), '--onnx', str(onnx_path)])
    printed = capsys.readouterr().out
    print(printed)
    assert 'onnxruntime vs PyTorch max abs diff' in printed and '(params_ema,' in printed
    student = MSRResNet(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, upscale=3).eval()
    student.load_state_dict(torch.load(tmp_path / 'student.pth')['params_ema'])
    session = onnxruntime.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    for shape in [(1, 3, 10, 14), (3, 3, 23, 9)]:
        x = torch.rand(*shape)
        out = session.run(None, {'lr': x.numpy()})[0]
        with torch.no_grad():
            ref = student(x).numpy()
        assert out.shape == (shape[0], 3, shape[2] * 3, shape[3] * 3)
        assert np.abs(out - ref).max() <= 1e-4


def test_onnx_without_the_package_is_one_line(multi_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnx', None)  # import onnx -> ImportError
    with pytest.raises(SystemExit) as exit_info:
        main([multi_ckpt, '--exit', '2', '--out', str(tmp_path / 's.pth'), '--onnx', str(tmp_path / 's.onnx')])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == 'sd-export: error: --onnx needs the onnx package: pip install -e .[onnx]'
    assert not (tmp_path / 's.pth').exists()  # nothing written
