"""sd-quickstart end to end with a reduced iteration count and a tiny network, and its default training data."""
import json
import os

import cv2
import numpy as np
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from helpers import run_cli

from sd_plugin.data.bicubic import imresize
from sd_plugin.evaluation.protocol import measure
from sd_plugin.evaluation.protocol import read_image as read_rgb
from sd_plugin.tools.quickstart import SKIMAGE_TRAIN, skimage_image


def test_quickstart_trains_exports_and_reports(tmp_path):
    proc = run_cli(['sd-quickstart', '--iters', '4', '--feat', '8', '--blocks', '3', '--exit', '1', '--gt-size', '32',
                    '--threads', '1', '--out', str(tmp_path / 'qs')], cwd=tmp_path)
    assert 'trained 4 iterations' in proc.stdout
    assert '| bicubic |' in proc.stdout and '| student (exported) |' in proc.stdout and '1 (teacher)' not in proc.stdout
    report = json.load(open(tmp_path / 'qs' / 'quickstart.json'))
    rows = {(r['model'], r['exit']) for r in report['records']}
    assert rows == {('bicubic', None), ('student (exported)', None), ('sd', 1), ('sd', 3)}
    by_row = {(r['model'], r['exit']): r for r in report['records']}
    assert by_row['student (exported)', None]['psnr'] == by_row['sd', 1]['psnr']  # the export reproduces the exit
    assert by_row['student (exported)', None]['macs'] == by_row['sd', 1]['macs'] < by_row['sd', 3]['macs']
    assert all(r['latency_ms'] > 0 and r['threads'] == 1 for r in report['records'] if r['model'] != 'bicubic')
    student = MSRResNet(num_feat=8, num_block=1, upscale=4)
    student.load_state_dict(torch.load(tmp_path / 'qs' / 'student_exit1_x4.pth')['params'], strict=True)

    # the first validation image upscaled by the student, and its comparison picture; both paths printed
    upscaled, comparison = tmp_path / 'qs' / 'upscaled' / 'chelsea_x4.png', tmp_path / 'qs' / 'comparison.png'
    assert report['upscaled'] == str(upscaled) and report['comparison'] == str(comparison)
    assert f'\n  {upscaled}\n' in proc.stdout and f'\n  {comparison}\n' in proc.stdout
    lr = read_rgb(str(tmp_path / 'qs' / 'data' / 'val' / 'LRbicx4' / 'chelsea.png'))
    gt = read_rgb(str(tmp_path / 'qs' / 'data' / 'val' / 'GTmod4' / 'chelsea.png'))
    sr = read_rgb(str(upscaled))
    assert sr.shape == gt.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3)
    psnrs = report['comparison_psnr']
    assert set(psnrs) == {'bicubic', 'student', 'teacher'}
    assert psnrs['student'] == measure(sr, gt, 4)[0] and psnrs['bicubic'] == measure(imresize(lr, 4), gt, 4)[0]
    picture = cv2.imread(str(comparison))
    assert picture.shape[1] > 4 * 64 and picture.shape[0] > 64  # HR, bicubic, student, teacher; one 64 px crop


def test_a_rerun_on_your_own_jpg_folder_replaces_only_what_quickstart_wrote(tmp_path):
    import cv2
    import numpy as np
    photos = tmp_path / 'photos'
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        img = cv2.resize(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8), (96, 96), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(photos / f'photo {i}.JPG'), img)
    args = ['sd-quickstart', '--iters', '2', '--feat', '8', '--blocks', '2', '--exit', '1', '--gt-size', '32', '--out',
            str(tmp_path / 'qs')]
    run_cli(args, cwd=tmp_path)
    mine = [tmp_path / 'qs' / name for name in ('mine.txt', 'experiments/mine.txt', 'data/mine.txt', 'tb_logger/x')]
    for path in mine:  # the user's files beside quickstart's own: a rerun keeps them
        path.write_text('my notes')
    proc = run_cli([*args, '--data', str(photos)], cwd=tmp_path)
    assert 'trained 2 iterations' in proc.stdout
    assert all(path.read_text() == 'my notes' for path in mine)
    assert sorted(os.listdir(tmp_path / 'qs' / 'hr' / 'val')) == ['photo 2.JPG']  # the first run's images are gone
    assert sorted(os.listdir(tmp_path / 'qs' / 'upscaled')) == ['photo 2_x4.png']
    assert (tmp_path / 'qs' / 'comparison.png').is_file()
    assert sorted(os.listdir(photos)) == ['photo 0.JPG', 'photo 1.JPG', 'photo 2.JPG']
    (tmp_path / 'qs' / 'upscaled' / 'mine.png').write_bytes(b'mine')  # where quickstart writes: refused, kept
    proc = run_cli([*args, '--data', str(photos)], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith(
        'upscaled/mine.png was not written by sd-quickstart and lies where it writes; move it (nothing was deleted)')
    assert (tmp_path / 'qs' / 'upscaled' / 'mine.png').read_bytes() == b'mine'
    assert all(path.read_text() == 'my notes' for path in mine)
    assert (tmp_path / 'qs' / 'upscaled' / 'photo 2_x4.png').is_file()  # nothing was deleted before the refusal


def test_quickstart_on_your_own_folder_refuses_a_missing_one(tmp_path):
    proc = run_cli(['sd-quickstart', '--data', str(tmp_path / 'nope')], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(f'--data {tmp_path / "nope"}: no such folder')


def test_default_training_images_have_something_to_learn():
    """The cause of the quickstart's old bilinear plateau: scikit-image's colorwheel, whose HR is almost exactly the
    bilinear up-scaling of its LR (79 % of the pixels within half a grey level), held an L1-trained SRResNet at its
    bilinear skip. Every default training image must leave most pixels to learn."""
    for name in SKIMAGE_TRAIN:
        img = skimage_image(name)
        hr = img[:img.shape[0] // 4 * 4, :img.shape[1] // 4 * 4]
        lr = torch.from_numpy(imresize(hr, 1 / 4) / 255.).permute(2, 0, 1)[None].float()
        bilinear = torch.nn.functional.interpolate(lr, scale_factor=4, mode='bilinear', align_corners=False)
        close = np.abs(bilinear[0].permute(1, 2, 0).numpy() * 255 - hr) < 0.5
        assert hr.ndim == 3 and np.mean(close) < 0.5, name
