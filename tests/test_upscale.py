"""sd-upscale and sd_plugin.inference: exact tiling, image kinds (grey, RGBA, 16-bit), per-file errors, never
overwriting an input, and a multi-exit checkpoint's exit equal to its exported student. Tiny random networks."""
import os
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from helpers import lively
from torch.nn import functional as F

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.protocol import model_sr, rgb2grey
from sd_plugin.export import export, export_onnx
from sd_plugin.imageio import read_image, write_image
from sd_plugin.inference import load_sr_network, receptive_field, run_network, upscale_array
from sd_plugin.tools.upscale import main

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def student(tmp_path):
    """A random MSRResNet(num_feat=8, num_block=2, x4) checkpoint: (path, the network)."""
    torch.manual_seed(0)
    net = lively(MSRResNet(num_feat=8, num_block=2, upscale=4))
    path = tmp_path / 'student.pth'
    torch.save({'params': net.state_dict()}, path)
    return str(path), net


def visible(folder):
    """The sorted names in ``folder`` that are not hidden (sd-upscale keeps its list of written files hidden)."""
    return sorted(f for f in os.listdir(folder) if not f.startswith('.'))


def random_image(shape, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    return rng.integers(0, top + 1, shape, dtype=np.int64).astype(dtype)


def reference(net, bgr, top=255.):
    """The untiled float output of ``net`` for a BGR integer image, as an (H*s, W*s, 3) RGB array."""
    x = torch.from_numpy(bgr[..., ::-1].astype(np.float32) / top).permute(2, 0, 1)[None]
    with torch.inference_mode():
        return net(x)[0].permute(1, 2, 0).numpy()


def quantised(float_rgb, top=255.):
    """Float RGB output -> the integers sd-upscale writes, as BGR."""
    return np.round(np.clip(float_rgb, 0, 1) * top)[..., ::-1]


def run(argv, capsys):
    """main(argv) in-process: (exit status, stdout, stderr)."""
    try:
        main([*argv, '--threads', '1'])
        code = 0
    except SystemExit as err:
        code = err.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith('sd-upscale: error:')]


# ------------------------------------------------------------------------------------------- tiling


@pytest.mark.parametrize('upscale', [2, 3, 4])
def test_receptive_field_is_the_support_of_the_gradient(upscale):
    """receptive_field(d) = 2 d + 3 is exactly how far (in LR pixels) an output pixel reads, at every sub-pixel
    position: the gradient of one output pixel is nonzero up to that radius and zero beyond."""
    for depth in (1, 2):
        torch.manual_seed(depth)
        net = SRResNetMultiExit(num_feat=8, num_block=depth, upscale=upscale).eval()
        radius, centre = 0, 12
        for r in range(upscale):
            x = torch.rand(1, 3, 25, 25, requires_grad=True)
            net(x)[0, :, centre * upscale + r, centre * upscale + r].sum().backward()
            ys, xs = torch.nonzero(x.grad.abs().sum((0, 1)), as_tuple=True)
            radius = max(radius, int((ys - centre).abs().max()), int((xs - centre).abs().max()))
        assert radius == receptive_field(depth) == 2 * depth + 3


@pytest.mark.parametrize('upscale', [3, 4])
def test_tiled_equals_untiled_at_the_default_pad(upscale):
    torch.manual_seed(0)
    net = lively(SRResNetMultiExit(num_feat=8, num_block=3, upscale=upscale, exits=[1]))
    x = torch.rand(1, 3, 37, 29)  # not a multiple of the tile: the last row and column of tiles are cut
    for depth in (1, 3):
        with torch.inference_mode():
            whole = net.forward_exits(x, [depth])[depth]
        tiled = run_network(net, x, depth, tile=10)  # tile_pad None: the receptive field, 2 * depth + 3
        assert tiled.shape == whole.shape == (1, 3, 37 * upscale, 29 * upscale)
        assert (tiled - whole).abs().max() <= 1e-5
    # several outputs of one trunk pass (what sd-eval asks for), tiled
    both = run_network(net, x, [1, 3], tile=16)
    assert list(both) == [1, 3] and (both[3] - net.forward_exits(x, [3])[3]).abs().max() <= 1e-5


def test_too_small_pad_shows(student):
    """Without enough overlap the tile borders show (the tiling test above can fail), and one pixel less than the
    receptive field is already more than the 1e-5 tolerance: the default pad is not larger than it must be."""
    _, net = student
    x = torch.rand(1, 3, 37, 29)
    whole = run_network(net, x)
    assert (run_network(net, x, tile=10, tile_pad=0) - whole).abs().max() > 0.1
    assert (run_network(net, x, tile=10, tile_pad=receptive_field(2) - 1) - whole).abs().max() > 1e-5
    assert (run_network(net, x, tile=10) - whole).abs().max() <= 1e-5


def test_cli_tiled_output_equals_untiled(student, tmp_path, capsys):
    path, net = student
    img = random_image((37, 29, 3))
    cv2.imwrite(str(tmp_path / 'photo.png'), img)
    for tile, folder in (('0', 'whole'), ('10', 'tiled')):
        code, _, err = run([str(tmp_path / 'photo.png'), '--model', path, '--out', str(tmp_path / folder),
                            '--tile', tile], capsys)
        assert code == 0, err
    whole, tiled = (read_image(str(tmp_path / f / 'photo_x4.png')) for f in ('whole', 'tiled'))
    assert whole.shape == (148, 116, 3) and whole.dtype == np.uint8
    assert np.abs(whole.astype(int) - tiled).max() <= 1  # float equal within 1e-5: at most a rounding flip
    assert (np.abs(whole.astype(int) - quantised(reference(net, img))) == 0).all()


# ------------------------------------------------------------------------------------------- image kinds


def test_rgba_keeps_alpha_upscaled(student, tmp_path, capsys):
    path, net = student
    img = random_image((21, 19, 4), seed=1)
    cv2.imwrite(str(tmp_path / 'logo.png'), img)
    code, _, err = run([str(tmp_path / 'logo.png'), '--model', path, '--out', str(tmp_path / 'out'), '--tile', '8'],
                       capsys)
    assert code == 0, err
    sr = read_image(str(tmp_path / 'out' / 'logo_x4.png'))
    assert sr.shape == (84, 76, 4) and sr.dtype == np.uint8
    # colour: exactly the network's output of the colour channels
    assert np.abs(sr[..., :3].astype(int) - quantised(reference(net, img[..., :3]))).max() <= 1
    # alpha: bicubic of the alpha channel (whole image, although tiled), the same as OpenCV's INTER_CUBIC up to 1
    alpha = torch.from_numpy(img[..., 3].astype(np.float32) / 255)[None, None]
    bicubic = F.interpolate(alpha, scale_factor=4, mode='bicubic', align_corners=False)[0, 0].clamp(0, 1).numpy()
    assert (sr[..., 3] == np.round(bicubic * 255)).all()
    assert np.abs(sr[..., 3].astype(int) - cv2.resize(img[..., 3], None, fx=4, fy=4,
                                                      interpolation=cv2.INTER_CUBIC)).max() <= 1
    # --alpha network: the alpha channel runs through the network as a grey image
    sr_net = upscale_array(load_sr_network(path)[0], img, alpha='network')
    grey_alpha = upscale_array(load_sr_network(path)[0], img[..., 3])
    assert (sr_net[..., 3] == grey_alpha).all() and (sr_net[..., :3] == sr[..., :3]).all()


def test_grey_stays_grey(student, tmp_path, capsys):
    path, _ = student
    img = random_image((23, 17), seed=2)
    cv2.imwrite(str(tmp_path / 'scan.png'), img)
    code, _, err = run([str(tmp_path / 'scan.png'), '--model', path, '--out', str(tmp_path / 'out')], capsys)
    assert code == 0, err
    sr = read_image(str(tmp_path / 'out' / 'scan_x4.png'))
    assert sr.shape == (92, 68) and sr.dtype == np.uint8
    # the BT.601 luma of the output of R = G = B, as sd-eval measures grey images (it rounds RGB first: within 1)
    evaluated = rgb2grey(model_sr(load_sr_network(path)[0], img, [2])[2])
    assert np.abs(sr.astype(int) - evaluated).max() <= 1


@pytest.mark.parametrize('ext', ['png', 'tif'])
def test_16_bit_stays_16_bit(student, tmp_path, capsys, ext):
    path, net = student
    img = random_image((19, 22, 3), np.uint16, seed=3)
    cv2.imwrite(str(tmp_path / f'raw.{ext}'), img)
    code, _, err = run([str(tmp_path / f'raw.{ext}'), '--model', path, '--out', str(tmp_path / 'out'), '--tile',
                        '8'], capsys)
    assert code == 0, err
    sr = read_image(str(tmp_path / 'out' / f'raw_x4.{ext}'))
    assert sr.dtype == np.uint16 and sr.shape == (76, 88, 3)
    assert np.abs(sr.astype(int) - quantised(reference(net, img, 65535.), 65535.)).max() <= 1
    assert (sr % 257 != 0).mean() > 0.9  # real 16-bit values, not 8-bit ones scaled up
    # asked to write it as JPEG (8 bits): refused, naming the file, instead of silently losing bits
    code, _, err = run([str(tmp_path / f'raw.{ext}'), '--model', path, '--out', str(tmp_path / 'jpg'), '--ext',
                        'jpg'], capsys)
    assert code == 1 and len(error_lines(err)) == 1 and f'raw.{ext}' in error_lines(err)[0]
    assert not osp.exists(tmp_path / 'jpg' / 'raw_x4.jpg')


def test_fp16_checkpoint_loads(student, tmp_path):
    _, net = student
    half = tmp_path / 'half.pth'
    torch.save({'params': {k: v.half() for k, v in net.state_dict().items()}}, half)
    loaded, info = load_sr_network(str(half))
    assert info['stored_dtype'] == 'float16' and info['kind'] == 'MSRResNet' and info['depth'] == 2
    rounded = MSRResNet(num_feat=8, num_block=2).eval()
    rounded.load_state_dict({k: v.half().float() for k, v in net.state_dict().items()})
    x = torch.rand(1, 3, 12, 9)
    with torch.inference_mode():
        assert (run_network(loaded, x) - rounded(x)).abs().max() <= 1e-6


# ------------------------------------------------------------------------------------------- files


def test_corrupt_file_among_good_ones(student, tmp_path, capsys):
    path, _ = student
    folder = tmp_path / 'in'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), random_image((9, 11, 3)))
    cv2.imwrite(str(folder / 'c.jpg'), random_image((10, 8, 3)))
    (folder / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'truncated')
    (folder / 'notes.txt').write_text('not an image, not listed')
    code, _, err = run([str(folder), '--model', path, '--out', str(tmp_path / 'out')], capsys)
    assert code == 1
    assert visible(tmp_path / 'out') == ['a_x4.png', 'c_x4.jpg']
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f'sd-upscale: error: {folder / "b.png"}: ')
    assert '2 written, 0 skipped (existing), 1 failed' in err


def test_never_overwrites_an_input(student, tmp_path, capsys):
    path, _ = student
    folder = tmp_path / 'photos'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), random_image((9, 11, 3)))
    cv2.imwrite(str(folder / 'a_x4.png'), random_image((8, 8, 3), seed=5))
    before = {f: (folder / f).read_bytes() for f in os.listdir(folder)}
    # --out is the inputs' folder and the names would not change: refused before anything runs
    code, _, err = run([str(folder), '--model', path, '--out', str(folder), '--suffix', '', '--overwrite'], capsys)
    assert code == 2 and err.strip().startswith('sd-upscale: error: --out ') and len(err.strip().splitlines()) == 1
    assert {f: (folder / f).read_bytes() for f in os.listdir(folder)} == before
    # a.png's output would be the input a_x4.png: refused for that file, even with --overwrite; the other runs
    code, _, err = run([str(folder), '--model', path, '--out', str(folder), '--overwrite'], capsys)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 1 and 'a.png' in lines[0] and 'is an input file' in lines[0]
    assert (folder / 'a_x4.png').read_bytes() == before['a_x4.png'] and (folder / 'a.png').read_bytes() == before[
        'a.png']
    assert read_image(str(folder / 'a_x4_x4.png')).shape == (32, 32, 3)


def test_existing_output_is_skipped_without_overwrite_and_replaced_only_when_sd_upscale_wrote_it(student, tmp_path,
                                                                                                 capsys):
    path, _ = student
    cv2.imwrite(str(tmp_path / 'a.png'), random_image((9, 11, 3)))
    cv2.imwrite(str(tmp_path / 'b.png'), random_image((9, 11, 3), seed=1))
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'b_x4.png').write_bytes(b'the user\'s own file')
    code, _, err = run([str(tmp_path / 'a.png'), '--model', path, '--out', str(tmp_path / 'out')], capsys)
    assert code == 0, err
    first = (tmp_path / 'out' / 'a_x4.png').read_bytes()
    (tmp_path / 'out' / 'a_x4.png').write_bytes(first + b'\0')  # sd-upscale's own output, since changed
    code, _, err = run([str(tmp_path / 'a.png'), str(tmp_path / 'b.png'), '--model', path, '--out',
                        str(tmp_path / 'out')], capsys)
    assert code == 0 and 'skip' in err and 'a_x4.png exists' in err and 'b_x4.png exists' in err
    assert (tmp_path / 'out' / 'a_x4.png').read_bytes() == first + b'\0'
    code, _, err = run([str(tmp_path / 'a.png'), str(tmp_path / 'b.png'), '--model', path, '--out',
                        str(tmp_path / 'out'), '--overwrite'], capsys)
    assert code == 1 and (tmp_path / 'out' / 'a_x4.png').read_bytes() == first  # its own output: replaced
    lines = error_lines(err)
    assert len(lines) == 1 and 'b_x4.png exists and sd-upscale did not write it: never replaced' in lines[0]
    assert (tmp_path / 'out' / 'b_x4.png').read_bytes() == b'the user\'s own file'
    assert [f for f in os.listdir(tmp_path / 'out') if f.endswith('.tmp')] == []


def test_a_folder_upscaled_into_itself_twice_leaves_out_its_own_outputs(student, tmp_path, capsys):
    path, _ = student
    col = tmp_path / 'col'
    col.mkdir()
    cv2.imwrite(str(col / 'a.png'), random_image((9, 11, 3)))
    for _ in range(2):
        code, out, err = run([str(col), '--model', path, '--out', str(col)], capsys)
        assert code == 0, err
    assert visible(col) == ['a.png', 'a_x4.png']
    assert 'left out 1 image(s) that sd-upscale wrote itself' in err and '0 written, 1 skipped' in out


def test_the_original_beside_an_input_is_never_replaced(student, tmp_path, capsys):
    """sd-upscale x.jpg --out dir --suffix '' --ext png --overwrite: dir/x.png is the user's, not sd-upscale's."""
    path, _ = student
    cv2.imwrite(str(tmp_path / 'x.jpg'), random_image((9, 11, 3)))
    (tmp_path / 'x.png').write_bytes(b'the original')
    code, _, err = run([str(tmp_path / 'x.jpg'), '--model', path, '--out', str(tmp_path), '--suffix', '', '--ext',
                        'png', '--overwrite'], capsys)
    assert code == 1 and 'sd-upscale did not write it: never replaced' in err
    assert (tmp_path / 'x.png').read_bytes() == b'the original'


def test_image_io(tmp_path):
    with pytest.raises(ConfigError, match=r'^\S*broken\.png: cannot read this image'):
        (tmp_path / 'broken.png').write_bytes(b'nope')
        read_image(str(tmp_path / 'broken.png'))
    with pytest.raises(ConfigError, match='no such file'):
        read_image(str(tmp_path / 'missing.png'))
    img = random_image((5, 6, 4), np.uint16)
    write_image(str(tmp_path / 'sub' / 'x.png'), img)
    assert (read_image(str(tmp_path / 'sub' / 'x.png')) == img).all()
    assert os.listdir(tmp_path / 'sub') == ['x.png']  # the temporary file was renamed, not left behind
    assert os.stat(tmp_path / 'sub' / 'x.png').st_mode & 0o044  # not mkstemp's 0600
    with pytest.raises(ConfigError, match='x.nope'):
        write_image(str(tmp_path / 'x.nope'), img)
    assert os.listdir(tmp_path) == ['broken.png', 'sub']


# ------------------------------------------------------------------------------------------- models


def test_multi_exit_checkpoint_equals_its_exported_student(tmp_path, capsys):
    torch.manual_seed(1)
    net = lively(SRResNetMultiExit(num_feat=8, num_block=4, exits=[2]))
    torch.save({'params': net.state_dict()}, tmp_path / 'multi.pth')
    export(str(tmp_path / 'multi.pth'), 2, str(tmp_path / 'exported.pth'))
    cv2.imwrite(str(tmp_path / 'a.png'), random_image((13, 15, 3)))
    code, out, err = run([str(tmp_path / 'a.png'), '--model', str(tmp_path / 'multi.pth'), '--exit', '2', '--out',
                          str(tmp_path / 'multi')], capsys)
    assert code == 0, err
    assert 'exit 2 of a multi-exit checkpoint' in out
    code, _, err = run([str(tmp_path / 'a.png'), '--model', str(tmp_path / 'exported.pth'), '--out',
                        str(tmp_path / 'exported')], capsys)
    assert code == 0, err
    multi, exported = (read_image(str(tmp_path / f / 'a_x4.png')) for f in ('multi', 'exported'))
    assert (multi == exported).all()
    teacher = upscale_array(load_sr_network(str(tmp_path / 'multi.pth'))[0], random_image((13, 15, 3)))
    assert (teacher != multi).any()  # the default is the teacher, a different network
    # an exit the checkpoint does not have: one line, status 2
    code, _, err = run([str(tmp_path / 'a.png'), '--model', str(tmp_path / 'multi.pth'), '--exit', '3', '--out',
                        str(tmp_path / 'bad')], capsys)
    assert code == 2 and err.strip().splitlines() == [
        f'sd-upscale: error: --exit 3: {tmp_path / "multi.pth"} has exits [2] and teacher depth 4']


def test_bad_arguments_are_one_line(student, tmp_path, capsys):
    path, _ = student
    cv2.imwrite(str(tmp_path / 'a.png'), random_image((9, 11, 3)))
    for args, message in [(['--model', str(tmp_path / 'none.pth')], 'no such checkpoint file'),
                          (['--model', path, '--precision', 'fp16', '--device', 'cpu'], 'fp16 needs --device cuda'),
                          (['--model', path, '--tile', '-1'], '--tile -1'),
                          (['--model', path, '--exit', '4'], 'single-output MSRResNet')]:
        code, _, err = run([str(tmp_path / 'a.png'), '--out', str(tmp_path / 'out'), *args], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (args, err)
    assert not osp.exists(tmp_path / 'out')


def test_onnxruntime_backend(student, tmp_path, capsys):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    _, net = student
    arch = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 4}
    export_onnx(arch, net.state_dict(), str(tmp_path / 'student.onnx'))
    img = random_image((17, 14, 3))
    cv2.imwrite(str(tmp_path / 'a.png'), img)
    code, out, err = run([str(tmp_path / 'a.png'), '--model', str(tmp_path / 'student.onnx'), '--backend',
                          'onnxruntime', '--out', str(tmp_path / 'out'), '--tile', '8'], capsys)
    assert code == 0, err
    assert 'x4, 2 blocks' in out and 'pad 7 px' in out  # the receptive field read off the ONNX initializers
    sr = read_image(str(tmp_path / 'out' / 'a_x4.png'))
    assert np.abs(sr.astype(int) - quantised(reference(net, img))).max() <= 1


def test_out_of_memory_is_one_line_per_file(student, tmp_path, capsys, monkeypatch):
    """A tile too large for the memory fails that image with a hint, not the whole run with a traceback."""
    from sd_plugin.tools import upscale
    path, _ = student
    cv2.imwrite(str(tmp_path / 'big.png'), random_image((12, 12, 3)))
    cv2.imwrite(str(tmp_path / 'small.png'), random_image((5, 5, 3)))
    real = upscale.upscale_array

    def fake(net, img, *args, **kwargs):
        if img.shape[0] == 12:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8192000000 bytes.")
        return real(net, img, *args, **kwargs)
    monkeypatch.setattr(upscale, 'upscale_array', fake)
    code, _, err = run([str(tmp_path / 'big.png'), str(tmp_path / 'small.png'), '--model', path, '--out',
                        str(tmp_path / 'out')], capsys)
    assert code == 1 and visible(tmp_path / 'out') == ['small_x4.png']
    expected = f'{tmp_path / "big.png"}: out of memory (could not allocate 7.63 GiB); try a smaller --tile'
    assert error_lines(err) == [f'sd-upscale: error: {expected}']
