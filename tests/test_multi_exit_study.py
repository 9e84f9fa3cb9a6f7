"""sd-study with a wrapped arch (issue 16): paired initial weights and the student export of an EDSR arm."""
import torch

from sd_plugin.archs.multi_exit_arch import build_stock, output_depths, student_network_opt
from sd_plugin.export import export
from sd_plugin.study.report import output_names
from sd_plugin.study.spec import has_student, paired_init

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 4, 'upscale': 4}
SPEC = {'student_depth': 2, 'base': {'network_g': {'type': 'MultiExitSR', 'arch': EDSR, 'exits': [2]}},
        'arms': {'sd4': {}, 'alone2': {'network_g': {'arch': {'num_block': 2}, 'exits': []}},
                 'alone4': {'network_g': {'exits': []}}}}
TAIL = ('conv_after_body.', 'upsample.', 'conv_last.')


def network(arm):
    from sd_plugin.study.spec import merge
    return merge(SPEC['base'], SPEC['arms'][arm])['network_g']


def test_every_arm_starts_from_the_same_student_weights_for_a_seed():
    student_opt = student_network_opt(network('sd4'), 2)
    assert student_opt == {**EDSR, 'num_block': 2}
    alone = paired_init(network('alone2'), 2, seed=3)['params']
    sd = paired_init(network('sd4'), 2, seed=3)['params']
    deep = paired_init(network('alone4'), 2, seed=3)['params']
    torch.manual_seed(3)
    reference = build_stock(student_opt).state_dict()
    assert set(alone) == set(reference)
    for name, value in reference.items():
        assert torch.equal(alone[name], value), name
        assert torch.equal(sd[f'exit_heads.2.{name}' if name.startswith(TAIL) else name], value), name
        if not name.startswith(TAIL):
            assert torch.equal(deep[name], value), name
    assert not torch.equal(deep['conv_last.weight'], reference['conv_last.weight'])  # the deep model's own head
    assert not torch.equal(paired_init(network('sd4'), 2, seed=4)['params']['body.0.conv1.weight'],
                           sd['body.0.conv1.weight'])


def test_outputs_and_students_of_wrapped_arms(tmp_path):
    assert output_depths(network('sd4')) == [2, 4] and output_depths(network('alone2')) == [2]
    assert [has_student(SPEC, arm) for arm in ('sd4', 'alone2', 'alone4')] == [True, True, False]
    assert output_names(SPEC, 'sd4') == {'student': '_exit2', 'teacher': ''}
    assert output_names(SPEC, 'alone2') == {'student': ''}
    # a wrapper without exits saves the stock state dict alone: its network_g says what it is
    torch.save(paired_init(network('alone2'), 2, seed=0), tmp_path / 'alone.pth')
    arch = export(str(tmp_path / 'alone.pth'), 2, str(tmp_path / 'student.pth'), network_opt=network('alone2'))
    assert arch == {**EDSR, 'num_block': 2}
