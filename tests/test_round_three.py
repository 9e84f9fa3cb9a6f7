"""Issue 25, safety round three: side outputs planned as main outputs, calibration files and saved wrapper options
checked as inputs, the wrapper's YAML checked before anything is built, one bad image in a batch, concurrent runs,
Ctrl-C in sd-calibrate. Tiny networks and generated images."""
import json
import multiprocessing
import os

import cv2
import numpy as np
import pytest
import torch
from helpers import lively
from test_outputs import one_line, run_main

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.files import record_written, written_by
from sd_plugin.routing.calibration import routing_path

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def ckpt(tmp_path):
    """A multi-exit SRResNet checkpoint (8 features, 4 blocks, exit 2) and a 24 x 32 LR image beside it."""
    torch.manual_seed(0)
    path = tmp_path / 'multi.pth'
    torch.save({'params': lively(SRResNetMultiExit(num_feat=8, num_block=4, upscale=4, exits=[2])).state_dict()},
               path)
    cv2.imwrite(str(tmp_path / 'lr.png'), np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return str(path)


def upscale(argv, capsys):
    from sd_plugin.tools.upscale import main
    return run_main(main, [*argv, '--threads', '1', '--quiet'], capsys)


# ------------------------------------------------------------------------------------- 1. side outputs


def test_the_route_map_is_planned_as_an_output(ckpt, tmp_path, capsys):
    """--route-map never takes the upscaled image's path, the checkpoint's calibration, a file sd-upscale did not
    write or the list of what it wrote; and it is never left out in silence when its image is not upscaled."""
    lr, out = str(tmp_path / 'lr.png'), tmp_path / 'out'
    routed = [lr, '--model', ckpt, '--out', str(out), '--budget', '1', '--router', 'random', '--route-tile', '8']
    (tmp_path / 'mine.png').write_bytes(b'a user file')
    open(routing_path(ckpt), 'w').write('{"kept": true}')
    cases = [(str(out / 'lr_x4.png'), 'is also the upscaled image'),
             (routing_path(ckpt), 'is the calibration of the input --model'),
             (str(tmp_path / 'mine.png'), 'sd-upscale did not write it'),
             (str(out / '.sd-upscale.written'), 'records what it wrote')]
    for route_map, message in cases:
        code, _, err = upscale([*routed, '--route-map', route_map, '--overwrite'], capsys)
        assert code == 2 and one_line(err, 'sd-upscale', message), (route_map, err)
    assert not out.exists() and (tmp_path / 'mine.png').read_bytes() == b'a user file'
    assert json.load(open(routing_path(ckpt))) == {'kept': True}
    code, _, err = upscale([*routed, '--route-map', str(out / 'map.png')], capsys)
    assert code == 0 and written_by(str(out), 'sd-upscale') == {'lr_x4.png', 'map.png'}, err
    code, _, err = upscale([*routed, '--route-map', str(out / 'map.png'), '--overwrite'], capsys)
    assert code == 0, err  # its own route map: replaced
    code, _, err = upscale([*routed, '--route-map', str(tmp_path / 'map2.png')], capsys)  # the image is skipped
    assert code == 1 and '--route-map' in err and 'not written' in err and not (tmp_path / 'map2.png').exists()


def test_side_outputs_replace_only_what_their_tool_wrote(ckpt, tmp_path, capsys):
    """sd-export's student, sd-eval's JSON: an existing file is replaced with --overwrite only when that tool wrote it
    (its folder's .<tool>.written), never a user's file, nor a checkpoint's calibration."""
    from sd_plugin.tools.eval import main as eval_main
    from sd_plugin.tools.export import main as export_main
    student = str(tmp_path / 'student.pth')
    code, _, err = run_main(export_main, [ckpt, '--exit', '2', '--out', student], capsys)
    assert code == 0 and 'student.pth' in written_by(str(tmp_path), 'sd-export'), err
    code, _, err = run_main(export_main, [ckpt, '--exit', '2', '--out', student, '--overwrite'], capsys)
    assert code == 0, err
    (tmp_path / 'user.pth').write_bytes(b'mine')
    code, _, err = run_main(export_main, [ckpt, '--exit', '2', '--out', str(tmp_path / 'user.pth'), '--overwrite'],
                            capsys)
    assert code == 2 and one_line(err, 'sd-export', 'sd-export did not write it'), err
    code, _, err = run_main(eval_main, [ckpt, '--sets', '--json', student, '--overwrite'], capsys)
    assert code == 2 and one_line(err, 'sd-eval', 'sd-eval did not write it'), err
    code, _, err = run_main(eval_main, [ckpt, '--sets', '--json', routing_path(ckpt), '--overwrite'], capsys)
    assert code == 2 and one_line(err, 'sd-eval', 'is the calibration of the input CKPT'), err
    assert (tmp_path / 'user.pth').read_bytes() == b'mine' and torch.load(student)['params']


# ------------------------------------------------------------------------------------- 6. concurrent runs


def _record_many(folder, first):
    for i in range(first, first + 20):
        record_written(folder, 'sd-upscale', [f'{i}.png'])


def test_concurrent_writers_keep_every_entry_of_the_list(tmp_path):
    """Three processes adding 20 names each to one folder's .sd-upscale.written: all 60 are there."""
    context = multiprocessing.get_context('fork')
    workers = [context.Process(target=_record_many, args=(str(tmp_path), 20 * k)) for k in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert written_by(str(tmp_path), 'sd-upscale') == {f'{i}.png' for i in range(60)}
    assert os.listdir(tmp_path) == ['.sd-upscale.written']  # no lock file left behind


# ------------------------------------------------------------------------------------- 3. saved wrapper options


def saved_option_faults(good):
    """{fault: the multi_exit_options value, or None to remove it} of a MultiExitSR(EDSR) state dict ``good``."""
    from sd_plugin.archs.multi_exit_arch import OPTIONS_KEY
    options = json.loads(bytes(good[OPTIONS_KEY].tolist()))

    def encoded(value):
        return torch.tensor(list(json.dumps(value).encode()), dtype=torch.uint8)
    return {'missing, but the weights hold exit heads': None,
            'not JSON (truncated or damaged)': good[OPTIONS_KEY][:20],
            'must be the JSON of the wrapper\'s options as a 1-D uint8 tensor': good[OPTIONS_KEY].float(),
            'must be {"arch"': encoded([options]),
            'exits=\'one\': must be a list': encoded({**options, 'exits': 'one'}),
            'MultiExitSR has no adapter for it': encoded({**options, 'arch': {**options['arch'], 'type': 'SRVGG'}}),
            'but the weights are another arch\'s or width': encoded(
                {**options, 'arch': {**options['arch'], 'type': 'RCAN', 'num_group': 3, 'squeeze_factor': 4}}),
            'another arch\'s or width (conv_first.weight: (8, 3, 3, 3) in the weights, (16, 3, 3, 3)': encoded(
                {**options, 'arch': {**options['arch'], 'num_feat': 16}}),
            'names a EDSR of 4 blocks, the weights hold 3': encoded({**options, 'arch': {**options['arch'],
                                                                                        'num_block': 4}}),
            'names exits [1], the weights hold exit heads [1, 2]': encoded({**options, 'exits': [1]})}


def test_saved_wrapper_options_are_checked_by_every_tool_in_one_line(tmp_path, capsys):
    """A MultiExitSR checkpoint whose multi_exit_options were removed, truncated, retyped or point at another arch,
    width, depth or exits: sd-export, sd-upscale, sd-eval and sd-calibrate each refuse it in one line naming the file
    and the key."""
    from sd_plugin.archs.multi_exit_arch import OPTIONS_KEY, MultiExitSR
    from sd_plugin.tools.calibrate import main as calibrate_main
    from sd_plugin.tools.eval import main as eval_main
    from sd_plugin.tools.export import main as export_main
    from sd_plugin.tools.upscale import main as upscale_main
    torch.manual_seed(0)
    good = MultiExitSR(dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=3, upscale=4),
                       exits=[1, 2]).state_dict()
    cv2.imwrite(str(tmp_path / 'lr.png'), np.zeros((8, 8, 3), np.uint8))
    tools = {'sd-export': (export_main, ['--exit', '1', '--out', str(tmp_path / 's.pth')]),
             'sd-upscale': (upscale_main, [str(tmp_path / 'lr.png'), '--model'], ['--out', str(tmp_path / 'up')]),
             'sd-eval': (eval_main, ['--sets']),
             'sd-calibrate': (calibrate_main, ['--data', str(tmp_path)])}
    for i, (message, value) in enumerate(saved_option_faults(good).items()):
        state = {k: v for k, v in good.items() if k != OPTIONS_KEY}
        if value is not None:
            state[OPTIONS_KEY] = value
        path = str(tmp_path / f'bad{i}.pth')
        torch.save({'params': state}, path)
        for prog, (main, *args) in tools.items():
            argv = [*args[0], path, *args[1]] if len(args) == 2 else [path, *args[0]]
            code, _, err = run_main(main, argv, capsys)
            assert code == 2 and one_line(err, prog, f'bad{i}.pth') and f'{OPTIONS_KEY}: ' in err, (prog, err)
            assert message in err, (prog, message, err)
    assert not os.path.exists(tmp_path / 's.pth') and not os.path.exists(tmp_path / 'up')


# ------------------------------------------------------------------------------------- 2. calibration files


def calibration_faults(bins):
    """{fault: (edit of the calibration record, the words of its one line)} of a calibration with ``bins`` edge bins
    of a network with 2 outputs, 8 features and a learned router of 2 hidden units."""
    def setting(*keys, value):
        def edit(record):
            target = record
            for key in keys[:-1]:
                target = target[key]
            if value is KeyError:
                del target[keys[-1]]
            else:
                target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
            return record
        return edit
    return {'a list for the whole file': (lambda record: [record], 'not a calibration (a JSON object expected'),
            'edge missing': (setting('edge', value=KeyError), 'edge.bin_edges: must be n numbers'),
            'learned missing': (setting('learned', value=KeyError), 'learned.hidden: must be a whole number'),
            'gain table of the wrong shape': (setting('edge', 'gain', value=lambda t: [row[:1] for row in t]),
                                              f'edge.gain: must be {bins} x 2 numbers'),
            'gain table ragged': (setting('edge', 'gain', value=lambda t: [t[0][:1], *t[1:]]), 'edge.gain: must be'),
            'NaN in the gain table': (setting('edge', 'gain', value=lambda t: [[float('nan')] * 2] + t[1:]),
                                      'edge.gain: holds NaN or Inf'),
            'bin edges descending': (setting('edge', 'bin_edges', value=lambda e: e[::-1] if len(set(e)) > 1 else
                                             [1.0, 0.5, 0.0]), 'edge.bin_edges: must be ascending'),
            'bicubic table short': (setting('edge', 'bicubic', value=lambda t: t[:1]),
                                    f'edge.bicubic: must be {bins} numbers'),
            'learned inputs of another size': (setting('learned', 'inputs_mean', value=lambda m: m[:-1]),
                                               'learned.inputs_std: must be 16 numbers'),
            'learned weights of another size': (setting('learned', 'state', 'layers.2.weight',
                                                        value=lambda w: [row[:1] for row in w]),
                                                'learned.state: layers.2.weight: must be 1 x 2 numbers'),
            'learned state without a key': (setting('learned', 'state', 'layers.0.bias', value=KeyError),
                                             'learned.state: must hold layers.0.weight'),
            'learned hidden a string': (setting('learned', 'hidden', value='2'), "learned.hidden: must be a whole "
                                        "number >= 1, found '2'"),
            'zero std': (setting('learned', 'target_std', value=lambda s: [0.0] * len(s)),
                         'learned.target_std: holds values <= 0'),
            'Infinity in mean_gain': (setting('mean_gain', value=lambda m: [float('inf')] * len(m)),
                                      'mean_gain: holds NaN or Inf'),
            'mean_bicubic a list': (setting('mean_bicubic', value=[1.0]), 'mean_bicubic: must be a number (0-D)'),
            'NaN residual': (setting('edge_residual', value=float('nan')), 'edge_residual: holds NaN or Inf'),
            'negative residual': (setting('learned_residual', value=-1.0), 'learned_residual: must be >= 0'),
            'another param key': (setting('param_key', value='params_ema'), 'param_key: calibrated on the weights '
                                  'params_ema, this run uses params'),
            'no param key recorded': (setting('param_key', value=KeyError), 'param_key: calibrated on the weights none '
                                      'recorded (an older sd-calibrate), this run uses params')}


def test_a_calibration_file_is_checked_on_load_in_one_line_naming_the_key(ckpt, tmp_path, capsys):
    """sd-calibrate's file, edited as a user or another version could: every tool that routes with it (sd-upscale,
    sd-eval --budget) refuses it in one line naming the file and the key; NaN is never taken; a calibration fitted
    on other weights (--param-key) is refused."""
    from sd_plugin.routing.calibration import load_calibration
    from sd_plugin.tools.calibrate import main as calibrate_main
    from sd_plugin.tools.eval import main as eval_main
    (tmp_path / 'hr').mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / 'hr' / f'{i}.png'), np.random.default_rng(i).integers(0, 256, (32, 48, 3),
                                                                                      dtype=np.uint8))
    code, _, err = run_main(calibrate_main, [ckpt, '--data', str(tmp_path / 'hr'), '--route-tile', '4', '--steps',
                                             '20', '--bins', '3', '--hidden', '2', '--quiet'], capsys)
    assert code == 0, err
    good = json.load(open(routing_path(ckpt)))
    bins = len(good['edge']['gain'])
    assert bins > 1 and good['param_key'] == 'params'
    routed = ['--budget', '0.96', '--router', 'edge', '--route-tile', '8']  # between exit 2 (0.92) and 1
    for fault, (edit, message) in calibration_faults(bins).items():
        with open(routing_path(ckpt), 'w') as f:
            json.dump(edit(json.loads(json.dumps(good))), f)
        with pytest.raises(Exception) as raised:
            load_calibration(ckpt, [2, 4], 'params')
        assert type(raised.value).__name__ == 'ConfigError' and message in str(raised.value), (fault, raised.value)
        assert str(raised.value).startswith(routing_path(ckpt) + ': '), fault
        if fault in ('edge missing', 'NaN in the gain table', 'another param key'):
            code, _, err = upscale([str(tmp_path / 'lr.png'), '--model', ckpt, '--out', str(tmp_path / 'up'),
                                    '--tile', '0', *routed], capsys)
            assert code == 2 and one_line(err, 'sd-upscale', message), (fault, err)
            code, _, err = run_main(eval_main, [ckpt, '--sets', *routed[:2], '--router', 'edge', '--quiet'], capsys)
            assert code == 2 and one_line(err, 'sd-eval', message), (fault, err)
    assert not (tmp_path / 'up').exists()


# ------------------------------------------------------------------------------------- 5. one bad image, a batch


def wrapped_ckpt(tmp_path, name, arch):
    from sd_plugin.archs.multi_exit_arch import MultiExitSR
    torch.manual_seed(0)
    path = str(tmp_path / f'{name}.pth')
    torch.save({'params': lively(MultiExitSR(arch, exits=[1])).state_dict()}, path)
    return path


RRDB = dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, num_grow_ch=4)
SWINIR = dict(type='SwinIR', img_size=8, window_size=4, embed_dim=12, depths=[1, 1], num_heads=[2, 2], mlp_ratio=2,
              upscale=4, upsampler='pixelshuffledirect')


def test_odd_and_tiny_images_are_upscaled_by_every_arch(tmp_path, capsys):
    """RRDBNet x1 and x2 (pixel-unshuffle) on odd sides, SwinIR on images smaller than a window: each is written at
    scale x its size, and RRDBNet's tiles (aligned to the unshuffle) equal its whole-image pass."""
    folder = tmp_path / 'in'
    folder.mkdir()
    sizes = {'odd': (15, 21), 'line': (1, 5), 'pixel': (1, 1), 'even': (12, 16)}
    rng = np.random.default_rng(0)
    for name, size in sizes.items():
        cv2.imwrite(str(folder / f'{name}.png'), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    models = {'rrdb1': (dict(RRDB, scale=1), 1), 'rrdb2': (dict(RRDB, scale=2), 2), 'swinir': (SWINIR, 4)}
    for name, (arch, scale) in models.items():
        ckpt = wrapped_ckpt(tmp_path, name, arch)
        for tile in ('0', '6'):
            out = tmp_path / f'{name}_{tile}'
            code, _, err = upscale([str(folder), '--model', ckpt, '--out', str(out), '--tile', tile], capsys)
            assert code == 0, (name, err)
            for image, (height, width) in sizes.items():
                assert cv2.imread(str(out / f'{image}_x{scale}.png')).shape == (height * scale, width * scale, 3)
        if name.startswith('rrdb'):
            whole, tiled = (cv2.imread(str(tmp_path / f'{name}_{t}' / 'odd_x{}.png'.format(scale))).astype(int)
                            for t in '06')
            assert np.abs(whole - tiled).max() <= 1, name


def test_an_image_the_network_cannot_take_is_one_line_and_the_batch_goes_on(tmp_path, capsys, monkeypatch, ckpt):
    """Any error of the network on one image (here: a shape it cannot take) fails that image in one line; the
    others are written, and the exit status is 1."""
    from sd_plugin.tools import upscale as tool
    real = tool.upscale_array

    def picky(net, img, *args, **kwargs):
        if img.shape[0] == 7:
            raise RuntimeError('Padding size should be less than the corresponding input dimension\nmore')
        return real(net, img, *args, **kwargs)
    monkeypatch.setattr(tool, 'upscale_array', picky)
    folder = tmp_path / 'in'
    folder.mkdir()
    for name, height in (('a', 8), ('b', 7), ('c', 9)):
        cv2.imwrite(str(folder / f'{name}.png'), np.zeros((height, 8, 3), np.uint8))
    code, _, err = upscale([str(folder), '--model', ckpt, '--out', str(tmp_path / 'out')], capsys)
    assert code == 1 and sorted(os.listdir(tmp_path / 'out')) == ['.sd-upscale.written', 'a_x4.png', 'c_x4.png']
    failed = [line for line in err.splitlines() if 'error' in line]
    assert len(failed) == 1 and 'b.png: the network cannot upscale this 8x7 image (RuntimeError: Padding' in failed[0]


def test_routing_an_rrdbnet_x2_is_refused_in_one_line_before_the_mac_count(tmp_path, capsys):
    """sd-calibrate and sd-eval --budget on an RRDBNet x2 (its trunk runs at half the LR resolution): the one-line
    refusal, not a traceback from counting MACs on the unshuffled channels."""
    from sd_plugin.tools.calibrate import main as calibrate_main
    from sd_plugin.tools.eval import main as eval_main
    ckpt = wrapped_ckpt(tmp_path, 'rrdb2', dict(RRDB, scale=2))
    message = 'a RRDBNet trunk does not keep the LR resolution'
    code, _, err = run_main(calibrate_main, [ckpt, '--data', str(tmp_path)], capsys)
    assert code == 2 and one_line(err, 'sd-calibrate', message), err
    code, _, err = run_main(eval_main, [ckpt, '--sets', '--budget', '0.5', '--router', 'random', '--quiet'], capsys)
    assert code == 2 and one_line(err, 'sd-eval', message), err


# ------------------------------------------------------------------------------------- 7. Ctrl-C


def test_sd_calibrate_interrupted_is_one_line_and_writes_nothing(ckpt, tmp_path, capsys, monkeypatch):
    from sd_plugin.tools import calibrate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(calibrate, 'collect_samples', interrupted)
    cv2.imwrite(str(tmp_path / 'hr.png'), np.zeros((16, 16, 3), np.uint8))
    code, out, err = run_main(calibrate.main, [ckpt, '--data', str(tmp_path), '--quiet'], capsys)
    assert code == 130 and err.strip().splitlines() == [
        'sd-calibrate: interrupted; every file is written whole or not at all, so what it had not yet written is '
        'simply absent'], err
    assert not os.path.exists(routing_path(ckpt))


def test_a_checkpoint_that_is_neither_layout_is_one_line_in_every_tool(tmp_path, capsys):
    """A stock EDSR checkpoint (no saved options, no SRResNet head), one whose sd-export record is not a mapping, and
    one whose params are not a state dict: sd-export and sd-upscale refuse each in one line naming the file."""
    from basicsr.archs.edsr_arch import EDSR

    from sd_plugin.tools.export import main as export_main
    state = EDSR(3, 3, num_feat=8, num_block=2, upscale=4).state_dict()
    cases = {'stock.pth': ({'params': state}, 'not an MSRResNet / SRResNetMultiExit state dict'),
             'record.pth': ({'params': state, 'sd_plugin': [1]}, 'not an MSRResNet / SRResNetMultiExit state dict'),
             'tensor.pth': ({'params': torch.zeros(3)}, 'not a state dict')}
    cv2.imwrite(str(tmp_path / 'lr.png'), np.zeros((8, 8, 3), np.uint8))
    for name, (ckpt, message) in cases.items():
        torch.save(ckpt, tmp_path / name)
        code, _, err = run_main(export_main, [str(tmp_path / name), '--exit', '1', '--out', str(tmp_path / 'o.pth')],
                                capsys)
        assert code == 2 and one_line(err, 'sd-export', message) and name in err, err
        code, _, err = upscale([str(tmp_path / 'lr.png'), '--model', str(tmp_path / name), '--out',
                                str(tmp_path / 'up')], capsys)
        assert code == 2 and one_line(err, 'sd-upscale', message) and name in err, err


def test_the_study_report_never_replaces_its_spec(tmp_path, capsys):
    """sd-study's report files (study.json / .md / .png in --report) are planned outputs: a spec named study.md in
    the report folder is refused before any training, and kept."""
    from helpers import ROOT

    from sd_plugin.tools.study import main
    spec = tmp_path / 'study.md'
    spec.write_text(open(os.path.join(ROOT, 'options', 'study', 'proxy.yml')).read())
    before = spec.read_text()
    code, _, err = run_main(main, [str(spec), '--out', str(tmp_path / 'st'), '--report', str(tmp_path)], capsys)
    assert code == 2 and one_line(err, 'sd-study', 'is the input SPEC'), err
    assert spec.read_text() == before and not (tmp_path / 'st').exists()


def test_sd_calibrate_names_an_image_too_small_for_the_scale(ckpt, tmp_path, capsys):
    from sd_plugin.tools.calibrate import main
    (tmp_path / 'hr').mkdir()
    cv2.imwrite(str(tmp_path / 'hr' / 'tiny.png'), np.zeros((3, 3, 3), np.uint8))
    code, _, err = run_main(main, [ckpt, '--data', str(tmp_path / 'hr'), '--quiet'], capsys)
    assert code == 2 and one_line(err, 'sd-calibrate', f'{tmp_path / "hr" / "tiny.png"}: an HR image of 3x3'), err


def test_sd_reproduce_plans_its_tables_before_training(tmp_path):
    """sd-reproduce's table files are outputs, checked before any run is trained: never an input (a --options
    folder named like a table), never a folder."""
    from sd_plugin.errors import ConfigError
    from sd_plugin.tools.reproduce import reproduce
    (tmp_path / 'data').mkdir()
    (tmp_path / 'out' / 'table1.json').mkdir(parents=True)
    (tmp_path / 'out2' / 'table1.md').mkdir(parents=True)
    for out, options, message in (('out', 'out/table1.json', 'is the input --options'),
                                  ('out2', 'data', 'table1.md: is a folder')):
        with pytest.raises(ConfigError, match=message):
            reproduce(1, 3, str(tmp_path / 'data'), str(tmp_path / out), str(tmp_path / options))
    assert not (tmp_path / 'out' / 'experiments').exists() and not (tmp_path / 'out2' / 'experiments').exists()
