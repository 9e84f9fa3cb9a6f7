"""Comparison pictures (sd_plugin.compare, sd-compare) and the TensorBoard picture of training-time validation."""
import cv2
import numpy as np
import pytest
import torch
from helpers import run_cli, smooth_image, tiny_options, write_yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sd_plugin.archs import SRResNetMultiExit
from sd_plugin.compare import GUTTER, LABEL_HEIGHT, comparison_grid, derive_lr, load_model, model_output
from sd_plugin.data.bicubic import imresize
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.protocol import measure
from sd_plugin.tools.compare import main


def images(height=48, width=64, seed=0):
    """(HR, LR) RGB uint8: a smooth generated HR image and its MATLAB-bicubic x4 LR."""
    return derive_lr(smooth_image(np.random.default_rng(seed), height, width)[..., ::-1].copy(), 4)


def tiny_checkpoint(path):
    torch.manual_seed(0)
    net = SRResNetMultiExit(num_feat=8, num_block=3, upscale=4, exits=[1])
    torch.save({'params': net.state_dict()}, path)
    return str(path)


def run_main(argv, capsys):
    """(exit status, stdout, stderr) of sd-compare's main run in this process."""
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as done:
        code = done.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_grid_has_one_row_per_crop_and_one_labelled_column_per_panel():
    hr, lr = images()
    noisy = np.clip(hr.astype(int) + 3, 0, 255).astype(np.uint8)
    grid, labels, psnrs = comparison_grid(hr, lr, [('a', noisy), ('b', hr)], crops=[(0, 0, 16, 16), (8, 4, 32, 16)],
                                          zoom=2)
    panels = 4  # HR, bicubic, a, b
    assert len(labels) == panels and labels[0] == 'HR' and labels[1].startswith('bicubic ')
    row_widths = [panels * 16 * 2 + (panels - 1) * GUTTER, panels * 32 * 2 + (panels - 1) * GUTTER]
    assert grid.dtype == np.uint8 and grid.shape == (2 * LABEL_HEIGHT + 2 * 16 * 2 + GUTTER, max(row_widths), 3)
    cell = grid[LABEL_HEIGHT:LABEL_HEIGHT + 32, :32]  # first row, HR panel: the crop, each pixel a 2 x 2 block
    assert np.array_equal(cell, hr[:16, :16].repeat(2, 0).repeat(2, 1))
    second = LABEL_HEIGHT + 32 + GUTTER + LABEL_HEIGHT
    x_b = 3 * (64 + GUTTER)  # fourth panel of the second row: model b (= HR) at crop (8, 4, 32, 16)
    assert np.array_equal(grid[second:second + 32, x_b:x_b + 64], hr[4:20, 8:40].repeat(2, 0).repeat(2, 1))
    assert (grid[LABEL_HEIGHT:LABEL_HEIGHT + 32, 32:32 + GUTTER] == 255).all()  # white gutter between panels
    assert (grid[:LABEL_HEIGHT, :32] < 128).any()  # the label is drawn
    assert psnrs['b'] == float('inf') or psnrs['b'] > 60


def test_psnr_labels_are_measure_on_the_whole_image():
    hr, lr = images(seed=3)
    out = np.clip(hr.astype(int) + np.random.default_rng(1).integers(-6, 7, hr.shape), 0, 255).astype(np.uint8)
    _, labels, psnrs = comparison_grid(hr, lr, [('model', out)], crops=[(8, 8, 16, 16)])
    bicubic = measure(imresize(lr, 4), hr, 4)[0]
    model = measure(out, hr, 4)[0]
    assert psnrs == {'bicubic': bicubic, 'model': model}
    assert labels == ['HR', f'bicubic {bicubic:.2f} dB', f'model {model:.2f} dB']
    crop_only = measure(out[8:24, 8:24], hr[8:24, 8:24], 0)[0]
    assert f'{crop_only:.2f}' != f'{model:.2f}'  # the whole image, not the crop


def test_model_panels_run_through_the_inference_path(tmp_path):
    hr, lr = images()
    ckpt = tiny_checkpoint(tmp_path / 'tiny.pth')
    net, info = load_model(ckpt, 1)
    assert info['depth'] == 1 and net.deploy_exit == 1
    sr = model_output(net, lr)
    full = SRResNetMultiExit(num_feat=8, num_block=3, upscale=4, exits=[1])
    full.load_state_dict(torch.load(ckpt)['params'])
    with torch.no_grad():
        expected = full.forward_exits(torch.from_numpy(lr / 255.).float().permute(2, 0, 1)[None])[1]
    expected = (expected[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    assert sr.shape == hr.shape and np.abs(sr.astype(int) - expected).max() <= 1


def test_sd_compare_writes_the_grid(tmp_path):
    hr, _ = images(50, 66)  # not a multiple of 4: cropped as sd-prepare crops
    cv2.imwrite(str(tmp_path / 'hr.png'), hr[..., ::-1])
    ckpt = tiny_checkpoint(tmp_path / 'tiny.pth')
    proc = run_cli(['sd-compare', '--hr', 'hr.png', '--model', f'exit1={ckpt}:1', '--model', f'teacher={ckpt}',
                    '--crop', '0,0,16,16', '--crop', '20,10,24,24', '--out', 'grid.png'], cwd=tmp_path)
    grid = cv2.imread(str(tmp_path / 'grid.png'))
    zoom = round(256 / 24)
    assert grid.shape == (2 * LABEL_HEIGHT + (16 + 24) * zoom + GUTTER, 4 * 24 * zoom + 3 * GUTTER, 3)
    assert 'HR | bicubic ' in proc.stdout and '| exit1 ' in proc.stdout and '| teacher ' in proc.stdout


def test_sd_compare_never_writes_over_an_input_and_refuses_bad_input_in_one_line(tmp_path, capsys, monkeypatch):
    hr, lr = images()
    cv2.imwrite(str(tmp_path / 'hr.png'), hr[..., ::-1])
    cv2.imwrite(str(tmp_path / 'lr.png'), lr[..., ::-1])
    ckpt = tiny_checkpoint(tmp_path / 'tiny.pth')
    monkeypatch.chdir(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    cases = [(['--out', 'hr.png'], '--out hr.png: is the input --hr hr.png'),
             (['--lr', 'lr.png', '--out', 'lr.png'], '--out lr.png: is the input --lr lr.png'),
             (['--model', f'm={ckpt}', '--out', ckpt], f'--out {ckpt}: is the input --model'),
             (['--crop', '1,2,3', '--out', 'g.png'], '--crop 1,2,3: expected X,Y,W,H'),
             (['--crop', '0,0,0,8', '--out', 'g.png'], '--crop 0,0,0,8: X and Y must be >= 0, W and H >= 1'),
             (['--crop', '60,0,8,8', '--out', 'g.png'], '--crop 60,0,8,8: not inside the 64x48 HR image'),
             (['--model', 'nope.pth', '--out', 'g.png'], '--model nope.pth: expected NAME=CKPT'),
             (['--model', f'a={ckpt}:2', '--out', 'g.png'], f'--model a={ckpt}:2: --exit 2'),
             (['--model', f'bicubic={ckpt}', '--out', 'g.png'], 'must be distinct and neither "HR" nor "bicubic"'),
             (['--lr', 'hr.png', '--out', 'g.png'], 'does not match LR'),
             (['--out', 'g.txt'], '--out g.txt: .txt: not an image extension')]
    for args, message in cases:
        code, _, err = run_main(['--hr', 'hr.png', *args], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith('sd-compare: error: ') and message in lines[0], \
            (args, err)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written, nothing replaced


def test_crop_outside_the_image_is_a_config_error():
    hr, lr = images()
    with pytest.raises(ConfigError, match='not inside the 64x48 HR image'):
        comparison_grid(hr, lr, [], crops=[(0, 40, 16, 16)])


def test_training_validation_logs_a_picture_to_tensorboard(tiny_data, tmp_path):
    opt = tiny_options(tiny_data, name='tbimg', total_iter=4)
    opt['val'].update(val_freq=4, save_img=True)
    opt['logger'].update(print_freq=2, save_checkpoint_freq=4)
    run_cli(['sd-train', '-opt', write_yaml(opt, tmp_path / 'tbimg.yml')], cwd=tmp_path)
    events = EventAccumulator(str(tmp_path / 'tb_logger' / 'tbimg'), size_guidance={'images': 0}).Reload()
    assert events.Tags()['images'] == ['images/tinyval']
    images = events.Images('images/tinyval')
    assert [i.step for i in images] == [4, 5]  # at val_freq, and BasicSR's final validation (logged at total + 1)
    # first validation image (32 x 32 GT): GT, exit 2, teacher; each the whole 32 px image enlarged twice
    assert {(i.height, i.width) for i in images} == {(LABEL_HEIGHT + 64, 3 * 64 + 2 * GUTTER)}
    assert len(list((tmp_path / 'experiments' / 'tbimg' / 'visualization').rglob('*.png'))) == 2 * 3 * 2  # still saved
