"""MultiExitSR in training (issue 16): sd-train validates every exit of a wrapped EDSR, trains and exports an
SRVGGNetCompact under either of its names, a wrapped RRDBNet resumes bitwise after a kill, and a user's own arch,
registered from outside the package, is wrapped, trained and exported."""
import importlib.util
import re
import sys

import pytest
import torch
from basicsr.models import build_model
from helpers import model_options, run_cli, tiny_options, write_yaml
from test_reliability import final_metrics, kill_after_checkpoint

from sd_plugin.archs.multi_exit_arch import MultiExitSR, build_stock
from sd_plugin.tools.export import main as export_main

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 3, 'upscale': 4}
RRDBNET = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'num_grow_ch': 4,
           'scale': 4}


def wrapped_options(data, arch, exits, **kwargs):
    opt = tiny_options(data, **kwargs)
    opt['network_g'] = {'type': 'MultiExitSR', 'arch': dict(arch), 'exits': exits}
    return opt


def test_sd_train_validates_every_exit_of_a_wrapped_edsr(tiny_data, tmp_path, capsys):
    opt = wrapped_options(tiny_data, EDSR, [1, 2], name='edsr', total_iter=4)
    opt['val']['val_freq'] = 4
    opt['logger'].update(save_checkpoint_freq=4, use_tb_logger=False)
    run_cli(['sd-train', '-opt', write_yaml(opt, tmp_path / 'edsr.yml')], cwd=tmp_path)
    metrics = dict(final_metrics(tmp_path / 'experiments' / 'edsr'))
    assert set(metrics) == {'psnr', 'psnr_exit1', 'psnr_exit2'}
    ckpt = tmp_path / 'experiments' / 'edsr' / 'models' / 'net_g_latest.pth'
    export_main([str(ckpt), '--exit', '2', '--out', str(tmp_path / 'edsr2.pth')])
    assert re.search(r"network_g: \{'type': 'EDSR'.*'num_block': 2", capsys.readouterr().out)


@pytest.mark.parametrize('arch_type', ['SRVGGNetCompact_basicsr', 'SRVGGNetCompact'])
def test_sd_train_trains_and_exports_srvggnetcompact_under_either_name(tiny_data, tmp_path, arch_type):
    """BasicSR registers SRVGGNetCompact as SRVGGNetCompact_basicsr and finds it under both names: sd-train trains
    a wrapped one (2 iterations) and validates every exit, and sd-export cuts exit 2 as SRVGGNetCompact(num_conv=2),
    which loads strictly into the stock arch and gives the exit's output."""
    arch = {'type': arch_type, 'num_feat': 8, 'num_conv': 3, 'upscale': 4}
    opt = wrapped_options(tiny_data, arch, [1, 2], name='vgg', total_iter=2)
    opt['val']['val_freq'] = 2
    opt['logger'].update(save_checkpoint_freq=2, use_tb_logger=False)
    run_cli(['sd-train', '-opt', write_yaml(opt, tmp_path / 'vgg.yml')], cwd=tmp_path)
    assert set(dict(final_metrics(tmp_path / 'experiments' / 'vgg'))) == {'psnr', 'psnr_exit1', 'psnr_exit2'}
    ckpt = tmp_path / 'experiments' / 'vgg' / 'models' / 'net_g_latest.pth'
    export_main([str(ckpt), '--exit', '2', '--out', str(tmp_path / 'vgg2.pth')])
    saved = torch.load(tmp_path / 'vgg2.pth')
    assert saved['sd_plugin']['arch']['num_conv'] == 2
    student = build_stock(saved['sd_plugin']['arch']).eval()
    student.load_state_dict(saved['params'], strict=True)
    net = MultiExitSR(arch, exits=[1, 2]).eval()
    net.load_state_dict(torch.load(ckpt)['params'], strict=True)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert (student(x) - net.forward_exits(x, [2])[2]).abs().max() < 1e-5


def test_killed_and_resumed_wrapped_rrdbnet_is_identical_to_an_uninterrupted_run(tiny_data, tmp_path):
    opt = wrapped_options(tiny_data, RRDBNET, [1], name='kr', total_iter=8, ema_decay=0.9)
    opt['logger'].update(save_checkpoint_freq=5, use_tb_logger=False)
    opt['val']['val_freq'] = 100
    for run in ('full', 'killed'):
        (tmp_path / run).mkdir()
    write_yaml(opt, tmp_path / 'kr.yml')
    run_cli(['sd-train', '-opt', str(tmp_path / 'kr.yml')], cwd=tmp_path / 'full')
    killed = kill_after_checkpoint(tmp_path / 'kr.yml', tmp_path / 'killed', kill_at=5)
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_cli(['sd-train', '-opt', str(tmp_path / 'kr.yml'), '--auto_resume'], cwd=tmp_path / 'killed')
    full = torch.load(tmp_path / 'full' / 'experiments' / 'kr' / 'models' / 'net_g_latest.pth')
    resumed = torch.load(tmp_path / 'killed' / 'experiments' / 'kr' / 'models' / 'net_g_latest.pth')
    assert 'exit_heads.1.conv_last.weight' in full['params']
    for key in ('params', 'params_ema'):
        assert set(full[key]) == set(resumed[key])
        for name, value in full[key].items():
            assert torch.equal(value, resumed[key][name]), (key, name)


TOY_MODULE = '''
"""A user's own arch and its adapter, registered from outside sd_plugin, as a user's project would."""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from sd_plugin.archs.adapters import Adapter, register_adapter


class ToyNet(nn.Module):
    def __init__(self, num_feat=8, num_layer=3, upscale=4):
        super().__init__()
        self.upscale = upscale
        self.head_conv = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.layers = nn.ModuleList(nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.ReLU())
                                    for _ in range(num_layer))
        self.to_rgb = nn.Conv2d(num_feat, 3 * upscale**2, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(upscale)

    def forward(self, x):
        feat = self.head_conv(x)
        for layer in self.layers:
            feat = layer(feat)
        return self.shuffle(self.to_rgb(feat))


if 'ToyNet' not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(ToyNet)


@register_adapter('ToyNet')
class ToyNetAdapter(Adapter):
    depth_key = 'num_layer'
    block_attr = 'layers'
    tail_names = ('to_rgb', 'shuffle')

    def stem(self, net, x):
        return net.head_conv(x), {}

    def tail(self, net, head, feat, extras):
        return head.shuffle(head.to_rgb(feat)), None
'''


def test_a_users_own_arch_is_wrapped_trained_and_exported(tiny_data, tmp_path):
    (tmp_path / 'my_project_archs.py').write_text(TOY_MODULE)
    spec = importlib.util.spec_from_file_location('my_project_archs', tmp_path / 'my_project_archs.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules['my_project_archs'] = module
    spec.loader.exec_module(module)

    toy = {'type': 'ToyNet', 'num_feat': 8, 'num_layer': 3, 'upscale': 4}
    opt = model_options(tiny_data)
    opt['network_g'] = {'type': 'MultiExitSR', 'arch': toy, 'exits': [1]}
    model = build_model(opt)
    net = model.net_g
    assert isinstance(net, MultiExitSR) and net.depths == [1, 3]
    before = net.state_dict()['exit_heads.1.to_rgb.weight'].clone()
    g = torch.Generator().manual_seed(0)
    for step in (1, 2, 3):
        model.feed_data({'lq': torch.rand(2, 3, 8, 8, generator=g), 'gt': torch.rand(2, 3, 32, 32, generator=g)})
        model.optimize_parameters(step)
    assert not torch.equal(before, net.state_dict()['exit_heads.1.to_rgb.weight'])
    torch.save({'params': net.state_dict()}, tmp_path / 'toy.pth')
    export_main([str(tmp_path / 'toy.pth'), '--exit', '1', '--out', str(tmp_path / 'toy1.pth')])
    saved = torch.load(tmp_path / 'toy1.pth')
    assert saved['sd_plugin']['arch'] == {**toy, 'num_layer': 1}
    student = build_stock(saved['sd_plugin']['arch']).eval()
    student.load_state_dict(saved['params'], strict=True)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert (student(x) - net.eval().forward_exits(x, [1])[1]).abs().max() < 1e-5
