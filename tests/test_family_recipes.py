"""The family recipes (issue 23; train.self_distill keys exit_weights, grad_equilibrium, sandwich, exits_start_iter,
all off by default) and the family study's pairing (study key family_arm): each option changes the gradient it
promises to change, and nothing else."""
import pytest
import torch
from basicsr.models import build_model
from helpers import ROOT, model_options
from test_study import tiny_spec
from test_variants import batch
from test_variants import grads as grads_of  # one optimize_parameters step's gradients, the step undone

from sd_plugin.archs import SRResNetMultiExit
from sd_plugin.archs.multi_exit_arch import MultiExitSR
from sd_plugin.errors import ConfigError
from sd_plugin.export import student_keys
from sd_plugin.models.self_distill_sr_model import SELF_DISTILL_DEFAULTS, self_distill_options
from sd_plugin.study.spec import family_options, load_spec, paired_init, run_options


def make_model(tiny_data, exits=(2,), num_block=4, **self_distill):
    opt = model_options(tiny_data)
    opt['network_g'].update(num_block=num_block, exits=list(exits))
    opt['train']['self_distill'].update(self_distill)
    torch.manual_seed(0)
    return build_model(opt)


def test_the_other_family_recipes_are_off_by_default():
    assert SELF_DISTILL_DEFAULTS['exit_weights'] is None and SELF_DISTILL_DEFAULTS['grad_equilibrium'] is False
    assert SELF_DISTILL_DEFAULTS['sandwich'] is False and SELF_DISTILL_DEFAULTS['exits_start_iter'] == 0


@pytest.mark.parametrize('exits, weights', [((8,), {8: 1.0}), ((4, 8, 16), {4: 2.0, 8: 0.5, 16: 0.5}),
                                            ((2, 3), {2: 2.0, 3: 1.0}), ((1, 2, 3, 4, 5), {1: 2.0, 2: 0.25, 3: 0.25,
                                                                                           4: 0.25, 5: 0.25})])
def test_by_default_the_shallowest_exit_weighs_half_the_teacher_a_quarter_a_single_exit_as_the_teacher(exits,
                                                                                                       weights):
    assert self_distill_options({'self_distill': {}}, list(exits))['exit_weights'] == weights
    paper = self_distill_options({'self_distill': {'exit_weights': [1.0] * len(exits)}}, list(exits))
    assert paper['exit_weights'] == {d: 1.0 for d in exits}


def test_the_default_trains_as_the_explicit_family_recipe_not_as_the_papers(tiny_data):
    g_default, _ = grads_of(make_model(tiny_data, exits=(1, 2)), batch())
    g_family, _ = grads_of(make_model(tiny_data, exits=(1, 2), exit_weights=[2.0, 1.0]), batch())
    g_paper, _ = grads_of(make_model(tiny_data, exits=(1, 2), exit_weights=[1.0, 1.0]), batch())
    for name in g_default:
        assert close(g_default[name], g_family[name]), name
    assert not close(g_default['body.0.conv1.weight'], g_paper['body.0.conv1.weight'])


def close(a, b):
    """Equal to float precision, relative to the larger of the two (the gradients here are ~1e-7)."""
    return float((a - b).abs().max()) <= 1e-4 * max(float(a.abs().max()), float(b.abs().max()), 1e-30)


def networks():
    torch.manual_seed(0)
    plain = SRResNetMultiExit(num_feat=8, num_block=6, exits=[2, 4])
    wrapped = MultiExitSR({'type': 'MSRResNet', 'num_feat': 8, 'num_block': 6, 'upscale': 4}, exits=[2, 4])
    wrapped.load_state_dict(plain.state_dict())
    return {'SRResNetMultiExit': plain, 'MultiExitSR': wrapped}


@pytest.mark.parametrize('arch', ['SRResNetMultiExit', 'MultiExitSR'])
def test_gradient_equilibrium_gives_every_stage_the_mean_of_its_outputs_gradients(arch):
    """Outputs 2, 4, 6: block 1 (stage 0) gets the mean of all three outputs' gradients, block 3 (stage 1) the
    mean of outputs 4 and 6, block 5 the teacher's alone; every head gets its own loss's gradient unscaled."""
    net = networks()[arch]
    x = torch.rand(1, 3, 8, 8)
    names = {'stage0': 'body.0.conv1.weight', 'stage1': 'body.2.conv1.weight', 'stage2': 'body.4.conv1.weight',
             'head2': 'exit_heads.2.conv_last.weight', 'teacher_head': 'conv_last.weight'}

    def grad(losses_of, **kwargs):
        net.zero_grad()
        outputs = net(x, all_exits=True, **kwargs)
        sum(outputs[d].square().mean() for d in losses_of).backward()
        params = dict(net.named_parameters())
        return {k: params[n].grad.clone() if params[n].grad is not None else torch.zeros_like(params[n])
                for k, n in names.items()}

    alone = {d: grad([d]) for d in (2, 4, 6)}  # each output's own gradient, plain backpropagation
    ge = grad([2, 4, 6], grad_equilibrium=True)
    assert close(ge['stage0'], sum(alone[d]['stage0'] for d in (2, 4, 6)) / 3)
    assert close(ge['stage1'], (alone[4]['stage1'] + alone[6]['stage1']) / 2)
    assert close(ge['stage2'], alone[6]['stage2'])
    assert close(ge['head2'], alone[2]['head2'])
    assert close(ge['teacher_head'], alone[6]['teacher_head'])
    plain = grad([2, 4, 6])  # the test can fail: plain backpropagation sums instead
    assert not close(plain['stage0'], ge['stage0'])
    with torch.no_grad():  # the forward pass does not change
        assert torch.equal(net(x, all_exits=True, grad_equilibrium=True)[6], net(x, all_exits=True)[6])


def test_gradient_equilibrium_reaches_the_model_step(tiny_data):
    g_plain, _ = grads_of(make_model(tiny_data), batch())
    g_ge, _ = grads_of(make_model(tiny_data, grad_equilibrium=True), batch())
    assert close(g_ge['body.2.conv1.weight'], g_plain['body.2.conv1.weight'])  # teacher only
    assert not close(g_ge['body.0.conv1.weight'], g_plain['body.0.conv1.weight'])


def test_exit_weight_multiplies_that_exits_pixel_and_distillation_terms(tiny_data):
    weighted = make_model(tiny_data, exit_weights=[3.0])
    scaled = make_model(tiny_data, student_pixel_weight=0.9 * 3, distill_opt={'type': 'L1DistillLoss',
                                                                             'loss_weight': 0.1 * 3})
    g_w, log_w = grads_of(weighted, batch())
    g_s, log_s = grads_of(scaled, batch())
    g_plain, log_plain = grads_of(make_model(tiny_data), batch())
    for name in g_w:
        assert close(g_w[name], g_s[name]), name
    assert log_w['l_pix_exit2'] == pytest.approx(3 * log_plain['l_pix_exit2'], rel=1e-5)
    assert not close(g_w['body.0.conv1.weight'], g_plain['body.0.conv1.weight'])


def test_sandwich_trains_the_teacher_the_shallowest_exit_and_one_drawn_exit(tiny_data):
    model = make_model(tiny_data, exits=(1, 2, 3), sandwich=True)
    draws = {it: model.step_depths(it) for it in range(1, 41)}
    assert all(d[0] == 1 and d[-1] == 4 and len(d) == 3 and d[1] in (2, 3) for d in draws.values())
    assert {d[1] for d in draws.values()} == {2, 3}  # both others get drawn
    again = make_model(tiny_data, exits=(1, 2, 3), sandwich=True)
    assert {it: again.step_depths(it) for it in draws} == draws  # a resumed run draws the same
    it = next(i for i, d in draws.items() if d[1] == 2)
    g, logs = grads_of(model, batch(), current_iter=it)
    assert 'l_pix_exit3' not in logs and logs['l_pix_exit2'] > 0 and logs['l_pix_exit1'] > 0
    assert g['exit_heads.3.conv_last.weight'].abs().sum() == 0  # the exit not drawn gets no gradient
    assert g['exit_heads.2.conv_last.weight'].abs().sum() > 0 and g['exit_heads.1.conv_last.weight'].abs().sum() > 0
    assert make_model(tiny_data, exits=(1, 2, 3)).step_depths(it) == [1, 2, 3, 4]  # off: every output


def test_two_phase_trains_only_the_teacher_before_exits_start_iter(tiny_data):
    model = make_model(tiny_data, exits_start_iter=10)
    g_early, logs = grads_of(model, batch(), current_iter=9)
    assert set(logs) == {'l_pix'}
    assert all(v.abs().sum() == 0 for n, v in g_early.items() if n.startswith('exit_heads.'))
    teacher_only = make_model(tiny_data, student_pixel_weight=0, distill_opt={'type': 'L1DistillLoss',
                                                                             'loss_weight': 0})
    g_teacher, _ = grads_of(teacher_only, batch())
    for name, value in g_early.items():
        assert close(value, g_teacher[name]), name
    g_late, logs = grads_of(model, batch(), current_iter=10)
    assert logs['l_pix_exit2'] > 0 and g_late['exit_heads.2.conv_last.weight'].abs().sum() > 0


@pytest.mark.parametrize('given, message', [
    ({'exit_weights': {2: 3.0}}, 'train.self_distill.exit_weights={2: 3.0}: must be a list of one weight per exit'),
    ({'exit_weights': [1.0, 2.0]}, 'exit_weights=[1.0, 2.0]: must be a list of one weight per exit (network_g.exits'),
    ({'exit_weights': []}, 'exit_weights=[]: must be a list of one weight per exit'),
    ({'exit_weights': ['3']}, "train.self_distill.exit_weights[0] (exit 2)='3': must be a number >= 0"),
    ({'exit_weights': [True]}, 'train.self_distill.exit_weights[0] (exit 2)=True: must be a number >= 0'),
    ({'exit_weights': [-1]}, 'train.self_distill.exit_weights[0] (exit 2)=-1: must be a number >= 0'),
    ({'sandwich': 'yes'}, "train.self_distill.sandwich='yes': must be true or false"),
    ({'grad_equilibrium': 1}, 'train.self_distill.grad_equilibrium=1: must be true or false'),
    ({'grad_equilibrium': True, 'trunk_grad_scale': 0.5}, 'grad_equilibrium replaces trunk_grad_scale=0.5'),
    ({'exits_start_iter': -1}, 'train.self_distill.exits_start_iter=-1: must be an integer >= 0'),
    ({'exits_start_iter': 1.5}, 'train.self_distill.exits_start_iter=1.5: must be an integer >= 0'),
])
def test_bad_family_options_are_refused_in_one_line(given, message):
    with pytest.raises(ConfigError) as err:
        self_distill_options({'self_distill': given}, [2])
    assert message in str(err.value) and '\n' not in str(err.value)


def family_spec(tiny_data, tmp_path):
    """tiny_spec (twins 'alone2' and 'deep4' of sd4's exit 2 and teacher) with family_arm 'sd4', and a recipe arm
    'w2'."""
    path = tiny_spec(tiny_data, tmp_path, family_arm='sd4')
    import yaml
    spec = yaml.safe_load(open(path))
    spec['arms']['w2'] = {'train': {'self_distill': {'exit_weights': [3.0]}}}
    with open(path, 'w') as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return path


def test_family_arm_starts_every_twin_from_its_exits_initial_weights(tiny_data, tmp_path):
    spec = load_spec(family_spec(tiny_data, tmp_path))
    for seed in (0, 1):
        init = {arm: paired_init(run_options(spec, arm, seed, 'i')['network_g'], 2, seed,
                                 family_options(spec, arm))['params'] for arm in spec['arms']}
        family = init['sd4']
        for twin, depth in (('alone2', 2), ('deep4', 4)):
            keys = student_keys(family, depth)
            assert set(init[twin]) == set(keys), twin
            for name, key in keys.items():
                assert torch.equal(init[twin][name], family[key]), (twin, name)
        assert all(torch.equal(init['w2'][k], family[k]) for k in family)  # a recipe arm: the same network
    (tmp_path / 'plain').mkdir()
    without = load_spec(tiny_spec(tiny_data, tmp_path / 'plain'))
    plain = paired_init(run_options(without, 'deep4', 0, 'i')['network_g'], 2, 0)['params']
    assert not torch.equal(plain['conv_last.weight'], init['deep4']['conv_last.weight'])  # the test can fail


def test_family_arm_is_kept_by_arms_and_must_have_exits(tiny_data, tmp_path):
    path = family_spec(tiny_data, tmp_path)
    assert set(load_spec(path, arms=['deep4'])['arms']) == {'deep4', 'alone2', 'sd4'}
    with pytest.raises(ConfigError, match="family_arm='deep4': must name an arm whose network has exits"):
        load_spec(tiny_spec(tiny_data, tmp_path, family_arm='deep4'))


def test_the_family_study_file_is_valid_and_pairs_every_output():
    spec = load_spec(f'{ROOT}/options/study/family.yml')
    assert spec['family_arm'] == 'sd32'
    for arm, depth in (('alone4', 4), ('alone8', 8), ('alone16', 16), ('alone32', 32)):
        assert family_options(spec, arm)['exits'] == [4, 8, 16], arm


def fake_run(out, arm, seed, scalars, iters=4):
    """A finished run of a study under ``out`` with the TensorBoard scalars {tag: {iter: value}}."""
    import json
    import os

    from torch.utils.tensorboard import SummaryWriter
    folder = os.path.join(out, 'runs', f'{arm}_seed{seed}')
    writer = SummaryWriter(os.path.join(folder, 'tb_logger', f'{arm}_seed{seed}'))
    for tag, points in scalars.items():
        for step, value in points.items():
            writer.add_scalar(tag, value, step)
    writer.close()
    with open(os.path.join(folder, 'done.json'), 'w') as f:
        json.dump({'iters': iters, 'seconds': 1.0}, f)


def test_the_family_report_pairs_each_output_with_its_twin_seed_by_seed(tiny_data, tmp_path):
    from sd_plugin.study.family import markdown, overview, summarise
    spec = load_spec(family_spec(tiny_data, tmp_path))
    out = str(tmp_path / 'out')
    for seed, shift in ((0, 0.0), (1, 0.2)):
        fake_run(out, 'sd4', seed, {'metrics/Set5/psnr_exit2': {2: 20.0, 4: 25.0 + shift},
                                    'metrics/Set5/psnr': {2: 21.0, 4: 26.0 + shift},
                                    'metrics/Set5/ssim_exit2': {4: 0.7}, 'metrics/Set5/ssim': {4: 0.8}})
        fake_run(out, 'alone2', seed, {'metrics/Set5/psnr': {2: 19.0, 4: 25.1}, 'metrics/Set5/ssim': {4: 0.69}})
        fake_run(out, 'deep4', seed, {'metrics/Set5/psnr': {2: 21.5, 4: 26.0}, 'metrics/Set5/ssim': {4: 0.8}})
    fake_run(out, 'w2', 0, {'metrics/Set5/psnr_exit2': {4: 25.5}, 'metrics/Set5/psnr': {4: 25.9}})
    doc = summarise(spec, out)
    recipes = {r['name']: r for r in doc['recipes']}
    assert set(recipes) == {'sd4', 'w2'} and recipes['sd4']['default'] and not recipes['w2']['default']
    rows = {(r['output'], r['set']): r for r in recipes['sd4']['rows']}
    exit2, teacher = rows[('exit 2', 'Set5')], rows[('teacher', 'Set5')]
    assert exit2['n'] == 2 and exit2['per_seed_db'] == pytest.approx({'0': -0.1, '1': 0.1}, abs=1e-5)
    assert exit2['paired_mean_db'] == pytest.approx(0.0, abs=1e-6)
    assert exit2['paired_ssim'] == pytest.approx(0.01, abs=1e-5)
    assert teacher['per_seed_db'] == pytest.approx({'0': 0.0, '1': 0.2}, abs=1e-5)
    assert recipes['sd4']['curves']['exit 2|Set5']['mean'] == pytest.approx([1.0, 0.0], abs=1e-6)
    w2 = {(r['output'], r['set']): r for r in recipes['w2']['rows']}
    assert w2[('exit 2', 'Set5')]['n'] == 1 and w2[('exit 2', 'Set5')]['paired_mean_db'] == pytest.approx(0.4, abs=1e-5)
    assert recipes['w2']['teacher_vs_joint'][0]['paired_mean_db'] == pytest.approx(-0.1, abs=1e-5)
    assert recipes['sd4']['meets_bar'] is None and recipes['w2']['meets_bar'] is None  # fewer than 3 seeds
    assert 'exit 2' in markdown(doc) and '(the default)' in markdown(doc)
    table = [line for line in overview(doc) if line.startswith('| ')]  # the README's table: one row per recipe
    assert table[0] == '| recipe | seeds | exit 2 | teacher vs the joint recipe\'s | bar |'
    assert table[1] == '| SD-4 (default) | 2 | +0.000 ± 1.271 | (itself) | undecided |'  # t(1) = 12.71 x 0.1
    assert table[2] == '| w2 | 1 | +0.400 | -0.100 | undecided |'


@pytest.mark.parametrize('exit_db, teacher_db, n, is_joint, verdict', [
    (-0.019, -0.019, 3, False, True), (-0.021, 0.5, 3, False, False), (0.1, -0.021, 3, False, False),
    (0.1, -0.5, 3, True, True), (0.1, 0.1, 2, False, None)])
def test_the_bar_needs_every_exit_and_the_teacher_within_002_db_over_3_seeds(exit_db, teacher_db, n, is_joint, verdict):
    from sd_plugin.study.family import meets_bar
    row = {'paired_mean_db': exit_db, 'n': n}
    entry = {'rows': [{'output': f'exit {d}', 'set': s, **row} for d in (2, 3) for s in ('Set5', 'Set14')] +
             [{'output': 'teacher', 'set': 'Set5', 'paired_mean_db': -1.0, 'n': n}],  # its twin alone: not the bar
             'teacher_vs_joint': [] if is_joint else [{'set': s, 'paired_mean_db': teacher_db, 'n': n}
                                                      for s in ('Set5', 'Set14')]}
    assert meets_bar(entry, [2, 3, 4], ['Set5', 'Set14'], is_joint) is verdict


def test_the_study_writes_each_twins_initial_weights_from_the_family(tmp_path):
    """options/study/family.yml: SRResNet-8 alone starts from exit 8's weights (without family_arm its head would be
    its own initialisation, not exit 8's)."""
    from sd_plugin.study.runner import write_init
    spec = load_spec(f'{ROOT}/options/study/family.yml', seeds=[0])
    out = str(tmp_path / 'out')
    family = torch.load(write_init(spec, 'sd32', 0, out))['params']
    twin = torch.load(write_init(spec, 'alone8', 0, out))['params']
    keys = student_keys(family, 8)
    assert set(twin) == set(keys)
    for name, key in keys.items():
        assert torch.equal(twin[name], family[key]), name
