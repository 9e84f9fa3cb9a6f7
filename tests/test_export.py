import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from helpers import run_cli

from sd_plugin.archs import SRResNetMultiExit
from sd_plugin.errors import ConfigError
from sd_plugin.export import export


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net, ema = (SRResNetMultiExit(num_feat=8, num_block=6, upscale=3, exits=[2, 4]) for _ in range(2))
    path = tmp_path / 'net_g_10.pth'
    torch.save({'params': net.state_dict(), 'params_ema': ema.state_dict()}, path)
    return path, net, ema


@pytest.mark.parametrize('depth', [2, 4, 6])
def test_exported_exit_is_a_stock_msrresnet_with_the_same_output(checkpoint, tmp_path, depth):
    path, net, ema = checkpoint
    out = tmp_path / 'student.pth'
    export(str(path), depth, str(out))
    saved = torch.load(out)
    assert saved['sd_plugin']['exit'] == depth and saved['sd_plugin']['source'] == str(path)
    assert saved['sd_plugin']['arch'] == dict(type='MSRResNet', num_in_ch=3, num_out_ch=3, num_feat=8,
                                              num_block=depth, upscale=3)
    x = torch.rand(1, 3, 11, 9)
    for key, source in (('params', net), ('params_ema', ema)):
        student = MSRResNet(num_feat=8, num_block=depth, upscale=3)
        student.load_state_dict(saved[key], strict=True)
        with torch.no_grad():
            assert (student(x) - source.forward_exits(x, [depth])[depth]).abs().max() <= 1e-5


def test_param_key_selects_one_set_saved_as_params(checkpoint, tmp_path):
    path, _, ema = checkpoint
    out = tmp_path / 'student.pth'
    run_cli(['sd-export', str(path), '--exit', '2', '--out', str(out), '--param-key', 'params_ema'], cwd=tmp_path)
    saved = torch.load(out)
    assert 'params_ema' not in saved
    assert torch.equal(saved['params']['conv_last.weight'], ema.state_dict()['exit_heads.2.conv_last.weight'])


def test_missing_param_key_and_missing_exit_are_one_line_errors(checkpoint, tmp_path):
    path, _, _ = checkpoint
    with pytest.raises(ConfigError, match="no param_key 'params_x'"):
        export(str(path), 2, str(tmp_path / 'a.pth'), param_key='params_x')
    proc = run_cli(['sd-export', str(path), '--exit', '3', '--out', str(tmp_path / 'b.pth')], cwd=tmp_path,
                   check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ('sd-export: error: --exit 3: the checkpoint has exits [2, 4] and teacher depth 6 '
                                   '(blocks of MSRResNet)')
    assert not (tmp_path / 'b.pth').exists()
