"""Wrapped archs at inference (issue 16): load_sr_network, tiled run_network, sd-upscale, sd-eval and sd-compare take
MultiExitSR checkpoints and the students exported from them."""
import json

import cv2
import numpy as np
import pytest
import torch
from test_multi_exit import ARCHS, lively

from sd_plugin.archs.multi_exit_arch import MultiExitSR
from sd_plugin.errors import ConfigError
from sd_plugin.inference import load_sr_network, run_network
from sd_plugin.tools.compare import main as compare_main
from sd_plugin.tools.eval import main as eval_main
from sd_plugin.tools.export import main as export_main
from sd_plugin.tools.upscale import main as upscale_main


def checkpoints(name, tmp_path):
    """(multi-exit checkpoint with exits [1, 2], exported exit-1 student, the network) of a random ``name``."""
    torch.manual_seed(0)
    net = lively(MultiExitSR(arch=ARCHS[name], exits=[1, 2])).eval()
    multi, student = tmp_path / f'{name}_multi.pth', tmp_path / f'{name}_student.pth'
    torch.save({'params': net.state_dict()}, multi)
    export_main([str(multi), '--exit', '1', '--out', str(student)])
    return str(multi), str(student), net


@pytest.mark.parametrize('name', ['EDSR', 'RCAN', 'RRDBNet', 'SwinIR', 'SRVGGNetCompact'])
def test_load_sr_network_runs_every_output_of_a_wrapped_checkpoint_and_its_student(name, tmp_path):
    multi, student, net = checkpoints(name, tmp_path)
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        expected = net(x, all_exits=True)
    for depth in (1, 2, 3):
        loaded, info = load_sr_network(multi, exit=depth)
        assert info['kind'] == 'multi-exit' and info['depth'] == depth and info['scale'] == 4
        assert torch.allclose(run_network(loaded, x), expected[depth], atol=1e-5)
    loaded, info = load_sr_network(student)
    assert info['kind'] == name and info['depth'] == 1 and info['arch']['exits'] == []
    assert info['params'] == sum(v.numel() for v in torch.load(student)['params'].values())
    assert (run_network(loaded, x) - expected[1]).abs().max() < 1e-5
    with pytest.raises(ConfigError, match=f'is a single-output {name} with 1 '):
        load_sr_network(student, exit=3)


@pytest.mark.parametrize('name', ['EDSR', 'RRDBNet', 'SRVGGNetCompact'])
def test_tiling_is_exact_for_archs_with_a_receptive_field(name, tmp_path):
    multi, _, _ = checkpoints(name, tmp_path)
    net, info = load_sr_network(multi, exit=2)
    x = torch.rand(1, 3, 23, 17)
    whole = run_network(net, x)
    assert (run_network(net, x, tile=7) - whole).abs().max() < 1e-5


def test_swinir_tiles_are_whole_windows_and_nearly_exact(tmp_path):
    """SwinIR's tiles start on the window grid; the difference to the untiled output is small, not zero."""
    multi, _, _ = checkpoints('SwinIR', tmp_path)
    net, info = load_sr_network(multi)
    assert info['receptive_field'] == 16  # APPROX_PAD in whole windows of 4
    x = torch.rand(1, 3, 20, 24)
    whole = run_network(net, x)
    calls = []
    net.conv_first.register_forward_pre_hook(lambda module, args: calls.append(tuple(args[0].shape[2:])))
    tiled = run_network(net, x, tile=6, tile_pad=3)  # both rounded up to whole windows of 4: tile 8, padding 4
    assert tiled.shape == whole.shape and calls[0] == (12, 12)  # the first tile: 8 + 4 below and right
    assert (tiled - whole).abs().max() < 0.1


def test_the_tools_take_wrapped_checkpoints_and_students(tmp_path):
    multi, student, net = checkpoints('EDSR', tmp_path)
    data = tmp_path / 'data'
    rng = np.random.default_rng(0)
    for name in ('Set5',):
        (data / name / 'GTmod4').mkdir(parents=True)
        (data / name / 'LRbicx4').mkdir(parents=True)
        hr = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(data / name / 'GTmod4' / 'a.png'), hr)
        cv2.imwrite(str(data / name / 'LRbicx4' / 'a.png'), cv2.resize(hr, (8, 8), interpolation=cv2.INTER_AREA))
    eval_main([multi, student, '--data', str(data), '--sets', 'Set5', '--json', str(tmp_path / 'eval.json')])
    records = json.load(open(tmp_path / 'eval.json'))
    records = records['records'] if isinstance(records, dict) else records
    by_model = {}
    for r in records:
        by_model.setdefault(r['model'], {})[r['depth']] = r['psnr']
    assert by_model['EDSR_multi'][1] == pytest.approx(by_model['EDSR_student'][1], abs=1e-4)
    assert set(by_model['EDSR_multi']) == {1, 2, 3}

    upscale_main([str(data / 'Set5' / 'LRbicx4' / 'a.png'), '--model', student, '--out', str(tmp_path / 'up'),
                  '--quiet'])
    out = cv2.imread(str(tmp_path / 'up' / 'a_x4.png'))
    assert out.shape == (32, 32, 3)
    compare_main(['--hr', str(data / 'Set5' / 'GTmod4' / 'a.png'), '--model', f'teacher={multi}',
                  '--model', f'student={student}', '--out', str(tmp_path / 'cmp.png')])
    assert cv2.imread(str(tmp_path / 'cmp.png')) is not None


def test_bare_state_dicts_and_stock_networks_go_through_their_adapters(tmp_path):
    """A checkpoint that is a bare state dict (every value a tensor, no ``params``) is taken whole, an
    SRResNetMultiExit one and a MultiExitSR (SRVGGNetCompact: no ``conv_first``) one alike; a dict of something else
    is refused naming its keys.
    A stock network's depth (what ``run_network`` pads tiles by) is its adapter's number of units."""
    from basicsr.archs.srresnet_arch import MSRResNet
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    from sd_plugin.archs import SRResNetMultiExit
    from sd_plugin.inference import network_depth
    torch.manual_seed(0)
    nets = {'srresnet': SRResNetMultiExit(num_feat=8, num_block=3, exits=[1]),
            'srvgg': MultiExitSR(arch=ARCHS['SRVGGNetCompact'], exits=[1])}
    x = torch.rand(1, 3, 10, 12)
    for name, net in nets.items():
        torch.save(net.eval().state_dict(), tmp_path / f'{name}.pth')
        loaded, info = load_sr_network(str(tmp_path / f'{name}.pth'), exit=1)
        assert info['param_key'] is None and info['depth'] == 1
        with torch.no_grad():
            assert torch.equal(loaded(x), net.forward_exits(x, [1])[1])
    torch.save({'net': nets['srresnet'].state_dict()}, tmp_path / 'nested.pth')
    with pytest.raises(ConfigError, match=r"no param_key 'params' \(it has: net\)"):
        load_sr_network(str(tmp_path / 'nested.pth'))
    assert network_depth(MSRResNet(num_feat=8, num_block=5)) == 5
    assert network_depth(SRVGGNetCompact(num_feat=8, num_conv=3)) == 3
    assert network_depth(torch.nn.Conv2d(3, 3, 3)) is None
