"""sd-prepare on small generated folders: layouts, contents, PairedImageDataset reads, reruns and bad input."""
import os
from os import path as osp

import cv2
import numpy as np
import pytest
from basicsr.data.paired_image_dataset import PairedImageDataset
from helpers import run_cli, smooth_image

from sd_plugin.data.bicubic import imresize
from sd_plugin.errors import ConfigError
from sd_plugin.prepare import crop_starts
from sd_plugin.tools.prepare import main

prepare = main.__wrapped__  # raises ConfigError instead of printing it and exiting


def make_hr_folder(folder, seed=0):
    """{stem: image as written}: colour PNG 53x70, colour BMP 130x97, grey PNG 66x51, small colour JPG 40x44."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    images = {'a': smooth_image(rng, 53, 70), 'b': smooth_image(rng, 130, 97), 'g': smooth_image(rng, 66, 51)[..., 1],
              's': smooth_image(rng, 40, 44)}
    for name, ext in (('a', 'png'), ('b', 'bmp'), ('g', 'png'), ('s', 'jpg')):
        cv2.imwrite(osp.join(folder, f'{name}.{ext}'), images[name])
    images['s'] = cv2.imread(osp.join(folder, 's.jpg'), cv2.IMREAD_UNCHANGED)  # lossy: what was read back
    return images


def mod(img, scale):
    return img[:img.shape[0] - img.shape[0] % scale, :img.shape[1] - img.shape[1] % scale]


def read(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def paired_dataset(gt, lq, lmdb, phase='val', gt_size=16):
    return PairedImageDataset({'dataroot_gt': str(gt), 'dataroot_lq': str(lq), 'filename_tmpl': '{}',
                               'io_backend': {'type': 'lmdb' if lmdb else 'disk'}, 'phase': phase,
                               'gt_size': gt_size, 'scale': 4, 'use_hflip': False, 'use_rot': False})


def test_crop_starts_follow_basicsr_extract_subimages():
    assert crop_starts(2040, 480, 240) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert crop_starts(960, 480, 240) == [0, 240, 480]
    assert crop_starts(500, 480, 240) == [0, 20] and crop_starts(480, 480, 240) == [0]
    assert crop_starts(44, 480, 240) == [0]  # smaller than the crop: whole


def test_folder_disk_and_lmdb_are_read_by_paired_image_dataset(tmp_path):
    images = make_hr_folder(tmp_path / 'hr')
    out = tmp_path / 'mix'
    prepare(['folder', '--hr', str(tmp_path / 'hr'), '--name', 'mix', '--out', str(out), '--scale', '4'])
    for name, img in images.items():
        hr, lr = read(out / 'HR' / f'{name}.png'), read(out / 'LR_bicubic' / 'X4' / f'{name}.png')
        assert (hr == mod(img, 4)).all() and (lr == imresize(mod(img, 4), 1 / 4)).all()
    assert read(out / 'HR' / 'g.png').ndim == 2  # grey stays single-channel on disk

    prepare(['folder', '--hr', str(tmp_path / 'hr'), '--name', 'mix', '--out', str(out), '--lmdb'])
    assert sorted(os.listdir(out)) == ['.sd-prepare.written', 'HR', 'HR.lmdb', 'LR_bicubic', 'LR_bicubic_X4.lmdb']
    meta = (out / 'HR.lmdb' / 'meta_info.txt').read_text().splitlines()
    assert meta == ['a.png (52,68,3) 1', 'b.png (128,96,3) 1', 'g.png (64,48,1) 1', 's.png (40,44,3) 1']

    disk = paired_dataset(out / 'HR', out / 'LR_bicubic' / 'X4', lmdb=False)
    lmdb = paired_dataset(out / 'HR.lmdb', out / 'LR_bicubic_X4.lmdb', lmdb=True)
    assert len(disk) == len(lmdb) == 4
    disk_items = {osp.splitext(osp.basename(d['gt_path']))[0]: d for d in disk}  # folder order is os.scandir's
    lmdb_items = {m['gt_path']: m for m in lmdb}
    assert set(disk_items) == set(lmdb_items) == set(images)
    for name, d in disk_items.items():
        m = lmdb_items[name]
        assert m['lq_path'] == name and osp.basename(d['lq_path']) == f'{name}.png'
        assert d['gt'].shape == (3, *mod(images[name], 4).shape[:2])  # grey read as 3 equal channels
        assert d['lq'].shape[1:] == (d['gt'].shape[1] // 4, d['gt'].shape[2] // 4)
        assert (d['gt'] == m['gt']).all() and (d['lq'] == m['lq']).all()
    lmdb.opt['phase'] = 'train'  # the same dataset (an LMDB opens once per process), now random 16 px crops
    assert lmdb[2]['gt'].shape == (3, 16, 16) and lmdb[2]['lq'].shape == (3, 4, 4)


def test_folder_subimages_cut_hr_and_lr_at_the_same_places(tmp_path):
    images = make_hr_folder(tmp_path / 'hr')
    out = tmp_path / 'sub'
    prepare(['folder', '--hr', str(tmp_path / 'hr'), '--name', 'sub', '--out', str(out), '--subimages',
             '--crop', '48', '--step', '24'])
    hr_dir, lr_dir = out / 'HR_sub', out / 'LR_bicubic' / 'X4_sub'
    names = sorted(os.listdir(hr_dir))
    assert names == sorted(os.listdir(lr_dir))
    # a 52x68: 2x2 crops; b 128x96: 5x3; g 64x48: 2x1; s 40x44 smaller than the crop: kept whole
    assert [n for n in names if n.startswith('b_')][-1] == 'b_s015.png' and len(names) == 4 + 15 + 2 + 1
    hr_b, lr_b = mod(images['b'], 4), imresize(mod(images['b'], 4), 1 / 4)
    assert (read(hr_dir / 'b_s004.png') == hr_b[24:72, 0:48]).all()  # second row, first column
    assert (read(lr_dir / 'b_s004.png') == lr_b[6:18, 0:12]).all()
    assert (read(hr_dir / 'b_s015.png') == hr_b[80:128, 48:96]).all()
    assert read(hr_dir / 's_s001.png').shape == (40, 44, 3) and read(lr_dir / 's_s001.png').shape == (10, 11, 3)

    prepare(['folder', '--hr', str(tmp_path / 'hr'), '--name', 'sub', '--out', str(out), '--subimages',
             '--crop', '48', '--step', '24', '--lmdb'])
    data = paired_dataset(out / 'HR_sub.lmdb', out / 'LR_bicubic_X4_sub.lmdb', lmdb=True, phase='train')
    assert len(data) == len(names) and data[0]['gt'].shape == (3, 16, 16)


@pytest.mark.parametrize('lmdb', [False, True])
def test_rerun_needs_overwrite_and_a_failed_overwrite_keeps_the_old_output(tmp_path, lmdb):
    make_hr_folder(tmp_path / 'hr')
    out = tmp_path / 'out'
    argv = ['folder', '--hr', str(tmp_path / 'hr'), '--name', 'x', '--out', str(out)] + ['--lmdb'] * lmdb
    prepare(argv)
    hr_out = out / ('HR.lmdb' if lmdb else 'HR')
    before = {f: (hr_out / f).read_bytes() for f in os.listdir(hr_out)}

    with pytest.raises(ConfigError, match=f'{hr_out} already exists: pass --overwrite to replace it'):
        prepare(argv)
    (tmp_path / 'hr' / 'z.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')  # fails after a, b, g, s are done
    with pytest.raises(ConfigError, match='z.png: cannot read this image'):
        prepare(argv + ['--overwrite'])
    assert {f: (hr_out / f).read_bytes() for f in os.listdir(hr_out)} == before
    assert sorted(os.listdir(out)) == sorted(['.sd-prepare.written', 'LR_bicubic', 'HR'] if not lmdb else
                                             ['.sd-prepare.written', 'LR_bicubic_X4.lmdb', 'HR.lmdb'])

    os.remove(tmp_path / 'hr' / 'z.png')
    os.remove(tmp_path / 'hr' / 'a.png')
    prepare(argv + ['--overwrite'])
    if lmdb:
        assert len(paired_dataset(out / 'HR.lmdb', out / 'LR_bicubic_X4.lmdb', lmdb=True)) == 3
    else:
        assert sorted(os.listdir(out / 'HR')) == sorted(os.listdir(out / 'LR_bicubic' / 'X4')) == [
            'b.png', 'g.png', 's.png']
    assert [f for f in os.listdir(out) if f.startswith('.')] == ['.sd-prepare.written']  # no staging folder left


def test_overwrite_replaces_only_what_sd_prepare_wrote(tmp_path):
    make_hr_folder(tmp_path / 'hr')
    (tmp_path / 'userdir' / 'HR').mkdir(parents=True)
    (tmp_path / 'userdir' / 'HR' / 'mine.png').write_bytes(b'the user\'s')
    argv = ['folder', '--hr', str(tmp_path / 'hr'), '--name', 'x', '--out', str(tmp_path / 'userdir'), '--overwrite']
    with pytest.raises(ConfigError, match=r'--overwrite: \S+/userdir/HR holds \S+/HR/mine.png, which sd-prepare did '
                       'not write; nothing was deleted'):
        prepare(argv)
    assert sorted(os.listdir(tmp_path / 'userdir')) == ['HR'] and os.listdir(tmp_path / 'userdir' / 'HR') == [
        'mine.png']
    os.remove(tmp_path / 'userdir' / 'HR' / 'mine.png')
    prepare(argv)
    prepare(argv)  # its own output: replaced
    (tmp_path / 'userdir' / 'LR_bicubic' / 'X4' / 'notes.txt').write_text('mine')
    with pytest.raises(ConfigError, match='notes.txt, which sd-prepare did not write'):
        prepare(argv)
    assert (tmp_path / 'userdir' / 'LR_bicubic' / 'X4' / 'notes.txt').read_text() == 'mine'


def test_a_refused_run_leaves_no_out_folder_behind(tmp_path):
    make_hr_folder(tmp_path / 'hr')
    (tmp_path / 'hr' / 'z.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
    with pytest.raises(ConfigError, match='z.png: cannot read this image'):
        prepare(['folder', '--hr', str(tmp_path / 'hr'), '--name', 'x', '--out', str(tmp_path / 'new' / 'deeper')])
    assert sorted(os.listdir(tmp_path)) == ['hr']


def test_benchmark_writes_gtmod_and_lrbic_per_scale_grey_stays_grey(tmp_path):
    images = make_hr_folder(tmp_path / 'hr')
    out = tmp_path / 'bench'
    prepare(['benchmark', '--hr', str(tmp_path / 'hr'), '--name', 'Tiny', '--out', str(out), '--scale', '2', '3', '4'])
    assert sorted(os.listdir(out)) == ['.sd-prepare.written', 'GTmod2', 'GTmod3', 'GTmod4', 'LRbicx2', 'LRbicx3',
                                       'LRbicx4']
    for s in (2, 3, 4):
        assert sorted(os.listdir(out / f'GTmod{s}')) == sorted(os.listdir(out / f'LRbicx{s}')) == [
            'a.png', 'b.png', 'g.png', 's.png']
        for name, img in images.items():
            gt, lr = read(out / f'GTmod{s}' / f'{name}.png'), read(out / f'LRbicx{s}' / f'{name}.png')
            assert (gt == mod(img, s)).all() and (lr == imresize(gt, 1 / s)).all()
            assert gt.ndim == lr.ndim == img.ndim


def write_div2k(root, official_lr):
    """Fake DIV2K: DIV2K_train_HR/000{1,2}.png (500x520), and DIV2K_train_LR_bicubic/X4/000{1,2}x4.png made with
    cv2's area resize (so the test can tell them from our bicubic) when ``official_lr``."""
    rng = np.random.default_rng(3)
    os.makedirs(root / 'DIV2K_train_HR')
    hrs, lrs = {}, {}
    for name in ('0001', '0002'):
        hrs[name] = smooth_image(rng, 500, 520)
        cv2.imwrite(str(root / 'DIV2K_train_HR' / f'{name}.png'), hrs[name])
        if official_lr:
            os.makedirs(root / 'DIV2K_train_LR_bicubic' / 'X4', exist_ok=True)
            lrs[name] = cv2.resize(hrs[name], (130, 125), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(root / 'DIV2K_train_LR_bicubic' / 'X4' / f'{name}x4.png'), lrs[name])
        else:
            lrs[name] = imresize(hrs[name], 1 / 4)
    return hrs, lrs


@pytest.mark.parametrize('official_lr', [False, True])
def test_div2k_sub_images_with_and_without_the_official_lr(tmp_path, official_lr):
    hrs, lrs = write_div2k(tmp_path / 'DIV2K', official_lr)
    out = tmp_path / 'datasets' / 'DIV2K'
    prepare(['div2k', '--root', str(tmp_path / 'DIV2K'), '--out', str(out), '--scale', '4'])
    hr_dir, lr_dir = out / 'DIV2K_train_HR_sub', out / 'DIV2K_train_LR_bicubic' / 'X4_sub'
    names = [f'{n}_s{i:03d}.png' for n in ('0001', '0002') for i in range(1, 5)]  # starts [0, 20] x [0, 40]
    assert sorted(os.listdir(hr_dir)) == sorted(os.listdir(lr_dir)) == names
    assert (read(hr_dir / '0002_s002.png') == hrs['0002'][0:480, 40:520]).all()
    assert (read(lr_dir / '0002_s002.png') == lrs['0002'][0:120, 10:130]).all()
    assert (read(lr_dir / '0001_s003.png') == lrs['0001'][5:125, 0:120]).all()

    prepare(['div2k', '--root', str(tmp_path / 'DIV2K'), '--out', str(out), '--lmdb'])
    data = paired_dataset(out / 'DIV2K_train_HR_sub.lmdb', out / 'DIV2K_train_LR_bicubic_X4_sub.lmdb', lmdb=True,
                          phase='train', gt_size=64)
    assert len(data) == 8 and data[7]['gt'].shape == (3, 64, 64) and data[7]['lq'].shape == (3, 16, 16)


def test_div2k_lr_of_the_wrong_size_is_named(tmp_path):
    write_div2k(tmp_path / 'DIV2K', official_lr=True)
    bad = tmp_path / 'DIV2K' / 'DIV2K_train_LR_bicubic' / 'X4' / '0002x4.png'
    cv2.imwrite(str(bad), np.zeros((125, 129, 3), np.uint8))
    with pytest.raises(ConfigError, match=f'{bad}: 129x125 is not .*0002.png'):
        prepare(['div2k', '--root', str(tmp_path / 'DIV2K'), '--out', str(tmp_path / 'out')])
    os.remove(bad)
    with pytest.raises(ConfigError, match=f'{bad}: missing'):
        prepare(['div2k', '--root', str(tmp_path / 'DIV2K'), '--out', str(tmp_path / 'out')])
    assert not osp.exists(tmp_path / 'out')  # nothing half-made, not even the folder
    with pytest.raises(ConfigError, match='no DIV2K_train_HR folder'):
        prepare(['div2k', '--root', str(tmp_path), '--out', str(tmp_path / 'out')])


def test_bad_input_is_one_config_error(tmp_path):
    os.makedirs(tmp_path / 'empty')
    (tmp_path / 'empty' / 'notes.txt').write_text('no images here')
    with pytest.raises(ConfigError, match='no images'):
        prepare(['folder', '--hr', str(tmp_path / 'empty'), '--name', 'x', '--out', str(tmp_path / 'o')])
    with pytest.raises(ConfigError, match='--crop 50: must be a positive multiple of --scale 4'):
        prepare(['folder', '--hr', str(tmp_path / 'empty'), '--name', 'x', '--subimages', '--crop', '50'])
    make_hr_folder(tmp_path / 'hr')
    (tmp_path / 'hr' / 'a.bmp').write_bytes(b'BM')  # same stem as a.png
    with pytest.raises(ConfigError, match='both be written as a.png'):
        prepare(['benchmark', '--hr', str(tmp_path / 'hr'), '--name', 'x', '--out', str(tmp_path / 'o')])
    os.remove(tmp_path / 'hr' / 'a.bmp')
    cv2.imwrite(str(tmp_path / 'hr' / 'v1.0.png'), np.zeros((8, 8), np.uint8))
    with pytest.raises(ConfigError, match=r'v1\.0\.png: name .* cannot be an LMDB key'):
        prepare(['folder', '--hr', str(tmp_path / 'hr'), '--name', 'x', '--out', str(tmp_path / 'o'), '--lmdb'])


def test_console_script_missing_folder_is_one_line_exit_2(tmp_path):
    proc = run_cli(['sd-prepare', 'folder', '--hr', str(tmp_path / 'nope'), '--name', 'x'], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f'sd-prepare: error: --hr {tmp_path / "nope"}: no such folder']
    assert not (tmp_path / 'datasets').exists()
