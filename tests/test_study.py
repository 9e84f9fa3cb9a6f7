"""sd-study: pairing (same data, same initial student weights per seed), the report, and resuming a study."""
import json
import os
from os import path as osp

import pytest
import torch
import yaml
from basicsr.archs.srresnet_arch import MSRResNet
from helpers import run_cli, tiny_options

from sd_plugin.export import student_keys
from sd_plugin.study.spec import load_spec, paired_init, run_options


def tiny_spec(tiny_data, tmp_path, **overrides):
    """A study file: baseline 'alone2' (MSRResNet-2), 'sd4' (4 blocks, exit 2), 'deep4' (4 blocks alone)."""
    base = tiny_options(tiny_data, name='unused')
    base.pop('name')
    base.pop('manual_seed')
    base['logger']['use_tb_logger'] = True
    spec = {'name': 'tiny', 'seeds': [0, 1], 'iters': 4, 'val_freq': 2, 'student_depth': 2, 'baseline': 'alone2',
            'arms': {'alone2': {'label': 'alone', 'network_g': {'num_block': 2, 'exits': []},
                                'train': {'self_distill': None}},
                     'sd4': {'label': 'SD-4'},
                     'deep4': {'label': 'deep alone', 'network_g': {'exits': []}, 'train': {'self_distill': None}}},
            'base': base, **overrides}
    path = tmp_path / 'tiny_study.yml'
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def test_every_arm_starts_from_the_baseline_students_initial_weights(tiny_data, tmp_path):
    spec = load_spec(tiny_spec(tiny_data, tmp_path))
    for seed in (0, 1):
        torch.manual_seed(seed)
        reference = MSRResNet(num_feat=8, num_block=2, upscale=4).state_dict()
        states = {arm: paired_init(run_options(spec, arm, seed, 'init.pth')['network_g'], 2, seed)['params']
                  for arm in spec['arms']}
        for arm in ('alone2', 'sd4'):
            keys = student_keys(states[arm], 2)
            assert len(keys) == len(reference)
            for name, key in keys.items():
                assert torch.equal(states[arm][key], reference[name]), (arm, name)
        for name in reference:  # a deeper network trained alone shares conv_first and blocks 1..k
            if name.startswith(('conv_first.', 'body.')):
                assert torch.equal(states['deep4'][name], reference[name]), name
    seed0, seed1 = (paired_init(run_options(spec, 'sd4', s, 'init.pth')['network_g'], 2, s)['params'] for s in (0, 1))
    assert not torch.equal(seed0['conv_first.weight'], seed1['conv_first.weight'])  # another seed, other weights


def first_batches(opt, count=3):
    import logging

    import basicsr.train
    from basicsr.utils import set_random_seed
    opt = {**opt, 'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1, 'auto_resume': False,
           'path': {**opt['path'], 'resume_state': None}}
    for phase in opt['datasets']:
        opt['datasets'][phase]['phase'] = phase.split('_')[0]
        opt['datasets'][phase]['scale'] = opt['scale']
    set_random_seed(opt['manual_seed'])
    loader = basicsr.train.create_train_val_dataloader(opt, logging.getLogger('test'))[0]
    batches = []
    for data in loader:
        batches.append((data['lq'].clone(), data['gt'].clone()))
        if len(batches) == count:
            return batches


def test_for_one_seed_every_arm_sees_the_same_samples_in_the_same_order_with_the_same_augmentation(tiny_data,
                                                                                                  tmp_path):
    spec = load_spec(tiny_spec(tiny_data, tmp_path))
    alone, sd = (first_batches(run_options(spec, arm, 0, 'init.pth')) for arm in ('alone2', 'sd4'))
    for (lq_a, gt_a), (lq_b, gt_b) in zip(alone, sd):
        assert torch.equal(lq_a, lq_b) and torch.equal(gt_a, gt_b)
    other_seed = first_batches(run_options(spec, 'sd4', 1, 'init.pth'))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(sd, other_seed))  # the test can fail


def test_a_tiny_study_trains_every_arm_and_seed_reports_and_resumes(tiny_data, tmp_path):
    spec = tiny_spec(tiny_data, tmp_path)
    out, report = tmp_path / 'study', tmp_path / 'report'
    proc = run_cli(['sd-study', spec, '--out', str(out), '--parallel', '2', '--report', str(report),
                    '--arms', 'sd4'], cwd=tmp_path)
    assert '0 of 4 runs finished, 4 to go' in proc.stdout
    doc = json.load(open(report / 'study.json'))
    assert set(doc['arms']) == {'alone2', 'sd4'}
    sd = doc['arms']['sd4']
    assert sd['seeds_done'] == [0, 1] and doc['arms']['alone2']['seeds_done'] == [0, 1]
    paired = sd['sets']['tinyval']['paired_psnr']
    assert paired['final']['n'] == 2 and paired['curve']['iters'] == [2, 4]
    student = sd['sets']['tinyval']['student_psnr']['final']
    alone = doc['arms']['alone2']['sets']['tinyval']['student_psnr']['final']
    for seed in ('0', '1'):
        assert paired['final']['per_seed'][seed] == pytest.approx(student['per_seed'][seed] - alone['per_seed'][seed])
    assert 'teacher_psnr' in sd['sets']['tinyval'] and sd['train_gmacs_per_iter'] > 0
    assert open(report / 'study.png', 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    assert '| SD-4 | 2 |' in (report / 'study.md').read_text()
    assert sorted(os.listdir(report / 'students')) == ['alone2_seed0.pth', 'alone2_seed1.pth', 'sd4_seed0.pth',
                                                      'sd4_seed1.pth']
    exported = torch.load(report / 'students' / 'sd4_seed1.pth')
    assert exported['params']['conv_first.weight'].dtype == torch.float16
    MSRResNet(num_feat=8, num_block=2).load_state_dict({k: v.float() for k, v in exported['params'].items()})

    again = run_cli(['sd-study', spec, '--out', str(out), '--arms', 'sd4'], cwd=tmp_path)  # nothing left to train
    assert '4 of 4 runs finished, 0 to go' in again.stdout
    os.remove(osp.join(out, 'runs', 'sd4_seed1', 'done.json'))  # as if stopped before it finished
    resumed = run_cli(['sd-study', spec, '--out', str(out), '--arms', 'sd4'], cwd=tmp_path)
    assert '3 of 4 runs finished, 1 to go' in resumed.stdout and 'sd4_seed1: done' in resumed.stdout
    log = open(osp.join(out, 'runs', 'sd4_seed1', 'train.log')).read()
    assert 'Resuming training from epoch' in log


def test_a_bad_study_file_is_refused_in_one_line(tiny_data, tmp_path):
    spec = tiny_spec(tiny_data, tmp_path, baseline='nope')
    proc = run_cli(['sd-study', spec, '--out', str(tmp_path / 'o')], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "sd-study: error: baseline='nope': not one of the arms (alone2, sd4, deep4)"


@pytest.mark.parametrize('name', ['proxy.yml', 'paper_gpu.yml'])
def test_the_shipped_study_files_load_and_build_every_arm(name):
    from sd_plugin.files import shipped_options
    from sd_plugin.preflight import build_network
    from sd_plugin.study.runner import jobs
    spec = load_spec(shipped_options('study', name))
    runs = jobs(spec)
    assert len(runs) == len(set(runs)) == sum(len(arm['seeds']) for arm in spec['arms'].values())
    assert runs[:3] == [(spec['baseline'], spec['seeds'][0]), *runs[1:3]]  # the baseline first
    for arm in spec['arms']:
        opt = run_options(spec, arm, 0, 'init.pth')
        assert opt['train']['total_iter'] == spec['iters'] and opt['manual_seed'] == 0
        build_network({**opt['network_g'], 'num_block': min(opt['network_g']['num_block'], 8),
                       'exits': [e for e in opt['network_g'].get('exits', []) if e < 8]})


def spec_edit(path, value):
    """A study-file editor that sets spec[k1][k2]... = value, for a ':'-separated path."""
    def edit(spec):
        *keys, last = path.split(':')
        node = spec
        for key in keys:
            node = node[key]
        node[last] = value
    return edit


BAD_SPECS = {  # editor of the tiny study file (a dict), expected one-line message
    'arms: ~': (spec_edit('arms', None), 'arms=None: must be a mapping of arm name to overrides'),
    'an arm that is a list': (spec_edit('arms:sd4', [1, 2]), 'arms.sd4=[1, 2]: must be a mapping of overrides'),
    'base: {}': (spec_edit('base', {}), "arms.alone2: base merged with the arm lacks a section the study sets ('val')"),
    'an arm named as a path': (lambda spec: spec['arms'].update({'../../victim': {}}),
                               "arm name='../../victim': holds '/'; it becomes a folder name"),
    'no TensorBoard logs': (spec_edit('base:logger:use_tb_logger', False),
                            'arms.alone2: logger.use_tb_logger=False; sd-study reads its learning curves from the '
                            'TensorBoard logs'),
    'a schedule naming an absent seed': (spec_edit('schedule', [{'arms': ['sd4'], 'seeds': [5]}]),
                                         "schedule[0].seeds: seed 5 is not a seed of arm 'sd4' ([0, 1])"),
    'a misspelled optimizer in base': (spec_edit('base:train:optim_g:type', 'Adamm'),
                                       "arms.alone2 (base + its overrides): train.optim_g.type='Adamm': not "
                                       "registered in BasicSR 1.4.2's get_optimizer; did you mean 'Adam'?"),
    'a seed of 2**32 in an arm': (spec_edit('arms:sd4:seeds', [2**32]),
                                  'arms.sd4 (base + its overrides): manual_seed=4294967296: must be a whole number in '
                                  '[0, 2**32)'),
}


def run_study_main(argv, capsys):
    from sd_plugin.tools.study import main
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as done:
        code = done.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize('case', list(BAD_SPECS))
def test_a_bad_study_file_is_refused_in_one_line_before_any_run(tiny_data, tmp_path, case, capsys):
    edit, message = BAD_SPECS[case]
    path = tiny_spec(tiny_data, tmp_path)
    spec = yaml.safe_load(open(path))
    edit(spec)
    open(path, 'w').write(yaml.safe_dump(spec, sort_keys=False))
    code, err = run_study_main([path, '--out', str(tmp_path / 'o')], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith('sd-study: error: ') and message in lines[0], err
    assert not (tmp_path / 'o').exists() and not (tmp_path.parent / 'victim').exists()


def test_report_only_on_a_missing_folder_is_an_error(tiny_data, tmp_path, capsys):
    code, err = run_study_main([tiny_spec(tiny_data, tmp_path), '--out', str(tmp_path / 'nope'), '--report-only'],
                               capsys)
    assert code == 2 and err.strip() == f'sd-study: error: --report-only --out {tmp_path / "nope"}: no study there ' \
        f'(no {tmp_path / "nope" / "runs"} folder); nothing to report'
    assert not (tmp_path / 'nope').exists()


def test_a_run_another_process_finished_while_this_one_waited_is_not_trained_again(tmp_path, monkeypatch):
    """Two sd-study processes on one --out: the second must not resume (and re-export) a run the first finished
    after the second had listed it as to do."""
    from sd_plugin.study import runner
    folder = tmp_path / 'runs' / 'a_seed0'
    folder.mkdir(parents=True)
    (folder / 'done.json').write_text(json.dumps({'iters': 10, 'seconds': 5.0}))
    monkeypatch.setattr(runner.CHILDREN, 'popen', lambda *args, **kwargs: pytest.fail('trained again'))
    assert runner.train_one({'iters': 10}, 'a', 0, str(tmp_path), shares=None) == {'iters': 10, 'seconds': 5.0}
