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
            'another arch\'s or width (body.0.conv1.bias: (8,) in the weights, (16,)': encoded(
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
