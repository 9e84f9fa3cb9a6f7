"""Issue 15: what the tools promise about your files, and write errors in one line.

An output is never a file the run reads, nor another output of the same run; an existing file is replaced only with
--overwrite, and only when the tool wrote it; a failed write (a full disk, a folder at the file's name, a file where
a folder should be) is one line naming the file, and in sd-upscale the rest of the batch goes on; children end with
their parent; a refused run leaves no folder behind."""
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from helpers import ROOT

from sd_plugin.errors import ConfigError, WriteError
from sd_plugin.files import atomic_write, plan_outputs
from sd_plugin.imageio import grey_alpha_png, read_image


def run_main(main, argv, capsys):
    """(exit status, stdout, stderr) of a command's ``main(argv)`` run in this process."""
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as done:
        code = done.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def errors(err, prog):
    return [line for line in err.strip().splitlines() if line.startswith(f'{prog}: error: ')]


def one_line(err, prog, message):
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(f'{prog}: error: ') and message in lines[0]


@pytest.fixture
def student(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / 'student.pth'
    torch.save({'params': MSRResNet(num_feat=8, num_block=2, upscale=4).state_dict()}, path)
    return str(path)


@contextlib.contextmanager
def small_files():
    """Within the block, writing a file past 20 KB fails with EFBIG, as a full disk fails with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def noise(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------- plan_outputs, the one check


def test_plan_outputs_checks_every_output_against_every_input_and_each_other(tmp_path):
    (tmp_path / 'set' / 'GT').mkdir(parents=True)
    (tmp_path / 'set' / 'GT' / 'a.png').write_bytes(b'image')
    (tmp_path / 'old.json').write_text('{}')
    (tmp_path / 'afile').write_text('x')
    (tmp_path / 'adir').mkdir()
    cases = [({'--json': tmp_path / 'r.json', '--plot': tmp_path / '.' / 'r.json'}, 'is also --json'),
             ({'--json': tmp_path / 'set'}, 'is the input --data'),
             ({'--json': tmp_path / 'set' / 'GT' / 'a.png'}, 'lies in --sets'),
             ({'--plot': tmp_path / 'set' / 'GT' / 'new.png'}, 'lies in --sets'),
             ({'--json': tmp_path / 'old.json'}, 'exists; pass --overwrite to replace it'),
             ({'--json': tmp_path / 'adir'}, 'is a folder; give a file name'),
             ({'--json': tmp_path / 'afile' / 'sub' / 'r.json'}, f'{tmp_path / "afile"} is a file, not a folder')]
    for outputs, message in cases:
        with pytest.raises(ConfigError, match=message):
            plan_outputs(outputs, {'--data': str(tmp_path / 'set')}, read_folders={'--sets': str(tmp_path / 'set')})
    plan_outputs({'--json': tmp_path / 'old.json', '--plot': tmp_path / 'new' / 'p.png'}, {}, overwrite=True)


def test_a_failed_write_is_one_line_naming_the_file_and_leaves_nothing(tmp_path):
    (tmp_path / 'adir').mkdir()
    (tmp_path / 'afile').write_text('x')
    for path, size, reason in ((tmp_path / 'afile' / 'x.bin', 10, 'File exists'),
                               (tmp_path / 'adir', 10, 'Is a directory'),
                               (tmp_path / 'big.bin', 50_000, 'File too large')):
        with small_files(), pytest.raises(WriteError, match=f'^cannot write {path} \\({reason}\\)$'):
            atomic_write(str(path), lambda f: f.write(b'0' * size))
    assert sorted(os.listdir(tmp_path)) == ['adir', 'afile']


# ------------------------------------------------------------------------------- sd-eval, sd-export, sd-compare


def test_sd_eval_refuses_outputs_over_what_it_reads_or_each_other_before_evaluating(tmp_path, capsys, monkeypatch):
    from sd_plugin.tools import eval as sd_eval
    monkeypatch.setattr(sd_eval, 'evaluate', lambda *a, **k: pytest.fail('evaluated before the outputs were checked'))
    for folder in ('GTmod4', 'LRbicx4'):
        (tmp_path / 'data' / 'Set5' / folder).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / 'data' / 'Set5' / folder / 'baby.png'), noise(8, 8))
    before = (tmp_path / 'data' / 'Set5' / 'GTmod4' / 'baby.png').read_bytes()
    (tmp_path / 'afile').write_text('x')
    data = ['--data', str(tmp_path / 'data'), '--sets', 'Set5']
    cases = [(['--json', str(tmp_path / 'data' / 'Set5' / 'GTmod4' / 'baby.png'), '--overwrite'],
              'which this run reads'),
             (['--plot', str(tmp_path / 'data' / 'Set5' / 'LRbicx4' / 'bird.png')], 'which this run reads'),
             (['--json', str(tmp_path / 'r'), '--plot', str(tmp_path / 'r')], 'is also --json'),
             (['--json', str(tmp_path / 'data')], 'is the input --data'),
             (['--json', str(tmp_path / 'afile' / 'r.json')], 'is a file, not a folder'),
             (['--json', str(tmp_path / 'afile')], 'exists; pass --overwrite')]
    for args, message in cases:
        code, _, err = run_main(sd_eval.main, [*data, *args], capsys)
        assert code == 2 and one_line(err, 'sd-eval', message), (args, err)
    assert (tmp_path / 'data' / 'Set5' / 'GTmod4' / 'baby.png').read_bytes() == before


def test_sd_export_replaces_an_existing_file_only_with_overwrite(tmp_path, capsys):
    from sd_plugin.archs import SRResNetMultiExit
    from sd_plugin.tools.export import main
    torch.save({'params': SRResNetMultiExit(num_feat=8, num_block=4, exits=[2]).state_dict()}, tmp_path / 'ck.pth')
    (tmp_path / 'existing.png').write_bytes(b'a picture')
    (tmp_path / 'adir').mkdir()
    ck = str(tmp_path / 'ck.pth')
    for out, message in ((tmp_path / 'existing.png', 'existing.png: exists; pass --overwrite'),
                         (tmp_path / 'adir', 'adir: is a folder')):
        code, _, err = run_main(main, [ck, '--exit', '2', '--out', str(out)], capsys)
        assert code == 2 and one_line(err, 'sd-export', message), err
    assert (tmp_path / 'existing.png').read_bytes() == b'a picture'
    code, _, err = run_main(main, [ck, '--exit', '2', '--out', str(tmp_path / 'existing.png'), '--overwrite'], capsys)
    assert code == 2 and one_line(err, 'sd-export', 'sd-export did not write it')  # a user's file (issue 25)
    for _ in range(2):  # what sd-export wrote, it replaces with --overwrite
        code, _, err = run_main(main, [ck, '--exit', '2', '--out', str(tmp_path / 's.pth'), '--overwrite'], capsys)
        assert code == 0 and 'params' in torch.load(tmp_path / 's.pth'), err


def test_sd_export_on_a_full_disk_is_one_line(tmp_path, capsys):
    from sd_plugin.archs import SRResNetMultiExit
    from sd_plugin.tools.export import main
    torch.save({'params': SRResNetMultiExit(num_feat=16, num_block=4, exits=[2]).state_dict()}, tmp_path / 'ck.pth')
    with small_files():
        code, _, err = run_main(main, [str(tmp_path / 'ck.pth'), '--exit', '2', '--out', str(tmp_path / 's.pth')],
                                capsys)
    assert code == 2 and one_line(err, 'sd-export', f'cannot write {tmp_path / "s.pth"} (File too large)'), err
    assert sorted(os.listdir(tmp_path)) == ['ck.pth']


def test_sd_compare_write_errors_are_one_line_before_the_work(tmp_path, capsys):
    from sd_plugin.tools.compare import main
    cv2.imwrite(str(tmp_path / 'hr.png'), noise(32, 32))
    (tmp_path / 'grid.png').mkdir()
    (tmp_path / 'afile').write_text('x')
    for out, message in (('grid.png', 'grid.png: is a folder'), ('afile/g.png', 'is a file, not a folder'),
                         ('hr.png', 'is the input --hr')):
        code, _, err = run_main(main, ['--hr', str(tmp_path / 'hr.png'), '--out', str(tmp_path / out)], capsys)
        assert code == 2 and one_line(err, 'sd-compare', message), err


# ------------------------------------------------------------------------------- sd-upscale


def test_sd_upscale_a_write_that_fails_does_not_abandon_the_batch(student, tmp_path, capsys):
    from sd_plugin.tools.upscale import main
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'a_big.png'), noise(40, 40))  # its 160 x 160 noise output: > 20 KB
    cv2.imwrite(str(tmp_path / 'in' / 'b.png'), noise(6, 6))
    cv2.imwrite(str(tmp_path / 'in' / 'c.png'), noise(6, 6, seed=1))
    (tmp_path / 'out' / 'c_x4.png').mkdir(parents=True)  # a folder at an output's name
    with small_files():
        code, out, err = run_main(main, [str(tmp_path / 'in'), '--model', student, '--out', str(tmp_path / 'out'),
                                         '--threads', '1'], capsys)
    assert code == 1
    lines = errors(err, 'sd-upscale')
    assert len(lines) == 2 and 'a_big.png: cannot write' in lines[1] and '(File too large)' in lines[1]
    assert 'c.png: its output' in lines[0] and 'is a folder' in lines[0]
    assert read_image(str(tmp_path / 'out' / 'b_x4.png')).shape == (24, 24, 3)
    assert '1 written, 0 skipped (existing), 2 failed' in err


def test_sd_upscale_refuses_an_out_it_cannot_write_in_before_the_work(student, tmp_path, capsys):
    from sd_plugin.tools.upscale import main
    cv2.imwrite(str(tmp_path / 'a.png'), noise(6, 6))
    (tmp_path / 'afile').write_text('x')
    code, _, err = run_main(main, [str(tmp_path / 'a.png'), '--model', student, '--out', str(tmp_path / 'afile' / 'o'),
                                   '--threads', '1'], capsys)
    assert code == 2 and one_line(err, 'sd-upscale', f'--out {tmp_path / "afile" / "o"}/x: {tmp_path / "afile"} is a '
                                  'file, not a folder'), err


def test_sd_upscale_interrupted_says_what_was_written_in_one_line(student, tmp_path, capsys, monkeypatch):
    from sd_plugin.tools import upscale
    for name in ('a', 'b', 'c'):
        cv2.imwrite(str(tmp_path / f'{name}.png'), noise(6, 6))
    calls = []
    real = upscale.upscale_array

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(upscale, 'upscale_array', interrupted_on_the_second)
    code, _, err = run_main(upscale.main, [str(tmp_path / f'{n}.png') for n in 'abc'] + [
        '--model', student, '--out', str(tmp_path / 'out'), '--threads', '1', '--quiet'], capsys)
    assert code == 130
    lines = err.strip().splitlines()
    assert lines == [f'sd-upscale: interrupted: 1 written (the last: {tmp_path / "out" / "a_x4.png"}), 2 not done']


def test_sd_upscale_keeps_grey_alpha_as_grey_alpha(student, tmp_path, capsys):
    from sd_plugin.tools.upscale import main
    rng = np.random.default_rng(0)
    grey, alpha = rng.integers(0, 256, (6, 7), dtype=np.uint8), rng.integers(0, 256, (6, 7), dtype=np.uint8)
    (tmp_path / 'la.png').write_bytes(grey_alpha_png(np.stack([grey, alpha], -1)))
    cv2.imwrite(str(tmp_path / 'g.png'), grey)
    cv2.imwrite(str(tmp_path / 'rgba.png'), np.stack([grey, grey, grey, alpha], -1))
    code, out, err = run_main(main, [str(tmp_path / n) for n in ('la.png', 'g.png', 'rgba.png')] + [
        '--model', student, '--out', str(tmp_path / 'out'), '--threads', '1'], capsys)
    assert code == 0, err
    assert open(tmp_path / 'out' / 'la_x4.png', 'rb').read()[25] == 4  # PNG colour type 4: grey + alpha
    la, g, rgba = (read_image(str(tmp_path / 'out' / f'{n}_x4.png')) for n in ('la', 'g', 'rgba'))
    assert la.shape == (24, 28, 2) and 'grey+alpha' in out
    assert np.abs(la[..., 0].astype(int) - g).max() <= 1  # the grey path's luma, give or take its rounding
    assert (la[..., 1] == rgba[..., 3]).all()


def test_a_permission_denied_image_is_not_called_corrupt(tmp_path, monkeypatch):
    """Run as root the file would be readable anyway: ``open`` is made to refuse it, as it does for a user."""
    import builtins
    path = str(tmp_path / 'locked.png')
    cv2.imwrite(path, noise(4, 4))
    real_open = builtins.open

    def refusing(file, *args, **kwargs):
        if str(file) == path:
            raise PermissionError(13, 'Permission denied', path)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, 'open', refusing)
    with pytest.raises(ConfigError, match=f'^{path}: cannot read this file \\(Permission denied\\)$'):
        read_image(path)


def test_an_output_too_large_for_memory_says_so_not_smaller_tiles(student, tmp_path, capsys, monkeypatch):
    import sd_plugin.inference
    from sd_plugin.tools.upscale import main
    cv2.imwrite(str(tmp_path / 'a.png'), noise(10, 10))
    monkeypatch.setattr(sd_plugin.inference, 'available_memory', lambda: 1000)  # 40 x 40 x 3 bytes do not fit
    code, _, err = run_main(main, [str(tmp_path / 'a.png'), '--model', student, '--out', str(tmp_path / 'out'),
                                   '--threads', '1'], capsys)
    lines = errors(err, 'sd-upscale')
    assert code == 1 and len(lines) == 1 and 'the output image itself (40x40' in lines[0]
    assert 'no --tile changes that' in lines[0] and 'try a smaller --tile' not in lines[0]


# ------------------------------------------------------------------------------- sd-train validation images


@pytest.mark.parametrize('model_type', ['SelfDistillSRModel', 'SRModel'])
def test_a_validation_image_that_cannot_be_written_is_one_line_naming_it(tiny_data, tmp_path, model_type):
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.models import build_model
    from helpers import model_options
    opt = model_options(tiny_data)
    if model_type == 'SRModel':  # BasicSR's own validation, through compat's imwrite
        opt.update(model_type='SRModel', network_g={'type': 'MSRResNet', 'num_feat': 8, 'num_block': 2, 'upscale': 4})
    (tmp_path / 'visualization').write_text('a file where the folder goes')
    opt['path'].update(visualization=str(tmp_path / 'visualization'))
    opt['val']['save_img'] = True
    model = build_model(opt)
    val = {**opt['datasets']['val'], 'phase': 'val', 'scale': 4}
    loader = build_dataloader(build_dataset(val), val, num_gpu=0, dist=False, sampler=None, seed=0)
    with pytest.raises(WriteError, match=f'^cannot write {tmp_path}/visualization/.*png \\(Not a directory\\)$'):
        model.validation(loader, 1, None, True)


# ------------------------------------------------------------------------------- processes


def test_a_child_ends_with_its_parent_even_on_sigkill(tmp_path):
    """The parent starts ``sleep 60`` with ``die_with_parent`` and kills itself with SIGKILL: no handler of its own
    runs, yet the child ends (PR_SET_PDEATHSIG)."""
    script = ('import os, signal, subprocess, sys\n'
              'from sd_plugin.processes import Children\n'
              'child = Children().popen(["sleep", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n'
              'print(child.pid, flush=True)\n'
              'os.kill(os.getpid(), signal.SIGKILL)\n')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    child = int(proc.stdout.split()[0])
    for _ in range(100):
        if not alive(child):
            break
        time.sleep(0.1)
    assert not alive(child)


def alive(pid):
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def children_of(pid):
    found = []
    for task in os.listdir(f'/proc/{pid}/task'):
        with open(f'/proc/{pid}/task/{task}/children') as f:
            found += [int(p) for p in f.read().split()]
    return found


def test_sigterm_of_sd_study_ends_its_training_child_and_frees_the_claim(tiny_data, tmp_path):
    from test_study import tiny_spec
    spec = tiny_spec(tiny_data, tmp_path, iters=100000, val_freq=100000, seeds=[0],
                     arms={'alone2': {'label': 'alone', 'network_g': {'num_block': 2, 'exits': []},
                                      'train': {'self_distill': None}}})
    args = [osp.join(osp.dirname(sys.executable), 'sd-study'), spec, '--out', str(tmp_path / 'study')]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = tmp_path / 'study' / 'runs' / 'alone2_seed0' / 'train.log'
        for _ in range(1200):  # until the child has started training
            if log.exists() and 'iter:' in log.read_text():
                break
            time.sleep(0.1)
        kids = children_of(proc.pid)
        assert len(kids) == 1 and alive(kids[0])
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1] == ('sd-study: stopped by SIGTERM: the runs in flight were stopped; run the '
                                            'same command again to resume them')
    for _ in range(100):
        if not alive(kids[0]):
            break
        time.sleep(0.1)
    assert not alive(kids[0])
    import fcntl
    with open(tmp_path / 'study' / 'runs' / 'alone2_seed0' / '.lock', 'a+') as claim:
        fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again: a rerun trains it, not "another process"


# ------------------------------------------------------------------------------- a refused run leaves nothing


def test_a_refused_fresh_quickstart_leaves_no_out_folder(tmp_path):
    from sd_plugin.files import claim_folder
    from sd_plugin.tools.quickstart import owned_run
    out = str(tmp_path / 'q')
    claim_folder(out, 'sd-quickstart')
    with pytest.raises(ConfigError), owned_run(out, fresh=True):
        (tmp_path / 'q' / 'hr').mkdir()
        (tmp_path / 'q' / 'hr' / 'a.png').write_bytes(b'x')
        raise ConfigError('refused')
    assert os.listdir(tmp_path) == []
