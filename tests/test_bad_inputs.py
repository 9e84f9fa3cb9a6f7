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


TINY_ARCHS = {'EDSR': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 4},
              'SwinIR': {'type': 'SwinIR', 'in_chans': 3, 'img_size': 16, 'window_size': 4, 'embed_dim': 12,
                         'depths': [1, 1], 'num_heads': [2, 2], 'mlp_ratio': 2, 'upsampler': 'pixelshuffledirect',
                         'upscale': 4}}


def wrapped(base='EDSR', **arch):
    """A case editor: network_g becomes a MultiExitSR around a tiny ``base`` (exit 1 of 2 units), with ``arch``
    (None: the key left out)."""
    arch = {key: value for key, value in {**TINY_ARCHS[base], **arch}.items() if value is not None}
    return set_('network_g', {'type': 'MultiExitSR', 'exits': [1], 'arch': arch})


def swinir(**arch):
    return wrapped('SwinIR', **arch)


def drop(key):
    """A case editor that removes the top-level key ``key``."""
    def edit(opt, data):
        del opt[key]
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
    'a number as a mapping key': (set_('train:self_distill:exit_weights', {2: 3.0}),
                                  'train.self_distill.exit_weights: key 2 is not a string'),
    'one exit weight per exit': (set_('train:self_distill:exit_weights', [1.0, 2.0]),
                                 'exit_weights=[1.0, 2.0]: must be a list of one weight per exit'),
    'sandwich not a switch': (set_('train:self_distill:sandwich', 1),
                              'train.self_distill.sandwich=1: must be true or false'),
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
                                    "train.optim_g.lr='1e-4': must be a finite number > 0; YAML reads 1e-4 as a "
                                    'string: write it with a decimal point (e.g. 1.0e-4) or as !!float 1e-4'),
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
    'a Python tag in the options': (yaml_with('name: bad', 'name: !!python/object/apply:os.getcwd []'),
                                    'bad.yml: line 1: the tag !!python/object/apply:os.getcwd would run Python code'),
    # names that become folders
    'name that climbs out of experiments/': (set_('name', '../../victimdir'),
                                             "name='../../victimdir': holds '/'; it becomes a folder name"),
    'name ..': (set_('name', '..'), "name='..': is a path; it becomes a folder name"),
    'name that is a number': (set_('name', 7), 'name=7: must be a non-empty name (text)'),
    'validation set name with a slash': (set_('datasets:val:name', 'a/b'), "datasets.val.name='a/b': holds '/'"),
    # required keys
    'num_gpu missing': (drop('num_gpu'), 'num_gpu: missing; a training options file needs it'),
    'path missing': (drop('path'), 'path: missing; a training options file needs it (a mapping)'),
    'name missing': (drop('name'), 'name: missing; a training options file needs it (a plain name)'),
    'logger missing': (drop('logger'), 'logger: missing; a training options file needs it (a mapping)'),
    'an unknown dataset phase': (lambda opt, data: opt['datasets'].update(test=opt['datasets']['val']),
                                 'datasets.test: a training run has the phases train and val'),
    # every type the run builds, against the registries
    'misspelled optimizer': (set_('train:optim_g:type', 'Adamm'),
                             "train.optim_g.type='Adamm': not registered in BasicSR 1.4.2's get_optimizer; did you "
                             "mean 'Adam'?"),
    'misspelled scheduler': (set_('train:scheduler:type', 'MultiStepLr'),
                             "train.scheduler.type='MultiStepLr': not registered in BasicSR 1.4.2's setup_schedulers; "
                             "did you mean 'MultiStepLR'?"),
    'misspelled loss': (set_('train:pixel_opt:type', 'L1Los'), "train.pixel_opt.type='L1Los': not registered in "
                        "BasicSR or sd_plugin; did you mean 'L1Loss'?"),
    'misspelled dataset': (set_('datasets:val:type', 'PairedImageDatset'),
                           "datasets.val.type='PairedImageDatset': not registered in BasicSR or sd_plugin; did you "
                           "mean 'PairedImageDataset'?"),
    'misspelled metric': (set_('val:metrics:psnr:type', 'calculate_pnsr'),
                          "val.metrics.psnr.type='calculate_pnsr': not registered in BasicSR or sd_plugin; did you "
                          "mean 'calculate_psnr'?"),
    # types and ranges
    'negative weight decay': (set_('train:optim_g:weight_decay', -1),
                              'train.optim_g.weight_decay=-1: must be a finite number >= 0'),
    'seed a string': (set_('manual_seed', 'abc'), "manual_seed='abc': must be a whole number in [0, 2**32)"),
    'negative seed': (set_('manual_seed', -1), 'manual_seed=-1: must be a whole number in [0, 2**32)'),
    'seed of 2**32': (set_('manual_seed', 2**32), 'manual_seed=4294967296: must be a whole number in [0, 2**32)'),
    'scale 4.0': (set_('scale', 4.0), 'scale=4.0: must be a whole number >= 1; write it as a plain whole number, 4'),
    'gt_size 32.0': (set_('datasets:train:gt_size', 32.0), 'datasets.train.gt_size=32.0: must be a whole number >= 1'),
    'batch !!float 2': (yaml_with('batch_size_per_gpu: 2', 'batch_size_per_gpu: !!float 2'),
                        'datasets.train.batch_size_per_gpu=2.0: must be a whole number >= 1; write it as a plain '
                        'whole number, 2 (no quotes, no decimal point)'),
    'batch "4" is a string to YAML': (yaml_with('batch_size_per_gpu: 2', 'batch_size_per_gpu: "4"'),
                                      "batch_size_per_gpu='4': must be a whole number >= 1; YAML reads 4 as a string: "
                                      'write it as a plain whole number, 4'),
    'lr .inf': (yaml_with('lr: 0.001', 'lr: .inf'), 'train.optim_g.lr=inf: must be a finite number > 0'),
    # what the data allows
    'batch larger than the training set': (set_('datasets:train:batch_size_per_gpu', 9),
                                           'datasets.train.batch_size_per_gpu=9: more than the 8 training samples per '
                                           'GPU'),
    'patch larger than the training images': (set_('datasets:train:gt_size', 64),
                                              'datasets.train.gt_size=64: larger than'),
    'validation images too small for the metric': (set_('val:metrics:psnr:crop_border', 16),
                                                   'is 32x32, too small for val.metrics.psnr (crop_border 16'),
    # the wrapper's options (issue 25): checked before anything is built or any folder made
    'MultiExitSR without arch': (set_('network_g', {'type': 'MultiExitSR', 'exits': [1]}),
                                 'network_g.arch: missing; MultiExitSR has no default for it'),
    'MultiExitSR arch.type a list': (wrapped(type=['EDSR']), 'must be the stock network_g mapping, with its type '
                                     '(a name)'),
    'EDSR rgb_mean of two': (wrapped(rgb_mean=[0.4, 0.4]), 'network_g.arch.rgb_mean=[0.4, 0.4]: must be three numbers'),
    'EDSR num_in_ch 1': (wrapped(num_in_ch=1), 'network_g.arch.num_in_ch=1: EDSR subtracts and adds back an RGB mean'),
    'RCAN squeeze_factor over num_feat': (wrapped(type='RCAN', num_group=2, num_block=1, squeeze_factor=16),
                                          'network_g.arch.squeeze_factor=16: must be in [1, num_feat=8]'),
    'SwinIR img_size not whole windows': (swinir(img_size=18), 'network_g.arch.img_size=18: must be a positive '
                                          'multiple of window_size=4'),
    'SwinIR img_size under a window': (swinir(img_size=2), 'network_g.arch.img_size=2: must be a positive multiple'),
    'SwinIR embed_dim against num_heads': (swinir(embed_dim=10, num_heads=[3, 3]),
                                           'network_g.arch.num_heads=[3, 3]: each must divide embed_dim=10'),
    'SwinIR unknown upsampler': (swinir(upsampler='pixelshufle'), "network_g.arch.upsampler='pixelshufle': must be "
                                 "one of 'pixelshuffle', 'pixelshuffledirect', 'nearest+conv', ''"),
    'SwinIR x1 upsampler at x4': (swinir(upsampler=''), "network_g.arch.upsampler='' with upscale=4: it needs "
                                  'upscale 1'),
    'EDSR img_range 0 (Inf images)': (wrapped(img_range=0), 'network_g.arch.img_range=0: must be a finite number > 0'),
    'SwinIR a layer of depth 0': (swinir(depths=[1, 0]), 'network_g.arch: depths=[1, 0] must be whole numbers >= 1'),
    'RRDBNet scale 3 (silently x4)': (wrapped(type='RRDBNet', scale=3, num_grow_ch=4, upscale=None),
                                      'network_g.arch.scale=3: RRDBNet upscales by 1, 2 or 4'),
    'wrapped MSRResNet upscale 5': (wrapped(type='MSRResNet', upscale=5),
                                    'network_g.arch.upscale=5: MSRResNet upscales by 2, 3 or 4'),
    'wrapped num_in_ch against RGB data': (wrapped(type='MSRResNet', num_in_ch=1),
                                           'network_g.arch.num_in_ch=1: datasets.train gives 3-channel images'),
    'num_in_ch against RGB data': (set_('network_g:num_in_ch', 1),
                                   'network_g.num_in_ch=1: datasets.train gives 3-channel images'),
}

ARG_CASES = {  # (command-line arguments after sd-train, with {yml} the valid options file, expected message)
    '-opt a missing file': (['-opt', '{tmp}/nope.yml'], 'nope.yml: no such file'),
    '-opt a folder': (['-opt', '{tmp}'], 'is a folder, not an options file'),
    '--force_yml without =': (['-opt', '{yml}', '--force_yml', 'train:ema_decay'],
                              '--force_yml train:ema_decay: expected key:key=value'),
    '--force_yml into a missing section': (['-opt', '{yml}', '--force_yml', 'trian:ema_decay=0.9'],
                                           '--force_yml trian:ema_decay=0.9: trian is not a section of the options'),
    '--force_yml with code as a list value': (['-opt', '{yml}', '--force_yml', 'network_g:exits=[__import__("os")]'],
                                              "the value '[__import__(\"os\")]' is not a list of plain values"),
    '--force_yml with code in a key': (['-opt', '{yml}', '--force_yml', 'x"];__import__("os").getcwd();opt["y=1'],
                                       'the key \'x"];__import__("os").getcwd();opt["y\' must be plain text'),
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


def run_tool(module, argv, capsys):
    """``main(argv)`` of ``sd_plugin.<module>`` in this process: (exit status, stderr). Restores torch's threads,
    which some tools set."""
    import importlib
    threads = torch.get_num_threads()
    capsys.readouterr()
    try:
        importlib.import_module(f'sd_plugin.{module}').main(argv)
        code = 0
    except SystemExit as done:
        code = done.code
    finally:
        torch.set_num_threads(threads)
    return code, capsys.readouterr().err


def write_images(folder, count, size):
    import cv2
    import numpy as np
    folder.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(folder / f'{i}.png'), np.full((size, size, 3), 40 * i, np.uint8))


def tiny_benchmark(tmp):
    """A benchmark set 'Tiny' of 8x8 GT images (x4), in sd-prepare benchmark layout."""
    write_images(tmp / 'bench' / 'Tiny' / 'GTmod4', 2, 8)
    write_images(tmp / 'bench' / 'Tiny' / 'LRbicx4', 2, 2)
    return ['--data', str(tmp / 'bench'), '--sets', 'Tiny', '--scale', '4', '--json', str(tmp / 'out' / 'e.json')]


def malformed_paper(tmp):
    (tmp / 'paper.json').write_text('{"SD-32": {"Set5": "31.8 / 0.89"},\n}')
    return ['--table', '1', '--iters', '1', '--data', str(tmp), '--out', str(tmp / 'out'), '--paper',
            str(tmp / 'paper.json')]


def small_data(tmp):
    write_images(tmp / 'photos', 3, 40)
    return ['--data', str(tmp / 'photos'), '--out', str(tmp / 'out')]


TOOL_CASES = {  # (module, argument builder(tmp_path), expected message); none of them may make tmp/out
    'sd-eval on 8x8 benchmark images': ('tools.eval', tiny_benchmark, 'GTmod4/0.png is 8x8, too small to measure'),
    'sd-reproduce --paper with malformed JSON': ('tools.reproduce', malformed_paper,
                                                 'paper.json: not valid JSON at line 2, column 1'),
    'sd-quickstart --gt-size 4096': ('tools.quickstart', lambda tmp: ['--gt-size', '4096', '--out', str(tmp / 'out')],
                                     '--gt-size 4096: larger than the training image astronaut (512x512)'),
    'sd-quickstart --data smaller than a patch': ('tools.quickstart', small_data,
                                                  '--gt-size 64: larger than the training image'),
    'sd-prepare --name that is a path': ('tools.prepare', lambda tmp: ['folder', '--hr', str(tmp), '--name', '../x',
                                                                       '--out', str(tmp / 'out')],
                                         "--name='../x': holds '/'; it becomes a folder name"),
}


@pytest.mark.parametrize('case', list(TOOL_CASES))
def test_other_tools_refuse_bad_input_in_one_line_before_any_output(tmp_path, case, capsys):
    module, build_args, message = TOOL_CASES[case]
    code, err = run_tool(module, build_args(tmp_path), capsys)
    prog = 'sd-' + module.split('.')[-1]
    assert code == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'{prog}: error: ') and message in lines[0], err[-2000:]
    assert not (tmp_path / 'out').exists()


def test_a_python_tag_runs_nothing_in_any_tool_that_reads_yaml(tiny_data, tmp_path, monkeypatch, capsys):
    """The tag would make a folder; every reader refuses it in one line, naming the file and line, and runs
    nothing: sd-train, sd-test (BasicSR's own parser too), sd-study and sd-reproduce."""
    target = tmp_path / 'pwned'
    tag = f'!!python/object/apply:os.mkdir ["{target}"]'
    opt = tiny_options(tiny_data, name='tagged')
    text = open(write_yaml(opt, tmp_path / 'o.yml')).read().replace('name: tagged', f'name: {tag}', 1)
    (tmp_path / 'o.yml').write_text(text)
    for prog in ('sd-train', 'sd-test'):
        monkeypatch.setattr(sys, 'argv', [prog, '-opt', str(tmp_path / 'o.yml')])
        code, err = run_tool(prog.split('-')[1], str(tmp_path), capsys)
        assert_refused(code, err, 'o.yml: line 1: the tag !!python/object/apply:os.mkdir would run Python code',
                       tmp_path, prog)
        assert not target.exists()
    (tmp_path / 'study.yml').write_text(f'name: {tag}\nseeds: [0]\n')
    code, err = run_tool('tools.study', [str(tmp_path / 'study.yml'), '--out', str(tmp_path / 'out')], capsys)
    assert_refused(code, err, 'study.yml: line 1: the tag', tmp_path, 'sd-study')
    (tmp_path / 'templates').mkdir()
    (tmp_path / 'templates' / 'baseline_sr8.yml').write_text(f'scale: {tag}\n')
    code, err = run_tool('tools.reproduce', ['--table', '1', '--iters', '1', '--data', str(tmp_path), '--out',
                                             str(tmp_path / 'out'), '--options', str(tmp_path / 'templates')], capsys)
    assert_refused(code, err, 'baseline_sr8.yml: line 1: the tag', tmp_path, 'sd-reproduce')
    assert not target.exists()


def test_a_key_given_twice_is_refused_in_one_line(tiny_data, tmp_path, monkeypatch, capsys):
    """YAML keeps the last of two equal keys silently; every options reader refuses the file instead (sd-train and
    BasicSR's own parser, which reads through the same loader), naming the key and both lines."""
    opt = tiny_options(tiny_data, name='twice')
    text = open(write_yaml(opt, tmp_path / 'o.yml')).read().replace('name: twice', 'name: twice\nname: again', 1)
    (tmp_path / 'o.yml').write_text(text)
    for prog in ('sd-train', 'sd-test'):
        monkeypatch.setattr(sys, 'argv', [prog, '-opt', str(tmp_path / 'o.yml')])
        code, err = run_tool(prog.split('-')[1], str(tmp_path), capsys)
        assert_refused(code, err, "o.yml: line 2: key 'name' is given twice in one mapping (first at line 1)",
                       tmp_path, prog)


def test_sd_test_without_a_checkpoint_is_refused(tiny_data, tmp_path, monkeypatch, capsys):
    opt = tiny_options(tiny_data, name='untrained')
    for key in ('train', 'logger'):
        del opt[key]
    opt['datasets'] = {'test': opt['datasets']['val']}
    monkeypatch.setattr(sys, 'argv', ['sd-test', '-opt', write_yaml(opt, tmp_path / 't.yml')])
    code, err = run_tool('test', str(tmp_path), capsys)
    assert_refused(code, err, 'path.pretrain_network_g: not set; testing would score a randomly initialised network',
                   tmp_path, 'sd-test')
    assert not (tmp_path / 'results').exists()
