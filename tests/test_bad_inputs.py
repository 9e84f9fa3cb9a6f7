"""The bad-input table: each case is refused by sd-train with one line naming the key or file, a non-zero exit, and
no experiment or TensorBoard folder made."""
import os
import shutil
import sys

import pytest
import torch
from helpers import run_cli, tiny_options, write_yaml


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


def write_text(text):
    """A case editor that replaces the options file with ``text`` (the file's own path in {path})."""
    def edit(opt, data):
        return text
    return edit


def yaml_with(old, new):
    """A case editor that edits the YAML text itself, so YAML's own typing applies (``lr: 1e-4`` is a string)."""
    def edit(opt, data):
        return lambda text: text.replace(old, new, 1)
    return edit


def pretrained(kind):
    def edit(opt, data):
        path = data / f'pretrained_{kind}.pth'
        if kind == 'text':
            path.write_text('not a checkpoint')
        elif kind == 'width':
            from basicsr.archs.srresnet_arch import MSRResNet
            torch.save({'params': MSRResNet(num_feat=16, num_block=4).state_dict()}, path)
        elif kind == 'no params':
            torch.save({'something': 1}, path)
        opt['path']['pretrain_network_g'] = str(path)
    return edit


CASES = {
    # registries, architecture, plugin keys
    'unknown model type': (set_('model_type', 'SelfDistilSRModel'), "did you mean 'SelfDistillSRModel'"),
    'unknown arch type': (set_('network_g:type', 'SRResNetMultiExt'), "did you mean 'SRResNetMultiExit'"),
    'exit out of range': (set_('network_g:exits', [2, 4]), 'network_g.exits=[2, 4]: exit 4 must be an integer in'),
    'exits unsorted': (set_('network_g:exits', [3, 1]), 'network_g.exits=[3, 1]: must be strictly increasing'),
    'exits duplicated': (set_('network_g:exits', [2, 2]), 'network_g.exits=[2, 2]: must be strictly increasing'),
    'exits a scalar, not a list': (set_('network_g:exits', 2), 'network_g.exits=2: must be a list, e.g. [8]'),
    'negative weight': (set_('train:self_distill:student_pixel_weight', -0.5),
                        'train.self_distill.student_pixel_weight=-0.5: must be a number >= 0'),
    'non-numeric weight': (set_('train:self_distill:distill_opt', {'type': 'L1DistillLoss', 'loss_weight': 'lots'}),
                           "train.self_distill.distill_opt.loss_weight='lots': must be a number >= 0"),
    'distill settings without exits': (no_distill_target, 'train.self_distill is set but network_g.exits is empty'),
    'distill_opt outside its section': (set_('train:distill_opt', {'type': 'L1DistillLoss'}),
                                        'train.distill_opt: belongs under train.self_distill.distill_opt'),
    'trunk gradient scale above 1': (set_('train:self_distill:trunk_grad_scale', 2),
                                     'train.self_distill.trunk_grad_scale=2: must be a number in [0, 1]'),
    'distill gate not a switch': (set_('train:self_distill:distill_gate', 'yes'),
                                  "train.self_distill.distill_gate='yes': must be true or false"),
    'negative distill start': (set_('train:self_distill:distill_start_iter', -1),
                               'train.self_distill.distill_start_iter=-1: must be an integer >= 0'),
    'feature distillation not a loss': (set_('train:self_distill:feature_distill_opt', 'l1'),
                                        "train.self_distill.feature_distill_opt='l1': must be a loss option dict"),
    'scale 5': (set_('scale', 5), 'scale=5: network_g.upscale is 4'),
    'upscale 5': (lambda opt, data: (set_('scale', 5)(opt, data), set_('network_g:upscale', 5)(opt, data)),
                  'network_g.upscale=5: must be 2, 3 or 4'),
    'misspelled plugin key': (set_('train:self_distill:student_pixel_wieght', 0.9),
                              "train.self_distill.student_pixel_wieght: unknown key; did you mean "
                              "'student_pixel_weight'?"),
    'misspelled arch argument': (set_('network_g:exit', [2]), "network_g.exit: not an argument of SRResNetMultiExit; "
                                 "did you mean 'exits'?"),
    'fp16 autocast without CUDA': (set_('train:autocast', 'fp16'), "train.autocast='fp16': needs CUDA"),
    'negative skip count': (set_('train:self_distill:skip_nonfinite', -1),
                            'train.self_distill.skip_nonfinite=-1: must be an integer >= 0'),
    'num_gpu 1 without CUDA': (set_('num_gpu', 1), 'num_gpu=1: CUDA is not available here'),
    # types as YAML reads them
    'lr 1e-4 is a string to YAML': (yaml_with('lr: 0.001', 'lr: 1e-4'),
                                    "train.optim_g.lr='1e-4': must be a number > 0; YAML reads 1e-4 as a string: "
                                    'write it with a decimal point (e.g. 1.0e-4) or as !!float 1e-4'),
    'total_iter 2e3 is a string to YAML': (yaml_with('total_iter: 20', 'total_iter: 2e3'),
                                           "train.total_iter='2e3': must be a whole number >= 1; YAML reads 2e3"),
    'true where a width goes': (set_('network_g:num_feat', True),
                                'network_g.num_feat=True: must be a whole number >= 1; true/false is not a number'),
    'true where a batch size goes': (set_('datasets:train:batch_size_per_gpu', True),
                                     'datasets.train.batch_size_per_gpu=True: must be a whole number >= 1'),
    'zero width': (set_('network_g:num_feat', 0), 'network_g.num_feat=0: must be a whole number >= 1'),
    'negative depth': (set_('network_g:num_block', -3), 'network_g.num_block=-3: must be a whole number >= 1'),
    'zero batch': (set_('datasets:train:batch_size_per_gpu', 0),
                   'datasets.train.batch_size_per_gpu=0: must be a whole number >= 1'),
    'negative patch': (set_('datasets:train:gt_size', -32), 'datasets.train.gt_size=-32: must be a whole number >= 1'),
    'patch not a multiple of the scale': (set_('datasets:train:gt_size', 30),
                                          'datasets.train.gt_size=30: must be a multiple of scale=4'),
    'fractional iterations': (set_('train:total_iter', 10.5), 'train.total_iter=10.5: must be a whole number >= 1'),
    'ema decay of 1.5': (set_('train:ema_decay', 1.5), 'train.ema_decay=1.5: must be a number in [0, 1)'),
    'betas a scalar': (set_('train:optim_g:betas', 0.9), 'train.optim_g.betas=0.9: must be a list, e.g. [8]'),
    'one beta': (set_('train:optim_g:betas', [0.9]), 'train.optim_g.betas=[0.9]: must be two numbers'),
    'milestones a scalar': (set_('train:scheduler:milestones', 100),
                            'train.scheduler.milestones=100: must be a list, e.g. [8]'),
    'a milestone that is a word': (set_('train:scheduler:milestones', ['end']),
                                   "train.scheduler.milestones[0]='end': must be a whole number >= 1"),
    'validation frequency a word': (set_('val:val_freq', 'often'), "val.val_freq='often': must be a whole number"),
    'flip switch a word': (set_('datasets:train:use_hflip', 'yes'),
                           "datasets.train.use_hflip='yes': must be true or false"),
    'negative crop border': (set_('val:metrics:psnr:crop_border', -1),
                             'val.metrics.psnr.crop_border=-1: must be a whole number >= 0'),
    'print frequency true': (set_('logger:print_freq', True), 'logger.print_freq=True: must be a whole number >= 1'),
    'a model that cannot fit in memory': (set_('network_g:num_feat', 200000),
                                          'a training step needs at least'),
    # pretrain_network_g
    'pretrained file missing': (set_('path:pretrain_network_g', '/nonexistent/net_g.pth'),
                                'path.pretrain_network_g=/nonexistent/net_g.pth: no such file'),
    'pretrained file not a checkpoint': (pretrained('text'), 'pretrained_text.pth: not a readable checkpoint'),
    'pretrained checkpoint without params': (pretrained('no params'),
                                             "pretrained_no params.pth: no 'params' state dict in it"),
    'pretrained checkpoint of another width': (pretrained('width'), 'pretrained_width.pth: saved for another '
                                               'network_g (body.0.conv1.bias: saved (16,), network_g (8,))'),
    # data
    'missing dataset folder': (set_('datasets:train:dataroot_gt', '/nonexistent/DIV2K_HR'),
                               'datasets.train.dataroot_gt=/nonexistent/DIV2K_HR: no such folder'),
    'LMDB without meta_info.txt': (lmdb_without_meta, 'dataroot_gt.lmdb: LMDB without meta_info.txt'),
    'corrupt PNG in the training set': (corrupt_train_png, 'train/gt/000.png: corrupt or unreadable image'),
    'corrupt PNG in the validation set': (corrupt_val_png, 'val/lq/000.png: corrupt or unreadable image'),
    'LR/GT sizes that do not match the scale': (mismatched_pair, 'the GT must be exactly 4x the LQ'),
    # the options file itself
    'YAML syntax error': (write_text('name: x\ntrain: [1, 2\n'), 'bad.yml: not valid YAML at line 3'),
    'options file that is a list': (write_text('- name\n- train\n'), 'bad.yml: is a list; an options file is a '
                                    'mapping'),
    'empty options file': (write_text(''), 'bad.yml: is empty; an options file is a mapping'),
}

ARG_CASES = {  # (command-line arguments after sd-train, with {yml} the valid options file, expected message)
    '-opt a missing file': (['-opt', '{tmp}/nope.yml'], 'nope.yml: no such file'),
    '-opt a folder': (['-opt', '{tmp}'], 'is a folder, not an options file'),
    '--force_yml without =': (['-opt', '{yml}', '--force_yml', 'train:ema_decay'],
                              '--force_yml train:ema_decay: expected key:key=value'),
    '--force_yml into a missing section': (['-opt', '{yml}', '--force_yml', 'trian:ema_decay=0.9'],
                                           '--force_yml trian:ema_decay=0.9: trian is not a section of the options'),
}


def run_train(args, cwd, monkeypatch, capsys):
    """``sd-train ARGS`` in this process (a subprocess costs seconds of imports per case): (exit status, stderr)."""
    from sd_plugin.train import main
    monkeypatch.setattr(sys, 'argv', ['sd-train', *args])
    capsys.readouterr()
    try:
        main(str(cwd))
        code = 0
    except SystemExit as done:
        code = done.code
    return code, capsys.readouterr().err


def assert_refused(code, err, message, cwd, prog='sd-train'):
    assert code == 2, err[-2000:]
    lines = [line for line in err.strip().splitlines() if not line.startswith('warning: ')]
    assert len(lines) == 1 and lines[0].startswith(f'{prog}: error: ') and message in lines[0], err[-2000:]
    assert not (cwd / 'experiments').exists() and not (cwd / 'tb_logger').exists()


@pytest.mark.parametrize('case', list(CASES))
def test_bad_input_is_refused_in_one_line_before_any_folder(tiny_data, tmp_path, case, monkeypatch, capsys):
    edit, message = CASES[case]
    opt = tiny_options({split: tuple(paths) for split, paths in tiny_data.items()}, name='bad')
    data = tmp_path / 'data'
    if 'PNG' in case or 'LR/GT' in case or 'LMDB' in case:
        data = copy_data(tiny_data, tmp_path)
    data.mkdir(exist_ok=True)
    text = edit(opt, data)
    path = write_yaml(opt, tmp_path / 'bad.yml')
    if isinstance(text, str):
        (tmp_path / 'bad.yml').write_text(text)
    elif callable(text):
        (tmp_path / 'bad.yml').write_text(text((tmp_path / 'bad.yml').read_text()))
    code, err = run_train(['-opt', path], tmp_path, monkeypatch, capsys)
    assert_refused(code, err, message, tmp_path)


@pytest.mark.parametrize('case', list(ARG_CASES))
def test_bad_command_line_is_refused_in_one_line(tiny_data, tmp_path, case, monkeypatch, capsys):
    args, message = ARG_CASES[case]
    yml = write_yaml(tiny_options(tiny_data, name='bad'), tmp_path / 'good.yml')
    args = [a.format(tmp=tmp_path, yml=yml) for a in args]
    code, err = run_train(args, tmp_path, monkeypatch, capsys)
    assert_refused(code, err, message, tmp_path)


def test_the_console_script_refuses_in_one_line_with_exit_2(tiny_data, tmp_path):
    opt = tiny_options(tiny_data, name='bad')
    opt['network_g']['num_block'] = True
    proc = run_cli(['sd-train', '-opt', write_yaml(opt, tmp_path / 'bad.yml')], cwd=tmp_path, check=False)
    assert_refused(proc.returncode, proc.stderr, 'network_g.num_block=True: must be a whole number', tmp_path)


def test_an_unknown_top_level_key_is_named_with_the_closest_known_one(tiny_data, tmp_path, monkeypatch, capsys):
    opt = tiny_options(tiny_data, name='bad')
    opt['trian'] = {'total_iter': 5}
    opt['network_g']['num_feat'] = 0  # stop right after the checks
    code, err = run_train(['-opt', write_yaml(opt, tmp_path / 'bad.yml')], tmp_path, monkeypatch, capsys)
    assert "warning: unknown top-level option 'trian' is ignored; did you mean 'train'?" in err
    assert_refused(code, err, 'network_g.num_feat=0', tmp_path)


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


def test_the_table_has_at_least_50_rows():
    assert len(CASES) + len(ARG_CASES) >= 50
