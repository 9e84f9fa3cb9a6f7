"""A user's own archs from outside the package (issue 24): the two adapter examples of docs/archs.md, copied from
the page into a folder of their own, named to the commands with ``--import`` or ``custom_imports``. FlatNet (a flat
body whose tail conv sits in the same list) runs through sd-train, sd-export and sd-upscale --tile / --budget from
the commands alone; TokenNet (tokens, units that need per-image state) exports, tiles and routes exactly. A module
that does not import is refused in one line."""
import json
import re
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT, lively, run_cli, tiny_options, write_yaml
from test_bad_inputs import assert_refused, run_train
from test_routing import random_mixes, tile_errors, whole

from sd_plugin.archs.multi_exit_arch import MultiExitSR, build_stock
from sd_plugin.inference import load_sr_network, run_network, tile_grid
from sd_plugin.routing.staged import staged
from sd_plugin.study.spec import load_spec, run_options
from sd_plugin.tools.export import main as export_main


def docs_module(name):
    """The python block of docs/archs.md whose first line is ``# <name>``."""
    text = open(osp.join(ROOT, 'docs', 'archs.md')).read()
    blocks = re.findall(r'```python\n# ' + re.escape(name) + r'\n(.*?)```', text, re.S)
    assert len(blocks) == 1, name
    return blocks[0]


@pytest.fixture(scope='module')
def user_folder(tmp_path_factory):
    """A folder outside the package holding flat_archs.py and token_archs.py as docs/archs.md prints them, imported
    into this process too (as the commands import them)."""
    folder = tmp_path_factory.mktemp('user_project')
    for name in ('flat_archs.py', 'token_archs.py'):
        (folder / name).write_text(docs_module(name))
    (folder / 'broken_archs.py').write_text("raise RuntimeError('this module is broken')\n")
    sys.path.insert(0, str(folder))
    import flat_archs  # noqa: F401
    import token_archs  # noqa: F401
    yield folder
    sys.path.remove(str(folder))


FLAT = {'type': 'FlatNet', 'num_feat': 8, 'num_layer': 4, 'upscale': 4}
TOKEN = {'type': 'TokenNet', 'dim': 8, 'depth': 4, 'upscale': 4}


def test_flat_arch_trains_exports_tiles_and_routes_from_the_commands_alone(user_folder, tiny_data, tmp_path):
    opt = tiny_options(tiny_data, name='flat', total_iter=4)
    opt['network_g'] = {'type': 'MultiExitSR', 'arch': dict(FLAT), 'exits': [2]}
    opt['val']['val_freq'] = 4
    opt['logger'].update(save_checkpoint_freq=4, use_tb_logger=False)
    opt = {'custom_imports': ['flat_archs'], **opt}
    run_cli(['sd-train', '-opt', write_yaml(opt, user_folder / 'flat.yml')], cwd=user_folder)  # found in the cwd
    ckpt = str(user_folder / 'experiments' / 'flat' / 'models' / 'net_g_latest.pth')
    out = run_cli(['sd-export', '--import', 'flat_archs', ckpt, '--exit', '2', '--out', str(tmp_path / 's.pth')],
                  cwd=user_folder).stdout
    assert re.search(r"'type': 'FlatNet'.*'num_layer': 2", out)
    saved = torch.load(tmp_path / 's.pth')
    student = build_stock(saved['sd_plugin']['arch']).eval()
    student.load_state_dict(saved['params'], strict=True)  # layers.0 .. layers.3: the last conv at layers.3
    assert sorted({k.split('.')[1] for k in saved['params']}) == ['0', '1', '2', '3']
    net, _ = load_sr_network(ckpt, exit=2)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert (student(x) - net(x)).abs().max() < 1e-5

    cv2.imwrite(str(tmp_path / 'lr.png'), np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8))
    outputs = {}
    for name, extra in (('whole', []), ('tiled', ['--tile', '5']), ('teacher', ['--budget', '1', '--router', 'random']),
                        ('mix', ['--budget', '0.8', '--router', 'random', '--route-tile', '8'])):
        log = run_cli(['sd-upscale', '--import', 'flat_archs', str(tmp_path / 'lr.png'), '--model', ckpt,
                       '--out', str(tmp_path / name), *extra], cwd=user_folder).stdout
        outputs[name] = cv2.imread(str(tmp_path / name / 'lr_x4.png')).astype(int)
        assert outputs[name].shape == (96, 80, 3)
    assert '4 layers' in log  # the adapter's unit
    assert np.abs(outputs['tiled'] - outputs['whole']).max() <= 1
    assert np.abs(outputs['teacher'] - outputs['whole']).max() <= 1


def test_token_arch_exports_tiles_and_routes_exactly(user_folder, tmp_path):
    torch.manual_seed(0)
    net = lively(MultiExitSR(arch=TOKEN, exits=[1, 2]))
    torch.save({'params': net.state_dict()}, tmp_path / 'token.pth')
    x = torch.rand(1, 3, 13, 17)
    outputs = whole(net, x)
    for depth in (1, 2, 4):
        export_main([str(tmp_path / 'token.pth'), '--exit', str(depth), '--out', str(tmp_path / f's{depth}.pth')])
        saved = torch.load(tmp_path / f's{depth}.pth')
        student = build_stock(saved['sd_plugin']['arch']).eval()
        student.load_state_dict(saved['params'], strict=True)
        with torch.no_grad():
            assert (student(x) - outputs[depth]).abs().max() < 1e-5
    loaded, info = load_sr_network(str(tmp_path / 'token.pth'), exit=2)
    assert info['exact_tiles'] and info['unit'] == 'mix block'
    assert (run_network(loaded, x, tile=5) - outputs[2]).abs().max() < 1e-5
    stages = staged(net)
    assert stages.exact
    grid = tile_grid(13, 17, 4)
    with torch.inference_mode():
        for route, sr in random_mixes(stages, x, grid, count=2):
            assert len(set(route)) > 1 and max(tile_errors(sr, outputs, grid, route)) <= 1e-5


def test_a_module_that_does_not_import_is_refused_in_one_line(user_folder, tiny_data, tmp_path, monkeypatch,
                                                               capsys):
    with pytest.raises(SystemExit) as done:
        export_main(['--import', 'no_such_module', str(tmp_path / 'x.pth'), '--exit', '1', '--out', 'y.pth'])
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and err == ("sd-export: error: --import no_such_module: does not import "
                                            "(ModuleNotFoundError: No module named 'no_such_module')")
    monkeypatch.chdir(tmp_path)
    opt = tiny_options(tiny_data, name='bad')
    for imports, message in ((['flat_archs', 'broken_archs'],
                              'custom_imports broken_archs: does not import (RuntimeError: this module is broken)'),
                             ('flat_archs', "custom_imports='flat_archs': must be a list of module names")):
        path = write_yaml({**opt, 'custom_imports': imports}, tmp_path / 'bad.yml')
        assert_refused(*run_train(['-opt', path], tmp_path, monkeypatch, capsys), message, tmp_path)
    code, err = run_train(['--import', 'broken_archs', '-opt', path], tmp_path, monkeypatch, capsys)
    assert_refused(code, err, '--import broken_archs: does not import (RuntimeError', tmp_path)


def flat_study(tiny_data, iters):
    """A study file's contents: one arm ('sd', seed 0) of a MultiExitSR FlatNet with an exit at 2, whose module
    ``custom_imports`` names."""
    base = tiny_options(tiny_data, name='unused')
    base.pop('name')
    base['logger']['use_tb_logger'] = True
    base['network_g'] = {'type': 'MultiExitSR', 'arch': dict(FLAT), 'exits': [2]}
    return {'name': 'flat', 'seeds': [0], 'iters': iters, 'val_freq': 2, 'student_depth': 2, 'baseline': 'sd',
            'arms': {'sd': {'label': 'SD'}}, 'base': base, 'custom_imports': ['flat_archs']}


def test_sd_study_imports_the_modules_and_passes_them_to_every_run(user_folder, tiny_data, tmp_path):
    spec = flat_study(tiny_data, iters=4)
    path = tmp_path / 'study.yml'
    path.write_text(yaml.safe_dump(spec))
    loaded = load_spec(str(path), imports=['token_archs'])
    assert run_options(loaded, 'sd', 0, 'init.pth')['custom_imports'] == ['flat_archs', 'token_archs']
    path.write_text(yaml.safe_dump({**spec, 'custom_imports': ['broken_archs']}))
    with pytest.raises(Exception, match='custom_imports broken_archs: does not import'):
        load_spec(str(path))


def test_sd_study_trains_and_reports_a_study_of_a_user_arch(user_folder, tiny_data, tmp_path):
    """sd-study from the command alone, on a study whose arch is the user's FlatNet (``custom_imports``, found in
    the current folder): its run trains 2 iterations, and the report has the arm's PSNR and its student, a stock
    FlatNet at the student depth."""
    (user_folder / 'flat_study.yml').write_text(yaml.safe_dump(flat_study(tiny_data, iters=2)))
    out, report = tmp_path / 'study', tmp_path / 'report'
    run_cli(['sd-study', 'flat_study.yml', '--out', str(out), '--report', str(report)], cwd=user_folder)
    arm = json.load(open(report / 'study.json'))['arms']['sd']
    scores = arm['sets']['tinyval']
    assert arm['seeds_done'] == [0] and 'teacher_psnr' in scores
    assert scores['student_psnr']['final']['per_seed']['0'] > 0
    student = build_stock({**FLAT, 'num_layer': 2})
    saved = torch.load(report / 'students' / 'sd_seed0.pth')['params']
    student.load_state_dict({k: v.float() for k, v in saved.items()}, strict=True)


TOOLS = ['calibrate', 'compare', 'dropin', 'eval', 'export', 'prepare', 'quickstart', 'reproduce', 'study', 'upscale']


@pytest.mark.parametrize('tool', TOOLS)
def test_every_sd_command_offers_import(tool, capsys):
    import importlib
    with pytest.raises(SystemExit):
        importlib.import_module(f'sd_plugin.tools.{tool}').main(['--help'])
    assert '--import MODULE' in capsys.readouterr().out


def test_sd_test_takes_import_too(user_folder, tiny_data, tmp_path, monkeypatch, capsys):
    from sd_plugin.test import main
    path = write_yaml(tiny_options(tiny_data, name='t'), tmp_path / 't.yml')
    monkeypatch.setattr(sys, 'argv', ['sd-test', '--import', 'broken_archs', '-opt', path])
    with pytest.raises(SystemExit) as done:
        main(str(tmp_path))
    assert done.value.code == 2
    assert capsys.readouterr().err.strip() == ('sd-test: error: --import broken_archs: does not import '
                                               '(RuntimeError: this module is broken)')
