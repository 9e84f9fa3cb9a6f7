"""Every command picks its torch threads the same way (sd_plugin.threads): --threads N, then the caller's
torch.set_num_threads, then OMP_NUM_THREADS, then the idle cores; sd-study gives each run its share. The idle-core
count is replaced by a fixed one (``fake_idle``) where a test needs a known answer: the real one depends on what
else the machine runs."""
import json
import logging
import os
import sys

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from helpers import run_cli, tiny_options, write_yaml

from sd_plugin import threads
from sd_plugin.errors import ConfigError
from sd_plugin.threads import RunShares, apply_threads, decide_threads, env_threads, idle_cores, parse_threads


@pytest.fixture(autouse=True)
def fresh_threads(monkeypatch):
    """Each test starts at torch's default count (2 here), with no OMP_NUM_THREADS and no earlier choice; torch's
    count is restored afterwards."""
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, 'TORCH_DEFAULT', 2)
    monkeypatch.setattr(threads, '_last_applied', None)
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def fake_idle(monkeypatch, idle, cores=2):
    monkeypatch.setattr(threads, 'idle_cores', lambda interval=0: (idle, cores))


def test_parse_threads():
    assert parse_threads('auto') == 'auto' and parse_threads('2') == 2 and parse_threads(3) == 3
    for bad in ('0', '-1', 'x', '1.5', '', True, 0):
        with pytest.raises(ConfigError, match='--threads'):
            parse_threads(bad)


def test_omp_num_threads_is_read_as_openmp_reads_it():
    assert env_threads({}) is None and env_threads({'OMP_NUM_THREADS': ''}) is None
    assert env_threads({'OMP_NUM_THREADS': '3'}) == 3 and env_threads({'OMP_NUM_THREADS': '4,2'}) == 4
    for bad in ('abc', '0', '-2'):
        with pytest.raises(ConfigError, match='OMP_NUM_THREADS'):
            env_threads({'OMP_NUM_THREADS': bad})


def test_idle_cores_are_read_from_proc_stat():
    idle, cores = idle_cores(0.05)
    assert cores == len(os.sched_getaffinity(0)) and 0 <= idle <= cores + 0.01


@pytest.mark.parametrize('idle, expected, line', [
    (2.0, 2, '2 threads (2 idle cores of 2)'),
    (1.2, 1, '1 thread (1 idle core of 2)'),
    (0.1, 1, '1 thread (0 idle cores of 2)'),  # at least one
])
def test_auto_uses_the_idle_cores(monkeypatch, idle, expected, line):
    fake_idle(monkeypatch, idle)
    choice = decide_threads('auto')
    assert (choice['threads'], choice['source'], choice['line']) == (expected, 'auto', line)


def test_auto_takes_no_more_than_torchs_default(monkeypatch):
    fake_idle(monkeypatch, 3.9, cores=4)
    assert decide_threads(None)['threads'] == 2


def test_who_decides_first(monkeypatch):
    fake_idle(monkeypatch, 2.0)
    env = {'OMP_NUM_THREADS': '1'}
    assert decide_threads(3, environ=env)['line'] == '3 threads (--threads 3)'  # an explicit --threads wins
    assert decide_threads('auto', environ=env)['line'] == '1 thread (OMP_NUM_THREADS=1)'
    torch.set_num_threads(3)  # the caller's own choice, before calling a command in-process
    choice = decide_threads('auto', environ=env)
    assert (choice['threads'], choice['source']) == (3, 'torch.set_num_threads')


def test_apply_sets_torch_logs_one_line_and_is_not_taken_for_the_users_next_time(monkeypatch):
    fake_idle(monkeypatch, 1.0)
    lines = []
    choice = apply_threads('auto', log=lines.append, prog='sd-x')
    assert torch.get_num_threads() == 1 and choice['threads'] == 1
    assert lines == ['sd-x: 1 thread (1 idle core of 2)']
    fake_idle(monkeypatch, 2.0)  # the other program stopped: the next command takes both cores
    assert apply_threads('auto', log=None)['threads'] == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # the environment's own variable, as a user sets it
    assert apply_threads('auto', log=None)['source'] == 'OMP_NUM_THREADS' and torch.get_num_threads() == 1


def test_study_runs_share_the_idle_cores(monkeypatch):
    fake_idle(monkeypatch, 2.0)
    with RunShares(1, environ={}).run() as (choice, env):
        assert choice['threads'] == 2 and env['OMP_NUM_THREADS'] == '2'
    shares = RunShares(2, environ={})
    with shares.run() as (first, env):
        assert first['threads'] == 1 and env['OMP_NUM_THREADS'] == '1'
        fake_idle(monkeypatch, 1.0)  # the first run holds one core
        with shares.run() as (second, _):
            assert second['threads'] == 1 and shares.held == 2
    assert shares.held == 0


def test_study_keeps_the_users_omp_num_threads(monkeypatch):
    fake_idle(monkeypatch, 2.0)
    with RunShares(1, environ={'OMP_NUM_THREADS': '1', 'X': 'y'}).run() as (choice, env):
        assert choice['line'] == '1 thread (OMP_NUM_THREADS=1)'  # not cpu_count // parallel = 2
        assert env == {'OMP_NUM_THREADS': '1', 'X': 'y'}


# ----------------------------------------------------------------------------------------------- the commands


def test_train_launcher_applies_and_logs_the_choice(tiny_data, tmp_path, monkeypatch, capsys):
    from sd_plugin.train import main
    fake_idle(monkeypatch, 1.0)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger('basicsr')
    monkeypatch.setattr(logger, 'level', logging.INFO)  # an earlier in-process run may have left it at ERROR
    monkeypatch.setattr(logger, 'disabled', False)
    logger.manager._clear_cache()
    logger.addHandler(handler)
    opt = write_yaml(tiny_options(tiny_data, name='threads', total_iter=2), tmp_path / 'threads.yml')
    monkeypatch.setattr(sys, 'argv', ['sd-train', '-opt', opt])
    try:
        main(str(tmp_path))
    finally:
        logging.getLogger('basicsr').removeHandler(handler)
    assert 'sd-train: 1 thread (1 idle core of 2)' in capsys.readouterr().out
    assert 'torch CPU threads: 1 thread (1 idle core of 2)' in [r.getMessage() for r in records]
    assert torch.get_num_threads() == 1


def test_console_train_keeps_omp_num_threads(tiny_data, tmp_path):
    opt = write_yaml(tiny_options(tiny_data, name='omp', total_iter=2), tmp_path / 'omp.yml')
    proc = run_cli(['sd-train', '-opt', opt], cwd=tmp_path, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert 'sd-train: 1 thread (OMP_NUM_THREADS=1)' in proc.stdout
    log = next((tmp_path / 'experiments' / 'omp').glob('train_*.log')).read_text()
    assert 'torch CPU threads: 1 thread (OMP_NUM_THREADS=1)' in log


@pytest.fixture
def student(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / 'student.pth'
    torch.save({'params': MSRResNet(num_feat=8, num_block=2, upscale=4).state_dict()}, path)
    return str(path)


def test_upscale_threads_default_to_auto(student, tmp_path, monkeypatch, capsys):
    from sd_plugin.tools.upscale import main
    fake_idle(monkeypatch, 1.0)
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((8, 8, 3), 128, np.uint8))
    main([str(tmp_path / 'a.png'), '--model', student, '--out', str(tmp_path / 'out'), '--device', 'cpu', '--quiet'])
    assert '1 thread (1 idle core of 2)' in capsys.readouterr().out and torch.get_num_threads() == 1
    main([str(tmp_path / 'a.png'), '--model', student, '--out', str(tmp_path / 'out'), '--device', 'cpu', '--quiet',
          '--threads', 'auto', '--overwrite'])  # accepted as a value too
    with pytest.raises(SystemExit):
        main([str(tmp_path / 'a.png'), '--model', student, '--out', str(tmp_path / 'out'), '--threads', 'two'])
    assert 'sd-upscale: error: --threads two: must be a positive integer, or auto' in capsys.readouterr().err


def test_compare_and_eval_choose_the_same_way(student, tmp_path, monkeypatch, capsys):
    from sd_plugin.tools.compare import main as compare
    from sd_plugin.tools.eval import main as evaluate
    fake_idle(monkeypatch, 1.0)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / 'hr.png'), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    compare(['--hr', str(tmp_path / 'hr.png'), '--model', f'a={student}', '--out', str(tmp_path / 'c.png')])
    assert 'sd-compare: 1 thread (1 idle core of 2)' in capsys.readouterr().out
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    evaluate(['--sets', '--scale', '4', '--json', str(tmp_path / 'e.json')])
    assert 'sd-eval: 1 thread (OMP_NUM_THREADS=1)' in capsys.readouterr().out
    assert json.loads((tmp_path / 'e.json').read_text())[0]['model'] == 'bicubic'
