"""BasicSR's suffix fallback (issue 24): ``SRVGGNetCompact`` is registered as ``SRVGGNetCompact_basicsr``, and
every check of the plugin takes either name, as BasicSR's own ``ARCH_REGISTRY.get`` does."""
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY

from sd_plugin.archs.adapters import get_adapter
from sd_plugin.archs.multi_exit_arch import MultiExitSR, build_stock, output_depths, student_network_opt
from sd_plugin.errors import ConfigError
from sd_plugin.preflight import build_network, registered
from sd_plugin.registries import aliases, registry_name

COMPACT = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=4)


def test_registry_name_follows_basicsrs_fallback():
    assert 'SRVGGNetCompact' not in ARCH_REGISTRY  # what the plugin's checks used to ask
    assert registry_name(ARCH_REGISTRY, 'SRVGGNetCompact') == 'SRVGGNetCompact_basicsr'
    assert registry_name(ARCH_REGISTRY, 'SRVGGNetCompact_basicsr') == 'SRVGGNetCompact_basicsr'
    assert registry_name(ARCH_REGISTRY, 'EDSR') == 'EDSR'
    assert registry_name(ARCH_REGISTRY, 'NoSuchNet') is None and registry_name(ARCH_REGISTRY, ['EDSR']) is None
    assert aliases('SRVGGNetCompact_basicsr') == ['SRVGGNetCompact_basicsr', 'SRVGGNetCompact']


@pytest.mark.parametrize('name', ['SRVGGNetCompact', 'SRVGGNetCompact_basicsr'])
def test_either_name_passes_every_check_and_builds_the_same_arch(name, capsys):
    registered(ARCH_REGISTRY, 'network_g.type', name)  # the preflight check of network_g.type
    assert type(build_network({'type': name, **COMPACT})).__name__ == 'SRVGGNetCompact'
    assert get_adapter(name) is get_adapter('SRVGGNetCompact')
    arch = {'type': name, **COMPACT}
    net = MultiExitSR(arch=arch, exits=[1])
    assert type(build_stock(arch)).__name__ == 'SRVGGNetCompact' and net.depths == [1, 3]
    network_opt = {'type': 'MultiExitSR', 'arch': arch, 'exits': [1]}
    assert output_depths(network_opt) == [1, 3]
    assert student_network_opt(network_opt, 2) == {**arch, 'num_conv': 2}
    assert 'is not found' not in capsys.readouterr().out  # BasicSR's fallback print is not triggered


def test_a_misspelled_name_is_still_refused_in_one_line():
    with pytest.raises(ConfigError, match="network_g.type='SRVGGNetCompct': not registered .*did you mean "
                                          "'SRVGGNetCompact_basicsr'"):
        registered(ARCH_REGISTRY, 'network_g.type', 'SRVGGNetCompct')
    with pytest.raises(ConfigError, match="network_g.arch.type='SRVGGNetCompct': MultiExitSR has no adapter"):
        MultiExitSR(arch={'type': 'SRVGGNetCompct', **COMPACT}, exits=[1])


def test_the_compact_nets_defaults_are_filled_in_for_its_depth():
    net = MultiExitSR(arch={'type': 'SRVGGNetCompact', 'num_feat': 8}, exits=[4])
    assert net.arch_opt['num_conv'] == 16 and net.depths == [4, 16]  # SRVGGNetCompact's default num_conv
    assert net.adapter.unit == 'conv'
    with torch.no_grad():
        assert net(torch.rand(1, 3, 5, 6)).shape == (1, 3, 20, 24)
