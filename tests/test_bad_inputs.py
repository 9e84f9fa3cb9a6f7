"""The bad-input table: each case is refused by sd-train with one line naming the key or file, a non-zero exit, and
no experiment or TensorBoard folder made."""
import os
import shutil

import pytest
from conftest import run_cli, tiny_options, write_yaml


def corrupt_png(folder):
    name = sorted(os.listdir(folder))[0]
    with open(os.path.join(folder, name), 'r+b') as f:
        f.truncate(60)  # signature and header survive, the image data does not
    return name


def copy_data(tiny_data, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(os.path.dirname(tiny_data['train'][0]), root / 'train')
    shutil.copytree(os.path.dirname(tiny_data['val'][0]), root / 'val')
    return root


def set_(path, value):
    """A case editor that sets opt[k1][k2]... = value, for a ':'-separated path."""
    def edit(opt, data):
        *keys, last = path.split(':')
        target = opt
        for key in keys:
            target = target[key]
        target[last] = value
    return edit


def lmdb_without_meta(opt, data):
    for key in ('dataroot_gt', 'dataroot_lq'):
        folder = data / f'{key}.lmdb'
        folder.mkdir()
        (folder / 'data.mdb').write_bytes(b'')
        opt['datasets']['train'][key] = str(folder)
    opt['datasets']['train']['io_backend'] = {'type': 'lmdb'}


def corrupt_train_png(opt, data):
    corrupt_png(data / 'train' / 'gt')
    opt['datasets']['train']['dataroot_gt'] = str(data / 'train' / 'gt')


def corrupt_val_png(opt, data):
    corrupt_png(data / 'val' / 'lq')
    opt['datasets']['val']['dataroot_lq'] = str(data / 'val' / 'lq')


def mismatched_pair(opt, data):
    import cv2
    lq = data / 'val' / 'lq' / '000.png'
    cv2.imwrite(str(lq), cv2.resize(cv2.imread(str(lq)), (7, 8)))
    opt['datasets']['val']['dataroot_lq'] = str(data / 'val' / 'lq')


def no_distill_target(opt, data):
    opt['network_g']['exits'] = []


CASES = {
    'unknown model type': (set_('model_type', 'SelfDistilSRModel'), "did you mean 'SelfDistillSRModel'"),
    'unknown arch type': (set_('network_g:type', 'SRResNetMultiExt'), "did you mean 'SRResNetMultiExit'"),
    'exit out of range': (set_('network_g:exits', [2, 4]), 'network_g.exits=[2, 4]: exit 4 must be an integer in'),
    'exits unsorted': (set_('network_g:exits', [3, 1]), 'network_g.exits=[3, 1]: must be strictly increasing'),
    'exits duplicated': (set_('network_g:exits', [2, 2]), 'network_g.exits=[2, 2]: must be strictly increasing'),
    'negative weight': (set_('train:self_distill:student_pixel_weight', -0.5),
                        'train.self_distill.student_pixel_weight=-0.5: must be a number >= 0'),
    'non-numeric weight': (set_('train:self_distill:distill_opt', {'type': 'L1DistillLoss', 'loss_weight': 'lots'}),
                           "train.self_distill.distill_opt.loss_weight='lots': must be a number >= 0"),
    'distill settings without exits': (no_distill_target, 'train.self_distill is set but network_g.exits is empty'),
    'distill_opt outside its section': (set_('train:distill_opt', {'type': 'L1DistillLoss'}),
                                        'train.distill_opt: belongs under train.self_distill.distill_opt'),
    'scale 5': (set_('scale', 5), 'scale=5: network_g.upscale is 4'),
    'upscale 5': (lambda opt, data: (set_('scale', 5)(opt, data), set_('network_g:upscale', 5)(opt, data)),
                  'network_g.upscale=5: must be 2, 3 or 4'),
    'missing dataset folder': (set_('datasets:train:dataroot_gt', '/nonexistent/DIV2K_HR'),
                               'datasets.train.dataroot_gt=/nonexistent/DIV2K_HR: no such folder'),
    'LMDB without meta_info.txt': (lmdb_without_meta, 'dataroot_gt.lmdb: LMDB without meta_info.txt'),
    'corrupt PNG in the training set': (corrupt_train_png, 'train/gt/000.png: corrupt or unreadable image'),
    'corrupt PNG in the validation set': (corrupt_val_png, 'val/lq/000.png: corrupt or unreadable image'),
    'LR/GT sizes that do not match the scale': (mismatched_pair, 'the GT must be exactly 4x the LQ'),
    'num_gpu 1 without CUDA': (set_('num_gpu', 1), 'num_gpu=1: CUDA is not available here'),
    'misspelled plugin key': (set_('train:self_distill:student_pixel_wieght', 0.9),
                              "train.self_distill.student_pixel_wieght: unknown key; did you mean "
                              "'student_pixel_weight'?"),
    'misspelled arch argument': (set_('network_g:exit', [2]), "network_g.exit: not an argument of SRResNetMultiExit; "
                                 "did you mean 'exits'?"),
    'fp16 autocast without CUDA': (set_('train:autocast', 'fp16'), "train.autocast='fp16': needs CUDA"),
    'negative skip count': (set_('train:self_distill:skip_nonfinite', -1),
                            'train.self_distill.skip_nonfinite=-1: must be an integer >= 0'),
}


@pytest.mark.parametrize('case', list(CASES))
def test_bad_input_is_refused_in_one_line_before_any_folder(tiny_data, tmp_path, case):
    edit, message = CASES[case]
    opt = tiny_options({split: tuple(paths) for split, paths in tiny_data.items()}, name='bad')
    edit(opt, copy_data(tiny_data, tmp_path) if 'PNG' in case or 'LR/GT' in case or 'LMDB' in case else tmp_path)
    proc = run_cli(['sd-train', '-opt', write_yaml(opt, tmp_path / 'bad.yml')], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('sd-train: error: ') and message in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'tb_logger').exists()


def test_resume_state_from_a_different_architecture_is_refused(tiny_data, tmp_path):
    opt = tiny_options(tiny_data, name='arch', total_iter=10)
    opt['logger']['use_tb_logger'] = False
    run_cli(['sd-train', '-opt', write_yaml(opt, tmp_path / 'a.yml')], cwd=tmp_path)
    before = sorted(os.listdir(tmp_path / 'experiments'))
    opt['network_g']['exits'] = [1]
    proc = run_cli(['sd-train', '-opt', write_yaml(opt, tmp_path / 'b.yml'), '--auto_resume'], cwd=tmp_path,
                   check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'training_states/10.state: saved for a different network_g (exit_heads.1.' in lines[0]
    assert sorted(os.listdir(tmp_path / 'experiments')) == before


def test_the_table_has_at_least_15_rows():
    assert len(CASES) + 1 >= 15
