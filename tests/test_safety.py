"""Issue 9: no command deletes or replaces a user's data, and none exits 0 after a failure.

A tool removes only what it created; an output never replaces an input; a failed save never exits 0; resuming
survives a damaged newest checkpoint; the best-metric records and the usual file permissions survive."""
import os
import resource
import signal
import subprocess
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from helpers import BIN, run_cli, tiny_options, write_yaml

from sd_plugin.checkpoint import atomic_save
from sd_plugin.errors import ConfigError
from sd_plugin.files import check_apart, claim_folder


def run_main(main, argv, capsys):
    """(exit status, stderr) of a command's ``main(argv)`` run in this process."""
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as done:
        code = done.code
    return code, capsys.readouterr().err


def one_line(err, prog, message):
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(f'{prog}: error: ') and message in lines[0]


# ------------------------------------------------------------------------------- outputs never replace inputs


def test_check_apart_refuses_the_input_itself_any_spelling_and_a_folder_holding_it(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'x.pth').write_bytes(b'1')
    os.symlink(tmp_path / 'a' / 'x.pth', tmp_path / 'link.pth')
    for out in (tmp_path / 'a' / 'x.pth', tmp_path / 'a' / '..' / 'a' / 'x.pth', tmp_path / 'link.pth',
                tmp_path / 'a', tmp_path):
        with pytest.raises(ConfigError, match='an output must never replace an input'):
            check_apart({'--out': str(out)}, {'CKPT': str(tmp_path / 'a' / 'x.pth')})
    check_apart({'--out': str(tmp_path / 'a' / 'y.pth')}, {'CKPT': str(tmp_path / 'a' / 'x.pth')})  # a sibling


def test_sd_export_refuses_to_write_over_its_input(tmp_path, capsys, monkeypatch):
    from sd_plugin.archs import SRResNetMultiExit
    from sd_plugin.tools.export import main
    ckpt = tmp_path / 'ck.pth'
    torch.save({'params': SRResNetMultiExit(num_feat=8, num_block=4, exits=[2]).state_dict()}, ckpt)
    before = ckpt.read_bytes()
    monkeypatch.chdir(tmp_path)
    for out in ('ck.pth', './ck.pth', str(ckpt)):
        code, err = run_main(main, ['ck.pth', '--exit', '2', '--out', out], capsys)
        assert code == 2 and one_line(err, 'sd-export', 'is the input CKPT ck.pth'), err
        code, err = run_main(main, ['ck.pth', '--exit', '2', '--out', 's.pth', '--onnx', out], capsys)
        assert code == 2 and one_line(err, 'sd-export', 'is the input CKPT ck.pth'), err
    assert ckpt.read_bytes() == before and sorted(os.listdir(tmp_path)) == ['ck.pth']


def test_sd_prepare_overwrite_refuses_an_output_that_is_its_input(tmp_path, capsys):
    from sd_plugin.tools.prepare import main
    hr = tmp_path / 'set' / 'HR'
    hr.mkdir(parents=True)
    cv2.imwrite(str(hr / 'a.png'), np.full((32, 32, 3), 100, np.uint8))
    before = (hr / 'a.png').read_bytes()
    code, err = run_main(main, ['folder', '--hr', str(hr), '--name', 'set', '--out', str(tmp_path / 'set'),
                                '--overwrite'], capsys)
    assert code == 2 and one_line(err, 'sd-prepare', f'--out {hr}: is the input --hr {hr}'), err
    assert os.listdir(hr) == ['a.png'] and (hr / 'a.png').read_bytes() == before


def test_sd_eval_refuses_a_json_over_a_checkpoint(tmp_path, capsys):
    from sd_plugin.tools.eval import main
    ckpt = tmp_path / 'ck.pth'
    ckpt.write_bytes(b'precious')
    code, err = run_main(main, [str(ckpt), '--sets', '--json', str(ckpt)], capsys)
    assert code == 2 and one_line(err, 'sd-eval', 'an output must never replace an input'), err
    assert ckpt.read_bytes() == b'precious'


# ------------------------------------------------------------------------------- a tool removes only its own


def test_claim_folder_takes_new_empty_or_own_folders_only(tmp_path):
    assert claim_folder(str(tmp_path / 'new'), 'tool') is False
    assert claim_folder(str(tmp_path / 'new'), 'tool') is True  # its own, from the first call
    (tmp_path / 'empty').mkdir()
    assert claim_folder(str(tmp_path / 'empty'), 'tool') is False
    (tmp_path / 'user').mkdir()
    (tmp_path / 'user' / 'photo.png').write_bytes(b'x')
    with pytest.raises(ConfigError, match='was not made by tool'):
        claim_folder(str(tmp_path / 'user'), 'tool')
    with pytest.raises(ConfigError, match='belongs to tool, not other'):
        claim_folder(str(tmp_path / 'new'), 'other')
    (tmp_path / 'file').write_bytes(b'x')
    with pytest.raises(ConfigError, match='exists and is not a folder'):
        claim_folder(str(tmp_path / 'file'), 'tool')


def test_sd_quickstart_never_clears_a_folder_it_did_not_make(tmp_path, capsys, monkeypatch):
    from sd_plugin.tools.quickstart import main
    photos = tmp_path / 'photos'
    photos.mkdir()
    for i in range(3):
        cv2.imwrite(str(photos / f'{i}.png'), np.full((64, 64, 3), 50 * i, np.uint8))
    (tmp_path / 'notes.txt').write_text('mine')
    monkeypatch.chdir(tmp_path)
    cases = [(['--data', 'photos', '--out', 'photos'], '--out ' + str(photos) + ': is the input --data photos'),
             (['--data', str(photos), '--out', str(tmp_path)], f'--out {tmp_path}: holds the input --data'),
             (['--out', '.'], f'--out {tmp_path}: exists and was not made by sd-quickstart'),
             (['--out', 'notes.txt'], 'exists and is not a folder')]
    for args, message in cases:
        code, err = run_main(main, [*args, '--iters', '1'], capsys)
        assert code == 2 and one_line(err, 'sd-quickstart', message), (args, err)
    assert sorted(os.listdir(photos)) == ['0.png', '1.png', '2.png'] and (tmp_path / 'notes.txt').exists()
    assert sorted(os.listdir(tmp_path)) == ['notes.txt', 'photos']


# ------------------------------------------------------------------------------- a failed save is a failed run


def test_a_full_disk_ends_sd_train_non_zero_in_one_line_naming_the_file(tiny_data, tmp_path):
    """RLIMIT_FSIZE makes every write past 60 KB fail with EFBIG, as a full disk fails with ENOSPC: the tiny
    model's checkpoint (about 100 KB) cannot be written. BasicSR alone logs 'Just ignore it' and exits 0."""
    opt = tiny_options(tiny_data, name='full', total_iter=10)
    opt['logger'].update(save_checkpoint_freq=10, use_tb_logger=False)

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    proc = subprocess.run([osp.join(BIN, 'sd-train'), '-opt', write_yaml(opt, tmp_path / 'full.yml')], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, preexec_fn=limit_file_size)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('sd-train: error: cannot save ') and 'models/net_g_10.pth (' in last
    assert last.endswith('the run stopped, the previous checkpoint is intact')
    models = tmp_path / 'experiments' / 'full' / 'models'
    assert os.listdir(models) == []  # no half-written file under any name


def test_checkpoints_get_the_permissions_a_plain_save_gives(tmp_path):
    for umask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            atomic_save({'a': 1}, tmp_path / f'{umask:o}.pth')
        finally:
            os.umask(old)
        assert os.stat(tmp_path / f'{umask:o}.pth').st_mode & 0o777 == mode


# ------------------------------------------------------------------------------- resume


def train(opt, cwd, *extra, check=True):
    return run_cli(['sd-train', '-opt', write_yaml(opt, cwd / f'{opt["name"]}.yml'), *extra], cwd=cwd, check=check)


def test_resume_falls_back_to_the_newest_intact_pair_and_sets_the_damaged_aside(tiny_data, tmp_path):
    opt = tiny_options(tiny_data, name='fb', total_iter=20)
    opt['logger'].update(save_checkpoint_freq=5, use_tb_logger=False)
    opt['val']['val_freq'] = 100
    train(opt, tmp_path)
    exp = tmp_path / 'experiments' / 'fb'
    with open(exp / 'training_states' / '20.state', 'r+b') as f:
        f.truncate(100)  # the newest state is damaged ...
    with open(exp / 'models' / 'net_g_15.pth', 'r+b') as f:
        f.truncate(100)  # ... and so is the model of the one before
    leftover = exp / 'models' / '.net_g_20.pth.k3j4x7q2.tmp'  # mkstemp's 8 random characters
    leftover.write_bytes(b'half')
    opt['train']['total_iter'] = 25
    train(opt, tmp_path, '--auto_resume')
    log = ''.join(open(exp / f).read() for f in os.listdir(exp) if f.endswith('.log'))
    assert 'Resuming training from epoch: 2, iter: 10.' in log
    assert 'training_states/20.state is damaged; set aside as' in log and 'net_g_15.pth is damaged' in log
    assert f'removed {leftover}' in log and not leftover.exists()
    assert (exp / 'training_states' / '20.state.damaged').exists()
    assert (exp / 'models' / 'net_g_15.pth.damaged').exists()
    assert torch.load(exp / 'training_states' / '25.state')['iter'] == 25


def test_best_metric_records_survive_a_resume(tiny_data, tmp_path):
    opt = tiny_options(tiny_data, name='best', total_iter=20)
    opt['logger'].update(save_checkpoint_freq=10, use_tb_logger=False)
    opt['val']['val_freq'] = 10  # BasicSR saves before it validates: the state of 20 holds the records of 10
    train(opt, tmp_path)
    state_path = tmp_path / 'experiments' / 'best' / 'training_states' / '20.state'
    state = torch.load(state_path)
    assert state['best_metric_results']['tinyval']['psnr_exit2']['iter'] == 10
    state['best_metric_results']['tinyval']['psnr']['val'] = 99.0  # an earlier best no new value can beat
    state['best_metric_results']['tinyval']['psnr']['iter'] = 7
    torch.save(state, state_path)
    opt['train']['total_iter'] = 30
    train(opt, tmp_path, '--auto_resume')
    log = ''.join(open(tmp_path / 'experiments' / 'best' / f).read()
                  for f in sorted(os.listdir(tmp_path / 'experiments' / 'best')) if f.endswith('.log'))
    assert 'Best: 99.0000 @ 7 iter' in log.split('Resuming training')[-1]
