"""End-to-end runs of the launchers on tiny generated data, in subprocesses, as a user runs them."""
import glob
import os
import re
import shutil
import subprocess
import sys
from os import path as osp

import basicsr
import pytest
import torch
from helpers import ROOT, run_cli, tiny_options, write_yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def log_text(exp_dir):
    return ''.join(open(p).read() for p in sorted(glob.glob(osp.join(exp_dir, 'train_*.log'))))


def test_train_pipeline_reports_every_exit_in_log_and_tensorboard(tiny_data, tmp_path):
    opt = write_yaml(tiny_options(tiny_data, name='e2e', ema_decay=0.9), tmp_path / 'e2e.yml')
    run_cli(['sd-train', '-opt', opt], cwd=tmp_path)
    text = log_text(tmp_path / 'experiments' / 'e2e')
    assert 'l_pix_exit2:' in text and 'l_distill_exit2:' in text
    assert re.search(r'# psnr: [\d.]+\tBest: [\d.]+ @ \d+ iter', text)
    assert re.search(r'# psnr_exit2: [\d.]+\tBest: [\d.]+ @ \d+ iter', text)
    ckpt = torch.load(tmp_path / 'experiments' / 'e2e' / 'models' / 'net_g_20.pth')
    assert set(ckpt) == {'params', 'params_ema'} and 'exit_heads.2.conv_last.weight' in ckpt['params_ema']
    events = EventAccumulator(str(tmp_path / 'tb_logger' / 'e2e')).Reload()
    tags = events.Tags()['scalars']
    assert {'metrics/tinyval/psnr', 'metrics/tinyval/psnr_exit2', 'losses/l_distill_exit2'} <= set(tags)

    test_opt = tiny_options(tiny_data, name='e2e_test')
    test_opt['datasets'] = {'test_1': test_opt['datasets']['val']}
    test_opt['path'] = {'pretrain_network_g': str(tmp_path / 'experiments' / 'e2e' / 'models' / 'net_g_20.pth'),
                        'param_key_g': 'params_ema', 'strict_load_g': True}
    test_opt['val']['suffix'] = None
    del test_opt['train']
    run_cli(['sd-test', '-opt', write_yaml(test_opt, tmp_path / 'e2e_test.yml')], cwd=tmp_path)
    final = re.findall(r'# (psnr\w*): ([\d.]+)', text[text.rindex('Validation'):])
    test_log = glob.glob(str(tmp_path / 'results' / 'e2e_test' / 'test_*.log'))[0]
    tested = re.findall(r'# (psnr\w*): ([\d.]+)', open(test_log).read())
    assert tested == final  # sd-test on the EMA weights of iteration 20 = the run's last validation


def test_auto_resume_on_cpu_continues_from_the_saved_iteration(tiny_data, tmp_path):
    opt = write_yaml(tiny_options(tiny_data, name='resume', total_iter=10), tmp_path / 'resume.yml')
    run_cli(['sd-train', '-opt', opt], cwd=tmp_path)
    exp = tmp_path / 'experiments' / 'resume'
    run_cli(['sd-train', '-opt', opt, '--auto_resume', '--force_yml', 'train:total_iter=20'], cwd=tmp_path)
    text = log_text(exp)
    assert 'Resuming training from epoch: 2, iter: 10.' in text
    second_run = text[text.index('Resuming training'):]
    assert 'iter:      15' in second_run and 'iter:       5,' not in second_run
    assert sorted(os.listdir(exp / 'training_states')) == ['10.state', '20.state']
    assert not glob.glob(str(tmp_path / 'experiments' / 'resume_archived_*'))


def test_bad_option_is_one_line_before_any_folder_is_made(tiny_data, tmp_path):
    bad = tiny_options(tiny_data, name='bad')
    bad['network_g']['exits'] = [2, 9]
    proc = run_cli(['sd-train', '-opt', write_yaml(bad, tmp_path / 'bad.yml')], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'sd-train: error: network_g.exits=[2, 9]: exit 9 must be an integer in [1, 3] (num_block=4)']
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'tb_logger').exists()


def test_repo_launcher_roots_experiments_at_the_repository(tiny_data, tmp_path):
    name = 'pytest_repo_launcher'
    opt = write_yaml(tiny_options(tiny_data, name=name, total_iter=2), tmp_path / 'r.yml')
    opt_dict = tiny_options(tiny_data, name=name, total_iter=2)
    opt_dict['logger']['use_tb_logger'] = False
    write_yaml(opt_dict, opt)
    try:
        subprocess.run([sys.executable, osp.join(ROOT, 'sd_plugin', 'train.py'), '-opt', opt], cwd=tmp_path,
                       check=True, capture_output=True)
        assert osp.isfile(osp.join(ROOT, 'experiments', name, 'models', 'net_g_latest.pth'))
    finally:
        shutil.rmtree(osp.join(ROOT, 'experiments', name), ignore_errors=True)


def test_basicsr_checkout_runs_its_own_train_py_after_the_dropin(tiny_data, tmp_path):
    """A throw-away checkout made from basicsr 1.4.2's own basicsr/ folder, on PYTHONPATH as BasicSR's docs say."""
    checkout = tmp_path / 'BasicSR'
    shutil.copytree(osp.dirname(basicsr.__file__), checkout / 'basicsr',
                    ignore=shutil.ignore_patterns('__pycache__'))
    opt_dict = tiny_options(tiny_data, name='checkout', total_iter=4)
    opt_dict['logger']['use_tb_logger'] = False
    opt = write_yaml(opt_dict, tmp_path / 'checkout.yml')
    env = {**os.environ, 'PYTHONPATH': str(checkout)}
    cmd = [sys.executable, 'basicsr/train.py', '-opt', opt]
    which = subprocess.run([sys.executable, '-c', 'import sd_plugin, basicsr; print(basicsr.__file__)'],
                           cwd=checkout, env=env, capture_output=True, text=True, check=True)
    assert which.stdout.strip() == str(checkout / 'basicsr' / '__init__.py')

    before = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    assert before.returncode != 0  # stock 1.4.2 on this torchvision, without the plugin

    run_cli(['sd-basicsr-dropin', str(checkout)], cwd=tmp_path)
    after = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    assert after.returncode == 0, after.stderr[-3000:]
    assert 'Model [SelfDistillSRModel] is created.' in after.stderr + after.stdout
    assert (checkout / 'experiments' / 'checkout' / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.parametrize('args, message', [
    (['sd-export', 'missing.pth', '--exit', '8', '--out', 'x.pth'],
     'sd-export: error: missing.pth: no such checkpoint file'),
    (['sd-basicsr-dropin', '.'], 'sd-basicsr-dropin: error: .: not a BasicSR checkout (no basicsr/archs/ folder)'),
])
def test_command_line_errors_are_one_line(tmp_path, args, message):
    proc = run_cli(args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == message


def test_dropin_names_the_command_that_writes_a_missing_basicsr_version_py(tmp_path):
    checkout = tmp_path / 'BasicSR'
    for folder in ('archs', 'models'):
        (checkout / 'basicsr' / folder).mkdir(parents=True)
    proc = run_cli(['sd-basicsr-dropin', str(checkout)], cwd=tmp_path)
    assert "No module named 'basicsr.version'" in proc.stdout
    assert f'cd {checkout} && python setup.py develop' in proc.stdout
    (checkout / 'basicsr' / 'version.py').write_text("__version__ = '1.4.2'\n")
    assert 'version.py' not in run_cli(['sd-basicsr-dropin', str(checkout)], cwd=tmp_path).stdout


def test_importing_the_plugin_registers_its_components_and_changes_nothing_else_in_basicsr():
    """In a fresh process: every BasicSR function that compat.install() replaces is BasicSR's own after
    ``import sd_plugin``; install() replaces them all and says so."""
    script = '''
import sys, types
from torchvision.transforms import functional  # the alias basicsr 1.4.2 needs, made here without sd_plugin
alias = types.ModuleType('torchvision.transforms.functional_tensor')
alias.rgb_to_grayscale = functional.rgb_to_grayscale
sys.modules[alias.__name__] = alias
import basicsr.train, basicsr.test, basicsr.utils.options, basicsr.models.sr_model
from basicsr.models.base_model import BaseModel
names = lambda: {'train.parse_options': basicsr.train.parse_options, 'test.parse_options': basicsr.test.parse_options,
    'load_resume_state': basicsr.train.load_resume_state, 'build_dataset': basicsr.train.build_dataset,
    'EnlargedSampler': basicsr.train.EnlargedSampler, 'loaders': basicsr.train.create_train_val_dataloader,
    'init_dist': basicsr.utils.options.init_dist, 'ordered_yaml': basicsr.utils.options.ordered_yaml,
    'force_yml_value': basicsr.utils.options._postprocess_yml_value, 'save_network': BaseModel.save_network,
    'save_training_state': BaseModel.save_training_state, 'resume_training': BaseModel.resume_training,
    'model_to_device': BaseModel.model_to_device, 'sr_model.imwrite': basicsr.models.sr_model.imwrite}
before = names()
import sd_plugin
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
assert 'SRResNetMultiExit' in ARCH_REGISTRY and 'L1DistillLoss' in LOSS_REGISTRY
assert 'SelfDistillSRModel' in MODEL_REGISTRY
assert names() == before, [k for k in before if names()[k] is not before[k]]
from sd_plugin import compat
installed = compat.install()
assert all(names()[k] is not before[k] for k in before), [k for k in before if names()[k] is before[k]]
print(len(installed))
'''
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == '14'
