"""Kill-and-resume, atomic checkpoints, the NaN guard and 2-process training (issue: reliability and scale)."""
import contextlib
import glob
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from os import path as osp

import pytest
import torch
from basicsr.models import build_model
from helpers import BIN, model_options, run_cli, tiny_options, write_yaml

from sd_plugin.checkpoint import atomic_save
from sd_plugin.errors import CheckpointSaveError, NonFiniteLossError


def final_metrics(exp_dir):
    """The metric lines of the last validation in the experiment's log(s)."""
    text = ''.join(open(p).read() for p in sorted(glob.glob(osp.join(exp_dir, 'train_*.log'))))
    return re.findall(r'# (\w+): ([\d.]+)', text[text.rindex('Validation'):])


def kill_after_checkpoint(opt_path, cwd, kill_at):
    """Run sd-train in a subprocess that SIGKILLs itself right after saving the checkpoint of iteration kill_at."""
    script = textwrap.dedent(f'''
        import os, signal, sys
        from sd_plugin.models import SelfDistillSRModel
        from sd_plugin.train import main
        save = SelfDistillSRModel.save
        def save_then_die(self, epoch, current_iter):
            save(self, epoch, current_iter)
            if current_iter == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)
        SelfDistillSRModel.save = save_then_die
        sys.argv = ['sd-train', '-opt', {str(opt_path)!r}]
        main(os.getcwd())
    ''')
    return subprocess.run([sys.executable, '-c', script], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize('workers', [0, 2])
def test_killed_and_resumed_run_is_identical_to_an_uninterrupted_one(tiny_data, tmp_path, workers):
    opt = tiny_options(tiny_data, name='kr', total_iter=24, ema_decay=0.9)
    opt['datasets']['train']['num_worker_per_gpu'] = workers
    opt['logger'].update(save_checkpoint_freq=5, use_tb_logger=False)
    opt['val']['val_freq'] = 100
    for run in ('full', 'killed'):
        (tmp_path / run).mkdir()
    write_yaml(opt, tmp_path / 'kr.yml')
    run_cli(['sd-train', '-opt', str(tmp_path / 'kr.yml')], cwd=tmp_path / 'full')

    killed = kill_after_checkpoint(tmp_path / 'kr.yml', tmp_path / 'killed', kill_at=10)  # mid-epoch: 4 iters/epoch
    assert killed.returncode == -9, killed.stderr[-2000:]
    exp = tmp_path / 'killed' / 'experiments' / 'kr'
    assert sorted(os.listdir(exp / 'training_states')) == ['10.state', '5.state']
    run_cli(['sd-train', '-opt', str(tmp_path / 'kr.yml'), '--auto_resume'], cwd=tmp_path / 'killed')

    full = torch.load(tmp_path / 'full' / 'experiments' / 'kr' / 'models' / 'net_g_latest.pth')
    resumed = torch.load(exp / 'models' / 'net_g_latest.pth')
    for key in ('params', 'params_ema'):
        for name, value in full[key].items():
            assert torch.equal(value, resumed[key][name]), (key, name)
    metrics = final_metrics(exp)
    assert metrics and metrics == final_metrics(tmp_path / 'full' / 'experiments' / 'kr')
    assert {m for m, _ in metrics} == {'psnr', 'psnr_exit2'}


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_newest(tiny_data, tmp_path, monkeypatch):
    opt = model_options(tiny_data)
    opt['path'].update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'))
    os.makedirs(opt['path']['models'])
    os.makedirs(opt['path']['training_states'])
    model = build_model(opt)
    model.save(0, 5)
    good = torch.load(tmp_path / 'models' / 'net_g_5.pth')

    def half_written_then_crash(obj, f, *args, **kwargs):
        with (open(f, 'wb') if isinstance(f, (str, os.PathLike)) else contextlib.nullcontext(f)) as file:
            file.write(b'PK\x03\x04 half a checkpoint')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', half_written_then_crash)
    monkeypatch.setattr(time, 'sleep', lambda seconds: None)  # BasicSR retries 3 times, sleeping 1 s each
    with pytest.raises(CheckpointSaveError, match=r'cannot save .*net_g_10\.pth \(OSError: disk full\)'):
        model.save(0, 10)  # BasicSR alone would log "Just ignore it" and carry on
    monkeypatch.undo()

    assert os.listdir(tmp_path / 'models') == ['net_g_5.pth']  # no half-written file, no temporary left behind
    assert os.listdir(tmp_path / 'states') == ['5.state']
    assert torch.equal(torch.load(tmp_path / 'models' / 'net_g_5.pth')['params']['conv_last.weight'],
                       good['params']['conv_last.weight'])


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / 'student.pth'
    atomic_save({'v': 1}, target)

    def crash(obj, f):
        f.write(b'garbage')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_save({'v': 2}, target, save=crash)
    assert torch.load(target) == {'v': 1} and os.listdir(tmp_path) == ['student.pth']


def nan_batch():
    lq = torch.rand(2, 3, 8, 8)
    lq[0, 0, 0, 0] = float('nan')
    return {'lq': lq, 'gt': torch.rand(2, 3, 32, 32)}


def test_non_finite_loss_stops_with_iteration_and_term(tiny_data):
    model = build_model(model_options(tiny_data))
    model.feed_data(nan_batch())
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match=r'iteration 3: non-finite loss l_pix = nan'):
        model.optimize_parameters(3)
    assert all(torch.equal(before[k], v) for k, v in model.net_g.state_dict().items())


def test_non_finite_steps_are_skipped_up_to_the_configured_count(tiny_data):
    model = build_model(model_options(tiny_data, self_distill={'skip_nonfinite': 2}))
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.feed_data(nan_batch())
    model.optimize_parameters(1)
    model.optimize_parameters(2)
    assert all(torch.equal(before[k], v) for k, v in model.net_g.state_dict().items())
    with pytest.raises(NonFiniteLossError, match='iteration 3'):
        model.optimize_parameters(3)


def test_diverging_run_stops_in_one_line_and_keeps_its_last_checkpoint(tiny_data, tmp_path):
    opt = tiny_options(tiny_data, name='nan', optim_g={'type': 'Adam', 'lr': 1e30})
    opt['logger'].update(save_checkpoint_freq=1, use_tb_logger=False)
    proc = run_cli(['sd-train', '-opt', write_yaml(opt, tmp_path / 'nan.yml')], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    found = re.fullmatch(r'sd-train: error: iteration (\d+): non-finite loss (l_\w+) = \S+; stopped, .*', line)
    assert found, proc.stderr[-2000:]
    models = tmp_path / 'experiments' / 'nan' / 'models'
    last_good = int(found.group(1)) - 1
    assert sorted(os.listdir(models)) == sorted(f'net_g_{i}.pth' for i in range(1, last_good + 1))
    torch.load(models / f'net_g_{last_good}.pth')  # intact


def test_two_process_gloo_training_matches_one_process_with_the_same_total_batch(tiny_data, tmp_path):
    results = {}
    for procs in (1, 2):
        opt = tiny_options(tiny_data, name=f'p{procs}', total_iter=8)
        opt['datasets']['train']['batch_size_per_gpu'] = 2 // procs
        opt['logger']['use_tb_logger'] = False
        opt_path = write_yaml(opt, tmp_path / f'p{procs}.yml')
        if procs == 1:
            run_cli(['sd-train', '-opt', opt_path], cwd=tmp_path)
        else:  # no find_unused_parameters: DDP would fail at the 2nd step if a parameter went unused
            proc = subprocess.run([osp.join(BIN, 'torchrun'), '--standalone', '--nproc_per_node', '2', '--no-python',
                                   osp.join(BIN, 'sd-train'), '-opt', opt_path, '--launcher', 'pytorch'],
                                  cwd=tmp_path, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
        exp = tmp_path / 'experiments' / f'p{procs}'
        results[procs] = (torch.load(exp / 'models' / 'net_g_latest.pth')['params'], final_metrics(exp))
    (w1, m1), (w2, m2) = results[1], results[2]
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5  # measured here: 8.6e-08
    assert [name for name, _ in m1] == [name for name, _ in m2] == ['psnr', 'psnr_exit2']
    for (_, v1), (_, v2) in zip(m1, m2):
        assert abs(float(v1) - float(v2)) < 1e-3
    assert shutil.which('torchrun', path=BIN)


def test_total_iter_is_trained_exactly_when_the_last_batch_is_partial(tmp_path, monkeypatch):
    """3 images, batch 2: the loader drops the partial batch, so an epoch is 1 iteration, not BasicSR's ceil(3/2)."""
    from helpers import write_pairs

    from sd_plugin.train import main
    train = write_pairs(str(tmp_path / 'train'), 3, 48, 4, seed=3)
    opt = tiny_options({'train': train, 'val': train}, name='exact', total_iter=6)
    del opt['val'], opt['datasets']['val']
    opt['logger'].update(save_checkpoint_freq=3, use_tb_logger=False)
    monkeypatch.setattr(sys, 'argv', ['sd-train', '-opt', write_yaml(opt, tmp_path / 'exact.yml')])
    main(str(tmp_path))
    states = tmp_path / 'experiments' / 'exact' / 'training_states'
    assert sorted(os.listdir(states)) == ['3.state', '6.state']
    assert torch.load(states / '6.state', weights_only=False)['iter'] == 6


def test_auto_resume_removes_only_the_temporary_files_of_its_own_saves(tmp_path):
    from sd_plugin.compat import remove_leftover_tmp
    models, states = tmp_path / 'models', tmp_path / 'training_states'
    ours = [models / '.net_g_10.pth.k2j4_9xa.tmp', models / '.net_g_latest.pth.abcdefgh.tmp',
            states / '.10.state.0a1b2c3d.tmp']
    theirs = [models / '.notes.tmp', models / '.my_net.pth.abcdefgh.tmp', models / '.net_g_10.pth.tmp',
              states / '.10.state.x.tmp', models / 'net_g_10.pth']
    for path in ours + theirs:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b'x')
    removed = remove_leftover_tmp({'path': {'models': str(models), 'training_states': str(states)}})
    assert sorted(removed) == sorted(str(p) for p in ours)
    assert all(p.exists() for p in theirs) and not any(p.exists() for p in ours)


def test_non_finite_weights_are_refused_when_loading(tmp_path, capsys):
    import cv2
    import numpy as np
    from basicsr.archs.srresnet_arch import MSRResNet

    from sd_plugin.tools.upscale import main
    state = MSRResNet(num_feat=8, num_block=2).state_dict()
    state['body.1.conv2.weight'][0, 0, 0, 0] = float('nan')
    torch.save({'params': state}, tmp_path / 'nan.pth')
    cv2.imwrite(str(tmp_path / 'in.png'), np.full((8, 8, 3), 100, np.uint8))
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([str(tmp_path / 'in.png'), '--model', str(tmp_path / 'nan.pth'), '--out', str(tmp_path / 'out')])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and err == [f'sd-upscale: error: {tmp_path / "nan.pth"}: params.body.1.conv2.weight '
                                            'holds NaN or Inf values; refusing non-finite weights (the run that saved '
                                            'them diverged)']
    assert not (tmp_path / 'out').exists() or not os.listdir(tmp_path / 'out')
