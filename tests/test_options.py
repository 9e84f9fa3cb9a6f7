"""Every YAML in options/ parses with BasicSR's option parser and builds its network and model."""
import glob
import sys
from os import path as osp

import pytest
from basicsr.models import build_model
from basicsr.utils.options import parse_options
from helpers import ROOT

OPTION_FILES = sorted(p for p in glob.glob(osp.join(ROOT, 'options', '**', '*.yml'), recursive=True)
                      if osp.basename(osp.dirname(p)) != 'study')  # study files are sd-study's, not BasicSR's


def test_every_experiment_has_its_options():
    names = {osp.relpath(p, osp.join(ROOT, 'options')) for p in OPTION_FILES}
    for stem in ('sd_sr32', 'sd_sr50', 'sd_sr100', 'baseline_sr8', 'ds_sr32', 'sd_sr32_mse'):
        assert {f'{stem}.yml', f'test/test_{stem}.yml', f'cpu/{stem}.yml'} <= names


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda p: osp.relpath(p, osp.join(ROOT, 'options')))
def test_options_parse_and_build(path, monkeypatch, tmp_path):
    first = open(path).readline()
    assert first.startswith('# ') and ('Experiment' in first or 'Evaluates' in first or 'CPU-budget' in first)
    is_train = osp.basename(osp.dirname(path)) != 'test'
    monkeypatch.setattr(sys, 'argv', ['x', '-opt', path])
    opt, _ = parse_options(str(tmp_path), is_train=is_train)
    opt['path']['pretrain_network_g'] = None
    model = build_model(opt)
    net = model.get_bare_model(model.net_g)
    assert net.upscale == opt['scale'] == 4
    if opt['model_type'] == 'SelfDistillSRModel':
        assert net.exits == [8] and net.num_block in (32, 50, 100)
    else:
        assert type(net).__name__ == 'MSRResNet' and net.body.__len__() == 8


@pytest.mark.parametrize('folder', ['', 'cpu'])
def test_ablations_differ_from_sd_only_where_they_should(folder):
    import yaml
    load = lambda stem: yaml.safe_load(open(osp.join(ROOT, 'options', folder, f'{stem}.yml')))  # noqa: E731
    sd, ds, mse, base = load('sd_sr32'), load('ds_sr32'), load('sd_sr32_mse'), load('baseline_sr8')
    assert ds['train']['self_distill'] == {'student_pixel_weight': 1.0,
                                           'distill_opt': {'type': 'L1DistillLoss', 'loss_weight': 0.0}}
    assert mse['train']['self_distill']['distill_opt']['type'] == 'MSEDistillLoss'
    for other in (ds, mse):
        assert {k: v for k, v in other.items() if k not in ('name', 'train')} == \
            {k: v for k, v in sd.items() if k not in ('name', 'train')}
    text = open(osp.join(ROOT, 'options', folder, 'baseline_sr8.yml')).read().split('\nname:', 1)[1]
    assert 'MultiExit' not in text and 'Distill' not in text and 'self_distill' not in text
    assert (base['datasets'], base['manual_seed'], base['train']['total_iter'], base['train']['optim_g']) == \
        (sd['datasets'], sd['manual_seed'], sd['train']['total_iter'], sd['train']['optim_g'])


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda p: osp.relpath(p, osp.join(ROOT, 'options')))
def test_options_pass_the_plugins_option_checks_as_read_by_its_safe_loader(path):
    """BasicSR's own idioms (``val_freq: !!float 5e3``) pass the type checks; key order is the file's."""
    import sd_plugin  # noqa: F401  (registrations)
    from sd_plugin.preflight import check_option_values
    from sd_plugin.yamlio import load_yaml
    opt = load_yaml(path)
    check_option_values(opt, is_train=osp.basename(osp.dirname(path)) != 'test')
    assert list(opt)[:2] == ['name', 'model_type']
