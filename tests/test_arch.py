import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet

from sd_plugin.archs import SRResNetMultiExit
from sd_plugin.errors import ConfigError


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_every_exit_has_the_sr_shape(scale):
    net = SRResNetMultiExit(num_feat=8, num_block=10, upscale=scale, exits=[4, 8])
    x = torch.rand(2, 3, 12, 10)
    outputs = net(x, all_exits=True)
    assert list(outputs) == [4, 8, 10]
    for out in outputs.values():
        assert out.shape == (2, 3, 12 * scale, 10 * scale)
    assert torch.equal(net(x), outputs[10])  # plain forward is the teacher


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_msrresnet_checkpoints_load_strictly_both_ways(scale):
    stock = MSRResNet(num_feat=8, num_block=5, upscale=scale)
    ours = SRResNetMultiExit(num_feat=8, num_block=5, upscale=scale, exits=[])
    ours.load_state_dict(stock.state_dict(), strict=True)
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(ours(x), stock(x), atol=1e-6)
    MSRResNet(num_feat=8, num_block=5, upscale=scale).load_state_dict(ours.state_dict(), strict=True)


def count_block_calls(net, fn):
    calls = []
    hooks = [block.register_forward_hook(lambda *_: calls.append(1)) for block in net.body]
    fn()
    for hook in hooks:
        hook.remove()
    return len(calls)


def test_one_trunk_pass_for_all_exits_and_only_k_blocks_for_a_deployed_exit():
    x = torch.rand(1, 3, 8, 8)
    net = SRResNetMultiExit(num_feat=8, num_block=6, exits=[2, 4])
    assert count_block_calls(net, lambda: net(x, all_exits=True)) == 6
    assert count_block_calls(net, lambda: net.forward_exits(x, [2])) == 2
    deployed = SRResNetMultiExit(num_feat=8, num_block=6, exits=[2, 4], deploy_exit=4)
    deployed.load_state_dict(net.state_dict())
    assert count_block_calls(deployed, lambda: deployed(x)) == 4
    assert torch.equal(deployed(x), net(x, all_exits=True)[4])


@pytest.mark.parametrize('kwargs, key', [
    (dict(exits=[8]), 'network_g.exits'),  # == num_block
    (dict(exits=[9]), 'network_g.exits'),
    (dict(exits=[0]), 'network_g.exits'),
    (dict(exits=[4, 2]), 'network_g.exits'),
    (dict(exits=[2, 2]), 'network_g.exits'),
    (dict(exits=['2']), 'network_g.exits'),
    (dict(upscale=5), 'network_g.upscale'),
    (dict(deploy_exit=3, exits=[2]), 'network_g.deploy_exit'),
])
def test_bad_arch_options_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace('.', r'\.')):
        SRResNetMultiExit(**{'num_feat': 8, 'num_block': 8, **kwargs})


def test_it_is_the_msrresnet_case_of_multiexitsr_and_old_checkpoints_still_load(tmp_path):
    """One implementation (issue 24): SRResNetMultiExit is MultiExitSR with the MSRResNet adapter. A checkpoint the
    previous, separate implementation wrote (tests/data, made at commit cf859d8) loads strictly and gives the
    outputs it gave; new checkpoints keep that layout (no saved wrapper options) and export as before."""
    from helpers import ROOT

    from sd_plugin.archs import MultiExitSR
    from sd_plugin.archs.adapters import get_adapter
    from sd_plugin.export import export
    old = torch.load(f'{ROOT}/tests/data/srresnet_multiexit_cf859d8.pt')
    net = SRResNetMultiExit(num_feat=4, num_block=3, upscale=2, exits=[1]).eval()
    assert isinstance(net, MultiExitSR) and net.adapter is get_adapter('MSRResNet')
    net.load_state_dict(old['params'], strict=True)
    with torch.no_grad():
        outputs = net(old['x'], all_exits=True)
    assert list(outputs) == [1, 3] and all(torch.equal(outputs[d], old['outputs'][d]) for d in (1, 3))
    assert list(net.state_dict()) == list(old['params'])
    torch.save({'params': net.state_dict()}, tmp_path / 'multi.pth')
    arch = export(str(tmp_path / 'multi.pth'), 1, str(tmp_path / 'student.pth'))
    assert arch == dict(type='MSRResNet', num_in_ch=3, num_out_ch=3, num_feat=4, num_block=1, upscale=2)
    student = MSRResNet(**{k: v for k, v in arch.items() if k != 'type'}).eval()
    student.load_state_dict(torch.load(tmp_path / 'student.pth')['params'], strict=True)
    with torch.no_grad():
        assert torch.equal(student(old['x']), old['outputs'][1])
