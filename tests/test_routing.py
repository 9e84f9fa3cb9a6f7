"""Routing under a MAC budget (issue 17): exact per-tile outputs on the shared trunk, the greedy allocation, the
calibration file and the commands. Tiny random networks (8 features, 6 blocks, exits 2 and 4), 20-40 px images."""
import json
import random

import numpy as np
import pytest
import torch
from helpers import lively

from sd_plugin.archs.srresnet_multiexit_arch import SRResNetMultiExit
from sd_plugin.errors import ConfigError
from sd_plugin.inference import tile_grid
from sd_plugin.routing.calibration import calibrate, image_samples, load_calibration, routing_path, save_calibration
from sd_plugin.routing.context import allocate_in_context
from sd_plugin.routing.execute import planned_macs, run_routed
from sd_plugin.routing.plan import fit_route, route_image
from sd_plugin.routing.scores import tile_areas
from sd_plugin.routing.staged import staged

S = 4


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def net():
    torch.manual_seed(0)
    return lively(SRResNetMultiExit(num_feat=8, num_block=6, upscale=S, exits=[2, 4]))


@pytest.fixture
def x():
    return torch.rand(1, 3, 21, 30, generator=torch.Generator().manual_seed(1))


def whole(net, x):
    with torch.inference_mode():
        return net.forward_exits(x)


def tile_errors(sr, outputs, grid, route):
    """Per tile, the largest difference between ``sr`` and the tile's own output on the whole image."""
    return [(sr[..., y0 * S:y1 * S, x0 * S:x1 * S] - outputs[d][..., y0 * S:y1 * S, x0 * S:x1 * S]).abs().max().item()
            for (y0, y1, x0, x1), d in zip(grid, route)]


def random_mixes(stages, x, grid, count=3, seed=0):
    """(route, routed output) of ``count`` random routes of the tiles of ``grid`` over every output."""
    rng = random.Random(seed)
    for _ in range(count):
        route = [rng.choice(stages.depths) for _ in grid]
        with torch.inference_mode():
            yield route, run_routed(stages, x, grid, route)


def test_budget_one_is_the_teacher(net, x):
    sr, plan = route_image(staged(net), x, 1.0, 'random', tile=8)
    assert set(plan.route) == {6} and plan.spent == 1.0
    assert (sr - whole(net, x)[6]).abs().max() <= 1e-5


def test_budget_under_the_cheapest_exit_is_that_exit(net, x):
    stages = staged(net)
    cheapest = stages.macs_per_pixel(2) / stages.macs_per_pixel(6)
    sr, plan = route_image(stages, x, cheapest * 0.9, 'random', tile=8)
    assert set(plan.route) == {2} and plan.note and 'cheapest' in plan.note
    assert plan.spent == pytest.approx(cheapest)
    assert (sr - whole(net, x)[2]).abs().max() <= 1e-5


def test_any_mix_of_outputs_is_exact_per_tile(net, x):
    """Random routes, tiles cut at the border (21 x 30 by 8): every tile equals its output on the whole image."""
    stages, outputs, grid = staged(net), whole(net, x), tile_grid(21, 30, 8)
    for route, sr in random_mixes(stages, x, grid):
        assert max(tile_errors(sr, outputs, grid, route)) <= 1e-5
    worst = max(tile_errors(sr, outputs, grid, [2] * len(grid)))
    assert worst > 1e-3  # the check can fail: a mix is not the cheapest output everywhere


@pytest.mark.parametrize('budget', [0.93, 0.97])
def test_intermediate_budget_gives_an_exact_mix(net, budget):
    """A mix of outputs, each tile exact; the MACs actually run (context included) stay within the budget. (The
    tiny network's heads cost 0.85 of its teacher: budgets above that.)"""
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    sr, plan = route_image(staged(net), x, budget, 'random', tile=16, seed=3)
    assert len(set(plan.route)) >= 2
    assert max(tile_errors(sr, whole(net, x), plan.grid, plan.route)) <= 1e-5
    assert plan.spent <= plan.executed <= budget


@pytest.mark.parametrize('budget', [0.88, 0.9, 0.93, 0.96, 0.99])
def test_spent_share_never_exceeds_the_budget_by_more_than_one_tile(net, budget):
    """On the MACs actually run (``planned_macs``, equal to the counted ones): never over the budget, and the
    budget is used to within the cost of one tile's context (every deeper output gains here)."""
    stages = staged(net)
    grid = tile_grid(45, 70, 16)  # partial tiles right and bottom
    steps = np.random.default_rng(0).random((len(grid), 3)) * [0, 1, 1]
    gains = np.cumsum(steps, 1) * tile_areas(grid)[:, None]
    route, spent, executed, note = fit_route(stages, gains, grid, budget, 45, 70)
    teacher = stages.macs_per_pixel(6) * 45 * 70
    assert executed == pytest.approx(planned_macs(stages, grid, route, 45, 70) / teacher) and note is None
    assert spent <= executed <= budget
    one_tile = 0
    for i in range(len(grid)):  # the dearest single upgrade: one tile to the teacher, all else cheapest
        alone = [6 if k == i else 2 for k in range(len(grid))]
        one_tile = max(one_tile, planned_macs(stages, grid, alone, 45, 70) / teacher - stages.macs_per_pixel(2) /
                       stages.macs_per_pixel(6))
    assert budget - executed <= one_tile


class Costs:
    """A staged network stub without context (halos 0): output d costs d MACs per pixel (trunk 1, blocks 1)."""
    depths, trunk_depth, block_halo, head_halo = [1, 2, 5], 1, 0, 0

    def macs_per_pixel(self, d):
        return d

    def block_macs_per_pixel(self):
        return 1

    def trunk_macs_per_pixel(self):
        return 1

    def head_macs_per_pixel(self, d):
        return 0


def test_allocation_picks_by_gain_per_mac():
    """Costs 1, 2, 5 MACs per pixel; room for one small upgrade only. Tile 0 gains most in total (teacher: 6) but
    tile 1's first exit step gains more per MAC (3 per extra MAC against 6 / 4)."""
    grid = [(0, 1, 0, 1), (0, 1, 1, 2), (0, 1, 2, 3)]
    gains = np.array([[0, 0, 6], [0, 3, 3.5], [0, 1, 1]])
    levels, spent, _ = allocate_in_context(gains, grid, Costs(), 1, 3, budget=4 / 15)
    assert levels.tolist() == [0, 1, 0] and spent == 4
    levels, _, _ = allocate_in_context(gains, grid, Costs(), 1, 3, budget=8 / 15)  # 5 extra MACs: tile 1, then 0
    assert levels.tolist() == [2, 1, 0]
    levels, _, _ = allocate_in_context(-gains, grid, Costs(), 1, 3, budget=0.9)  # predicted losses are never bought
    assert levels.tolist() == [0, 0, 0]
    levels, spent, _ = allocate_in_context(gains, grid, Costs(), 1, 3, budget=9 / 15, start=1)  # from the exit at
    assert levels.tolist() == [2, 1, 1] and spent == 9  # 2 everywhere (6 MACs), room for one teacher tile: tile 0
    levels, _, _ = allocate_in_context(gains, grid, Costs(), 1, 3, budget=8 / 15, min_ratio=2)  # tile 0's teacher
    assert levels.tolist() == [0, 1, 0]  # brings 6 / 4 per MAC: below the least rate asked, not bought


def test_allocation_counts_the_context_a_deep_tile_needs(net):
    """Two tiles with the same predicted gain: the one next to a tile already routed deep shares its context, so
    it costs fewer MACs run and is taken first."""
    stages = staged(net)
    grid = tile_grid(8, 40, 8)  # one row of 5 tiles
    gains = np.zeros((5, 3))
    gains[0, 2], gains[1, 2], gains[4, 2] = 1000, 1, 1
    teacher = stages.macs_per_pixel(6) * 8 * 40
    two = [6, 6, 2, 2, 2]
    levels, _, _ = allocate_in_context(gains, grid, stages, 8, 40, planned_macs(stages, grid, two, 8, 40) / teacher)
    assert levels.tolist() == [2, 2, 0, 0, 0]


def test_shared_trunk_runs_the_first_blocks_once(net):
    """The blocks up to the first exit run once for the whole image (every tile); deeper blocks run only on crops
    around the one tile routed deeper (its context shrinking with depth)."""
    x = torch.rand(1, 3, 40, 56)
    stages = staged(net)  # before the hooks: its MAC count runs a (meta) copy of the network
    calls = {i: [] for i in range(6)}
    hooks = [net.body[i].register_forward_hook(lambda m, a, o, i=i: calls[i].append(a[0].shape)) for i in range(6)]
    grid = tile_grid(40, 56, 8)
    route = [6 if i == 15 else 2 for i in range(len(grid))]
    with torch.inference_mode():
        run_routed(stages, x, grid, route)
    for h in hooks:
        h.remove()
    assert calls[0] == calls[1] == [torch.Size([1, 8, 40, 56])]
    areas = [sum(s[0] * s[2] * s[3] for s in calls[i]) for i in range(2, 6)]
    assert 40 * 56 > areas[0] >= areas[1] >= areas[2] >= areas[3] > 0 and areas[3] < 40 * 56 / 3


@pytest.fixture
def ckpt(tmp_path, net):
    path = tmp_path / 'multi.pth'
    torch.save({'params': net.state_dict()}, path)
    return str(path)


@pytest.fixture
def hr_folder(tmp_path):
    """Five 40 x 48 HR images (BGR PNG): smooth waves with a sharp square, so tiles differ in edges."""
    import cv2
    from helpers import smooth_image
    folder = tmp_path / 'hr'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        img = smooth_image(rng, 40, 48)
        img[8 + i:20 + i, 10:22] = 255 * (i % 2)
        cv2.imwrite(str(folder / f'{i}.png'), img)
    return str(folder)


def test_calibration_is_written_beside_the_checkpoint_and_checked(ckpt, hr_folder, capsys):
    from sd_plugin.tools.calibrate import main
    before = open(ckpt, 'rb').read()
    main([ckpt, '--data', hr_folder, '--route-tile', '4', '--steps', '50', '--bins', '3', '--quiet'])
    assert open(ckpt, 'rb').read() == before  # the checkpoint is only read
    record = json.load(open(routing_path(ckpt)))
    assert record['depths'] == [2, 4, 6] and record['images'] == 5 and record['tiles'] == 5 * 9  # 3 x 3 tiles
    assert len(record['edge']['gain'][0]) == 3 and 0 < record['learned']['params'] < 1000
    assert {'edge_r2', 'learned_r2', 'edge_residual', 'learned_residual', 'edge_mix_count',
            'learned_mix_count'} <= set(record)
    for router in ('edge', 'learned'):  # the residual of the held-out mixes, when there were any
        assert (f'{router}_mix_residual' in record) == (record[f'{router}_mix_count'] > 0)
    assert load_calibration(ckpt, [2, 4, 6], 'params')['tile'] == 4
    with pytest.raises(SystemExit) as err:  # an existing calibration is replaced only with --overwrite
        main([ckpt, '--data', hr_folder])
    assert err.value.code == 2 and '--overwrite' in capsys.readouterr().err
    with pytest.raises(ConfigError, match='outputs'):
        load_calibration(ckpt, [2, 6], 'params')
    torch.save({'params': {k: v + 1 for k, v in torch.load(ckpt)['params'].items()}}, ckpt)
    with pytest.raises(ConfigError, match='another version'):
        load_calibration(ckpt, [2, 4, 6], 'params')


def test_learned_and_edge_routers_run_from_the_calibration(net, ckpt, hr_folder, x):
    from sd_plugin.routing.calibration import collect_samples, image_files
    stages = staged(net)
    record = calibrate(collect_samples(stages, image_files([hr_folder]), 4), bins=3, hidden=2, steps=20)
    save_calibration(ckpt, {**record, 'depths': stages.depths, 'param_key': 'params'})
    calibration = load_calibration(ckpt, stages.depths, 'params')
    outputs = whole(net, x)
    for router in ('edge', 'learned', 'oracle'):
        gt = (outputs[6][0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()  # the teacher as "GT"
        sr, plan = route_image(stages, x, 0.95, router, tile=8, calibration=calibration, gt=gt)
        assert plan.spent <= 0.95 and max(tile_errors(sr, outputs, plan.grid, plan.route)) <= 1e-5
    with pytest.raises(ConfigError, match='calibration'):  # (0.9: above the cheapest exit, so a choice to make)
        route_image(stages, x, 0.9, 'edge', tile=8)
    with pytest.raises(ConfigError, match='ground truth'):
        route_image(stages, x, 0.9, 'oracle', tile=8)


def test_image_samples_gain_is_the_true_gain(net):
    """The oracle gain of an output is the cheapest output's squared error minus its own: zero for the cheapest,
    and, with the teacher's own output as ground truth, the cheapest output's whole error for the teacher."""
    lr = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    stages = staged(net)
    from sd_plugin.routing.calibration import all_outputs, to_input
    from sd_plugin.routing.scores import sr_luma
    from sd_plugin.routing.scores import tile_errors as errors
    outs = all_outputs(stages, to_input(lr))
    gt = (outs[-1][0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    grid = tile_grid(12, 16, 4)
    samples = image_samples(stages, lr, gt, grid)
    assert np.all(samples['gain'][:, 0] == 0)
    per_pixel = errors(outs, sr_luma(outs[-1]), grid, S)[:, 0] / tile_areas(grid)
    assert np.allclose(samples['gain'][:, -1], per_pixel, rtol=1e-4, atol=1e-3) and per_pixel.max() > 1


def test_planned_macs_are_the_executed_macs(net, x):
    """``planned_macs`` (what the budget is checked against) counts what ``run_routed`` runs, context included."""
    from sd_plugin.routing.execute import executed_macs, planned_macs
    stages, grid = staged(net), tile_grid(21, 30, 8)
    rng = random.Random(1)
    for route in ([2] * len(grid), [6] * len(grid), [rng.choice([2, 4, 6]) for _ in grid]):
        assert planned_macs(stages, grid, route, 21, 30) == pytest.approx(executed_macs(stages, x, grid, route))
    teacher = stages.macs_per_pixel(6) * 21 * 30
    assert planned_macs(stages, grid, [6] * len(grid), 21, 30) == pytest.approx(teacher)  # no halo computed twice


@pytest.mark.parametrize('keep, crop', [((5, 13, 6, 22), (3, 15, 4, 24)),  # full context on every side
                                        ((0, 13, 1, 22), (0, 15, 0, 24)),  # top at the border, left 1 px there
                                        ((2, 21, 0, 30), (0, 21, 0, 30))])  # only the top has context
def test_msrresnet_head_crop_cuts_its_context_early_and_says_what_it_runs(net, x, keep, crop):
    """A head crop (the MSRResNet adapter's ``crop_tail``) gives the pixels the head gives on the whole image, for
    fewer MACs than the head on the whole crop (its context is cut after each convolution), and ``head_macs`` is
    the count ``torch.utils.flop_counter`` makes."""
    from torch.utils.flop_counter import FlopCounterMode

    from sd_plugin.routing.execute import margins
    stages = staged(net)
    rows, cols = slice(crop[0], crop[1]), slice(crop[2], crop[3])
    with torch.inference_mode():
        feat = stages.advance(stages.stem(x), 0, 4)
        with FlopCounterMode(display=False) as counter:
            sr = stages.head(feat[..., rows, cols], 4, x[..., rows, cols], margins((crop, keep)))
    assert sr.shape[2:] == ((keep[1] - keep[0]) * S, (keep[3] - keep[2]) * S)
    assert (sr - whole(net, x)[4][..., keep[0] * S:keep[1] * S, keep[2] * S:keep[3] * S]).abs().max() <= 1e-5
    height, width = crop[1] - crop[0], crop[3] - crop[2]
    macs = stages.head_macs(4, height, width, margins((crop, keep)))
    assert macs == counter.get_total_flops() // 2 < height * width * stages.head_macs_per_pixel(4)


def test_upscaler_budget_one_is_the_teacher_and_saves_a_route_map(ckpt, tmp_path):
    """The library path of sd-upscale: a routed Upscaler at budget 1 gives the teacher's image (same kind, BGR
    uint8), and its plan draws a route map."""
    from sd_plugin.routing.route_map import save_route_map
    from sd_plugin.upscaler import Upscaler, describe_plan
    img = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    routed = Upscaler(ckpt, budget=1.0, router='random')
    teacher = Upscaler(ckpt)
    out = routed.upscale(img)
    assert out.shape == (80, 112, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - teacher.upscale(img)).max() <= 1
    plan = routed.plans[-1]
    assert set(plan.route) == {6} and '1.000' in describe_plan(plan)
    save_route_map(plan, str(tmp_path / 'map.png'), img[..., ::-1])
    assert (tmp_path / 'map.png').stat().st_size > 1000
    with pytest.raises(ConfigError, match='--exit and --budget'):
        Upscaler(ckpt, exit=2, budget=0.5)
    with pytest.raises(ConfigError, match='--margin'):
        Upscaler(ckpt, budget=0.5, margin=float('nan'))


@pytest.fixture
def tiny_set(tmp_path):
    """A benchmark folder (sd-prepare benchmark layout) with one set, 'Tiny': two 64 x 96 GT images and their LR."""
    import cv2
    from helpers import smooth_image

    from sd_plugin.data.bicubic import imresize
    rng = np.random.default_rng(0)
    root = tmp_path / 'data'
    (root / 'Tiny' / 'GTmod4').mkdir(parents=True)
    (root / 'Tiny' / 'LRbicx4').mkdir()
    for i in range(2):
        gt = smooth_image(rng, 64, 96)
        cv2.imwrite(str(root / 'Tiny' / 'GTmod4' / f'{i}.png'), gt)
        cv2.imwrite(str(root / 'Tiny' / 'LRbicx4' / f'{i}.png'), imresize(gt, 1 / 4))
    return str(root)


def test_budget_evaluation_records(ckpt, tiny_set, tmp_path):
    """sd-eval --budget's library: per set, the fixed outputs and every router x budget, with the MAC shares; the
    markdown, plot and summary are drawn from the records."""
    from sd_plugin.evaluation.budget import evaluate_budget, summary
    from sd_plugin.evaluation.budget_report import budget_markdown, budget_plot
    records = evaluate_budget(ckpt, tiny_set, ['Tiny'], (0.95, 1.0), ('random', 'oracle'), 8,
                              progress=False, log=lambda *a: None)
    exits = [r for r in records if r['kind'] == 'exit']
    routed = {(r['router'], r['budget']): r for r in records if r['kind'] == 'routed'}
    assert [r['exit'] for r in exits] == [2, 4, 6] and len(routed) == 4
    teacher = exits[-1]
    for router in ('random', 'oracle'):
        assert routed[router, 1.0]['psnr'] == teacher['psnr'] and routed[router, 1.0]['share'] == 1
        assert routed[router, 0.95]['executed_share'] <= 0.95
        assert len(routed[router, 0.95]['psnr_images']) == 2
    assert {r['router'] for r in summary(records)} == {'random', 'oracle'}
    rows = {(r['router'], r['budget']): r for r in summary(records)}
    assert rows['random', 0.95]['images_vs_random'] == {'ahead': 0, 'tied': 2, 'behind': 0}
    oracle = rows['oracle', 0.95]['images_vs_random']
    diffs = np.subtract(routed['oracle', 0.95]['psnr_images'], routed['random', 0.95]['psnr_images'])
    assert oracle['ahead'] == (diffs > 1e-4).sum() and sum(oracle.values()) == 2
    assert '| oracle | 0.95 |' in budget_markdown(records)
    budget_plot(records, str(tmp_path / 'plot.png'))
    assert (tmp_path / 'plot.png').stat().st_size > 1000


def test_sd_eval_budget_command(ckpt, tiny_set, tmp_path, capsys):
    from sd_plugin.tools.eval import main
    out = tmp_path / 'out'
    main([ckpt, '--data', tiny_set, '--sets', 'Tiny', '--budget', '0.95', '1', '--router', 'random', 'oracle',
          '--route-tile', '8', '--threads', '1', '--quiet', '--json', str(out / 'b.json'), '--markdown',
          str(out / 'b.md'), '--plot', str(out / 'b.png'), '--vs-fixed', str(out / 'v.json')])
    data = json.load(open(out / 'b.json'))
    assert len(data['records']) == 3 + 4 and {r['router'] for r in data['summary']} == {'random', 'oracle'}
    assert '| exit 2 |' in open(out / 'b.md').read() and (out / 'b.png').stat().st_size > 1000
    versus = json.load(open(out / 'v.json'))
    assert versus['default_router'] == 'edge' and [r['router'] for r in versus['sets']['Tiny']] == ['random', 'oracle']
    for row in versus['sets']['Tiny']:
        assert row['budget'] == 0.95 and row['macs_run'] <= 0.95 and sum(row['images_vs_fixed'].values()) == 2
        assert row['vs_fixed'] == pytest.approx(row['psnr'] - row['fixed_at_equal_macs'], abs=1e-4)
    assert 'fixed at equal MACs' in open(out / 'b.md').read()
    main([ckpt, '--data', tiny_set, '--sets', 'Tiny', '--budget', '0.5', '--router', 'random+bicubic',
          'oracle+bicubic', '--route-tile', '8', '--threads', '1', '--quiet', '--json', str(out / 'c.json')])
    records = json.load(open(out / 'c.json'))['records']
    bic = next(r for r in records if r['kind'] == 'bicubic')
    oracle = next(r for r in records if r.get('router') == 'oracle+bicubic')
    assert bic['share'] == 0 and oracle['executed_share'] <= 0.5 and oracle['tiles']['0'] > 0
    assert oracle['psnr'] >= bic['psnr']
    assert {r['router'] for r in json.load(open(out / 'c.json'))['summary']} == {'random+bicubic', 'oracle+bicubic'}
    with pytest.raises(SystemExit) as err:
        main([ckpt, ckpt, '--data', tiny_set, '--sets', 'Tiny', '--budget', '0.9'])
    assert err.value.code == 2 and 'one multi-exit CKPT' in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main([ckpt, '--data', tiny_set, '--sets', 'Tiny', '--vs-fixed', str(out / 'w.json')])
    assert err.value.code == 2 and 'it needs --budget' in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main([ckpt, '--data', tiny_set, '--sets', 'Tiny', '--budget', '0.9', '--margin', '-1'])
    assert err.value.code == 2 and '--margin -1.0: must be a number >= 0' in capsys.readouterr().err


def test_sd_upscale_budget_command(ckpt, tmp_path, capsys):
    """sd-upscale --budget 1 writes the teacher's image and says what it spent; --route-map draws the tiles; the
    edge router without a calibration is one line naming the command that makes it."""
    import cv2

    from sd_plugin.tools.upscale import main
    img = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'lr.png'), img)
    main([str(tmp_path / 'lr.png'), '--model', ckpt, '--out', str(tmp_path / 'teacher'), '--threads', '1'])
    main([str(tmp_path / 'lr.png'), '--model', ckpt, '--out', str(tmp_path / 'routed'), '--budget', '1',
          '--router', 'random', '--route-tile', '8', '--route-map', str(tmp_path / 'map.png'), '--threads', '1'])
    assert 'spent 1.000 of the teacher' in capsys.readouterr().out
    routed = cv2.imread(str(tmp_path / 'routed' / 'lr_x4.png')).astype(int)
    assert routed.shape == (96, 128, 3)
    assert np.abs(routed - cv2.imread(str(tmp_path / 'teacher' / 'lr_x4.png'))).max() <= 1
    assert (tmp_path / 'map.png').stat().st_size > 1000
    with pytest.raises(SystemExit) as err:
        main([str(tmp_path / 'lr.png'), '--model', ckpt, '--out', str(tmp_path / 'edge'), '--budget', '0.9'])
    assert err.value.code == 2 and 'sd-calibrate' in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main([str(tmp_path / 'lr.png'), '--model', ckpt, '--out', str(tmp_path / 'bic'), '--bicubic'])
    assert err.value.code == 2 and '--bicubic is a routing choice: it needs --budget' in capsys.readouterr().err


@pytest.mark.parametrize('arch', [dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=6, upscale=4),
                                  dict(type='MSRResNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=6,
                                       upscale=4),
                                  dict(type='SRVGGNetCompact', num_feat=8, num_conv=6, upscale=4)])
def test_wrapped_arch_routes_exactly(arch):
    """A MultiExitSR (issue 16's wrapper) routes through its adapter: any mix is exact per tile, and the planned MACs
    are the counted ones. A head crop reruns the stem for its extras (EDSR's global residual), except MSRResNet's,
    whose ``crop_tail`` reads only the bilinear skip: the teacher everywhere is then the teacher's MACs exactly, as
    for an SRResNetMultiExit."""
    from sd_plugin.archs.multi_exit_arch import MultiExitSR
    from sd_plugin.routing.execute import executed_macs
    torch.manual_seed(0)
    net = lively(MultiExitSR(arch, exits=[2, 4]))
    stages = staged(net)
    x = torch.rand(1, 3, 21, 30, generator=torch.Generator().manual_seed(1))
    outputs, grid = whole(net, x), tile_grid(21, 30, 8)
    route, sr = next(random_mixes(stages, x, grid, count=1))
    assert max(tile_errors(sr, outputs, grid, route)) <= 1e-5
    assert planned_macs(stages, grid, route, 21, 30) == pytest.approx(executed_macs(stages, x, grid, route))
    teacher = stages.macs_per_pixel(6) * 21 * 30  # plus the stem where a head crop reruns it for its extras
    stem = stages.trunk_macs_per_pixel() - stages.trunk_depth * stages.block_macs_per_pixel()
    assert 0 < stem < stages.block_macs_per_pixel()
    rerun = 0 if arch['type'] == 'MSRResNet' else stem * 21 * 30
    assert planned_macs(stages, grid, [6] * len(grid), 21, 30) == pytest.approx(teacher + rerun)


def test_wrapped_checkpoint_upscales_under_a_budget(tmp_path):
    """sd-upscale's library path on a MultiExitSR (EDSR) checkpoint: budget 1 is its teacher, a lower budget a mix
    within the MACs."""
    from sd_plugin.archs.multi_exit_arch import MultiExitSR
    from sd_plugin.upscaler import Upscaler
    torch.manual_seed(0)
    net = lively(MultiExitSR(dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=6, upscale=4),
                             exits=[2, 4]))
    path = str(tmp_path / 'edsr.pth')
    torch.save({'params': net.state_dict()}, path)
    img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    routed = Upscaler(path, budget=1.0, router='random', route_tile=16)
    assert np.abs(routed.upscale(img).astype(int) - Upscaler(path).upscale(img)).max() <= 1
    low = Upscaler(path, budget=0.97, router='random', route_tile=16)
    low.upscale(img)
    assert low.plans[-1].executed <= 0.97


APPROXIMATE = {  # archs without a finite receptive field, and how close a routed tile is to its output (lively init)
    'RCAN': (dict(type='RCAN', num_in_ch=3, num_out_ch=3, num_feat=16, num_group=6, num_block=1, upscale=4,
                  squeeze_factor=4), 5e-3),
    'SwinIR': (dict(type='SwinIR', upscale=4, in_chans=3, img_size=16, window_size=4, img_range=1., depths=[2] * 6,
                    embed_dim=12, num_heads=[2] * 6, mlp_ratio=2, upsampler='pixelshuffledirect'), 1e-4)}


@pytest.mark.parametrize('name', APPROXIMATE)
def test_arch_without_a_receptive_field_routes_as_tiling_does(name):
    """RCAN (channel attention pools the whole image) and SwinIR (windows; 37 x 50 is padded to whole windows): one
    output everywhere is the whole-image pass exactly; in a mix, each tile is within the tiling approximation of its
    output (strips run from the first exit on with the padding --tile uses; per-block crops without context were off
    by 0.05 / 0.3); the planned MACs are the counted ones; the route tile must be a multiple of the window."""
    from sd_plugin.archs.multi_exit_arch import MultiExitSR
    from sd_plugin.routing.execute import executed_macs
    arch, tolerance = APPROXIMATE[name]
    torch.manual_seed(0)
    net = lively(MultiExitSR(arch, exits=[2, 4]))
    stages = staged(net)
    assert not stages.exact and name in stages.note
    x = torch.rand(1, 3, 37, 50, generator=torch.Generator().manual_seed(1))
    outputs = whole(net, x)
    with torch.inference_mode():
        sr, plan = route_image(stages, x, 1.0, 'random', tile=8)
        assert set(plan.route) == {6} and (sr - outputs[6]).abs().max() <= 1e-5
        sr, plan = route_image(stages, x, 0.1, 'random', tile=8)
        assert set(plan.route) == {2} and (sr - outputs[2]).abs().max() <= 1e-5
    padded = stages.prepare(x)
    grid = tile_grid(*padded.shape[2:], 8)
    route, sr = next(random_mixes(stages, padded, grid, count=1))
    sr = sr[..., :37 * S, :50 * S]
    assert len(set(route)) == 3
    assert max(tile_errors(sr, outputs, grid, route)) <= tolerance
    assert planned_macs(stages, grid, route, *padded.shape[2:]) == pytest.approx(
        executed_macs(stages, padded, grid, route), rel=1e-4)
    if stages.tile_multiple > 1:
        with pytest.raises(ConfigError, match='multiple of 4'):
            route_image(stages, x, 0.8, 'random', tile=6)


def test_swinir_checkpoint_upscales_under_a_budget(tmp_path, capsys):
    """sd-upscale --budget on a MultiExitSR (SwinIR) checkpoint: it says that tiles are approximate, spends within
    the budget, and budget 1 is its teacher."""
    import cv2

    from sd_plugin.archs.multi_exit_arch import MultiExitSR
    from sd_plugin.tools.upscale import main
    torch.manual_seed(0)
    net = lively(MultiExitSR(APPROXIMATE['SwinIR'][0], exits=[2, 4]))
    ckpt = str(tmp_path / 'swinir.pth')
    torch.save({'params': net.state_dict()}, ckpt)
    img = np.random.default_rng(0).integers(0, 256, (44, 60, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'lr.png'), img)
    main([str(tmp_path / 'lr.png'), '--model', ckpt, '--out', str(tmp_path / 'teacher'), '--threads', '1',
          '--quiet'])
    for budget in ('1', '0.8'):
        main([str(tmp_path / 'lr.png'), '--model', ckpt, '--out', str(tmp_path / budget), '--budget', budget,
              '--router', 'random', '--route-tile', '16', '--threads', '1', '--quiet'])
    out = capsys.readouterr().out
    assert 'no finite receptive field (default tile padding 16 px: tiles approximate)' in out
    assert 'receptive field 16 px' not in out
    line = next(line for line in out.splitlines() if '(budget 0.8;' in line)
    assert float(line.split('spent ')[1].split()[0]) <= 0.8
    teacher = cv2.imread(str(tmp_path / 'teacher' / 'lr_x4.png')).astype(int)
    assert np.abs(cv2.imread(str(tmp_path / '1' / 'lr_x4.png')) - teacher).max() <= 1


def test_bicubic_is_one_more_exact_choice(net, x):
    """--bicubic: output 0 is bicubic upsampling. Under the trunk's cost it runs everywhere; in any mix each tile
    equals its output (bicubic tiles: the whole image's bicubic, borders included); the planned MACs are counted;
    a bicubic tile saves the cheapest exit's head, so a mix with bicubic costs less than the cheapest exit."""
    from sd_plugin.routing.bicubic import WithBicubic, bicubic
    from sd_plugin.routing.execute import executed_macs
    stages = WithBicubic(staged(net))
    assert stages.depths == [0, 2, 4, 6]
    outputs = {0: bicubic(x, S), **whole(net, x)}
    sr, plan = route_image(stages, x, 0.05, 'random', tile=8)
    assert set(plan.route) == {0} and plan.note and (sr - outputs[0]).abs().max() <= 1e-5
    grid = tile_grid(21, 30, 8)
    for route, sr in random_mixes(stages, x, grid):
        assert max(tile_errors(sr, outputs, grid, route)) <= 1e-5
        assert planned_macs(stages, grid, route, 21, 30) == pytest.approx(executed_macs(stages, x, grid, route))
    half = [0 if i % 2 else 2 for i in range(len(grid))]
    assert planned_macs(stages, grid, half, 21, 30) < planned_macs(stages, grid, [2] * len(grid), 21, 30)


def test_bicubic_routers_use_the_calibrated_bicubic_table(net, ckpt, hr_folder, x):
    """sd-calibrate stores the cheapest exit's gain over bicubic per edge bin; edge+bicubic and learned+bicubic route
    with it, random+bicubic without; a calibration without the table is refused in one line."""
    from sd_plugin.routing.bicubic import WithBicubic
    from sd_plugin.tools.calibrate import main
    main([ckpt, '--data', str(hr_folder), '--route-tile', '8', '--threads', '1'])
    calibration = load_calibration(ckpt, [2, 4, 6], 'params')
    assert len(calibration['edge']['bicubic']) == len(calibration['edge']['gain'])
    stages = WithBicubic(staged(net))
    for router in ('edge', 'learned', 'random'):
        sr, plan = route_image(stages, x, 0.6, router, tile=8, calibration=calibration)
        assert plan.executed <= 0.6 and sr.shape == (1, 3, 21 * S, 30 * S)
    bins = len(calibration['edge']['bicubic'])
    for router in ('edge', 'learned'):  # the table decides: bicubic far better, or far worse, than the cheapest exit
        calibration['edge']['bicubic'] = [-1e6] * bins
        assert set(route_image(stages, x, 0.95, router, tile=8, calibration=calibration)[1].route) == {0}
        calibration['edge']['bicubic'] = [1e6] * bins
        assert 0 not in route_image(stages, x, 0.95, router, tile=8, calibration=calibration)[1].route
    del calibration['edge']['bicubic']
    with pytest.raises(ConfigError, match='rerun sd-calibrate'):
        route_image(stages, x, 0.6, 'edge', tile=8, calibration=calibration)


# ----------------------------------------------------------------------------------------------- issue 26: vs fixed


def test_the_plan_that_runs_predicts_at_least_the_best_fixed_output(net):
    """Random predicted gains and budgets: the route that runs predicts at least the gain of the best output that,
    alone on the whole image, fits the budget (found here independently, from the MACs per pixel), and stays within
    the budget. Where the greedy mix from the cheapest exit predicts less (its context costs), the fixed output, or
    the mix upgraded from it, runs instead; the best of the three runs."""
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    stages, grid = staged(net), tile_grid(48, 64, 16)
    shares = {d: stages.macs_per_pixel(d) / stages.macs_per_pixel(6) for d in (2, 4, 6)}
    index, rng, seen = {2: 0, 4: 1, 6: 2}, np.random.default_rng(0), {'mix lost': 0, 'upgraded ran': 0}
    for _ in range(3):
        gains = np.cumsum(rng.random((len(grid), 3)) * [0, 1, 1], 1) * tile_areas(grid)[:, None]
        for budget in (0.86, 0.9, 0.93, 0.95, 0.97, 0.99):
            _, plan = route_image(stages, x, budget, 'oracle', tile=16, gains=gains)
            ran = gains[np.arange(len(grid)), [index[d] for d in plan.route]].sum()
            best = max(gains[:, index[d]].sum() for d in (2, 4, 6) if shares[d] <= budget)
            assert ran >= best - 1e-9 and plan.executed <= budget
            versus = plan.versus
            assert ran == pytest.approx(max(versus['mix'], versus['upgraded'], versus['fixed']))
            seen['mix lost'] += versus['mix'] < versus['fixed']
            seen['upgraded ran'] += plan.fixed is None and ran > versus['mix']
    assert all(seen.values()), seen  # both decided somewhere: the mix alone would have predicted less


def test_a_calibration_where_routing_looks_worse_runs_the_fixed_exit_exactly(net, x):
    """An edge table predicting about the same gain per pixel for exit 4 and the teacher on every tile: at 0.95, the
    greedy mix from exit 2 pays context for deep tiles and predicts less than exit 4 everywhere (which fits), so
    exit 4 runs on the whole image: its output exactly, its MACs, and the summary line and plan say so. With the
    teacher far better on the textured half of an image, a mix predicts more, and runs."""
    from sd_plugin.upscaler import describe_plan
    calibration = {'edge': {'bin_edges': [], 'gain': [[0.0, 5.0, 8.0]]}, 'edge_residual': 0.0}
    sr, plan = route_image(staged(net), x, 0.95, 'edge', tile=8, calibration=calibration)
    assert plan.versus['mix'] < plan.versus['fixed'] and plan.versus['depth'] == 4
    assert plan.fixed == 4 and set(plan.route) == {4} and torch.equal(sr, whole(net, x)[4])
    assert plan.executed == pytest.approx(staged(net).macs_per_pixel(4) / staged(net).macs_per_pixel(6))
    line = describe_plan(plan)
    assert line.startswith('ran exit 4 everywhere (fixed, whole image); predicted gains: mix from exit 2')
    half = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    half[..., :48] = 0.5  # flat (edge score 0) but for the right 16 columns
    calibration = {'edge': {'bin_edges': [1.0], 'gain': [[0.0, 1.0, 1.0], [0.0, 1.0, 50.0]]}, 'edge_residual': 0.0}
    _, plan = route_image(staged(net), half, 0.97, 'edge', tile=16, calibration=calibration)
    assert plan.fixed is None and max(plan.versus['mix'], plan.versus['upgraded']) > plan.versus['fixed']
    assert describe_plan(plan).startswith('ran the routed mix; predicted gains: mix from exit 2')


def test_the_margin_runs_the_fixed_exit_when_the_calibration_is_unsure(net):
    """The image where a mix predicts more (above): with a held-out residual of 0 the mix runs at the default
    margin; with a residual as large as the gains, the best fixed output runs on the whole image, exactly; margin 0
    is today's rule whatever the residual. A margin without a residual in the calibration, or a negative one, is a
    ConfigError."""
    half = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    half[..., :48] = 0.5
    table = {'bin_edges': [1.0], 'gain': [[0.0, 1.0, 1.0], [0.0, 1.0, 50.0]]}
    runs = {}
    for residual, margin in ((0.0, 1.0), (50.0, 1.0), (50.0, 0.0)):
        sr, plan = route_image(staged(net), half, 0.97, 'edge', tile=16, margin=margin,
                               calibration={'edge': table, 'edge_residual': residual})
        runs[residual, margin] = plan.fixed
    assert runs[0.0, 1.0] is None and runs[50.0, 0.0] is None
    assert runs[50.0, 1.0] == plan.versus['depth'] and plan.versus['margin'] == 0  # margin 0: none
    sr, plan = route_image(staged(net), half, 0.97, 'edge', tile=16, calibration={'edge': table, 'edge_residual': 50.0})
    assert plan.fixed == plan.versus['depth'] and plan.versus['margin'] > plan.versus['mix'] - plan.versus['level']
    assert set(plan.route) == {plan.fixed} and torch.equal(sr, whole(net, half)[plan.fixed])
    with pytest.raises(ConfigError, match='edge_residual'):
        route_image(staged(net), half, 0.97, 'edge', tile=16, calibration={'edge': table})
    with pytest.raises(ConfigError, match='--margin'):
        route_image(staged(net), half, 0.97, 'edge', tile=16, calibration={'edge': table}, margin=-1)


def test_mix_errors_are_the_error_of_the_predicted_advantage_on_a_hand_made_example(net):
    """Two 16 x 16 LR tiles (area 256) at budget 0.998, where only tile 0 at the teacher and tile 1 at exit 2 fits
    (0.997 of the teacher, context included). Predicted per pixel: tile 0 gains 50 at the teacher, tile 1 loses 60,
    exit 4 loses 1 on both: the best fixed output is exit 2 with a predicted slope of 0, so the mix (6, 2) runs and
    its predicted advantage is 50 x 256. Image 1, true: +10 and -20 at the teacher (true slope 0): true advantage
    10 x 256, error (50 - 10) x 256 / 256 = 40. Image 2, true: +30 and +10 (true slope 40 x 256 over the teacher's
    extra MACs on the whole image): error 50 - 30 + slope x the mix's extra MACs / 256. Image 3 predicts no gain
    anywhere: the fixed output, no mix. ``calibrate`` stores the root mean square and count of its held-out ones."""
    from sd_plugin.routing.calibration import mix_errors
    from sd_plugin.routing.plan import against_fixed
    stages, grid, area = staged(net), tile_grid(16, 32, 16), 256
    predicted = np.array([[0.0, -1.0, 50.0], [0.0, -1.0, -60.0]])
    (route, *_), versus = against_fixed(stages, predicted * area, grid, 0.998, 16, 32)
    assert route == [6, 2] and versus['depth'] == 2 and versus['level'] == 0.0  # the premise
    truths = [np.array([[0.0, 0.0, 10.0], [0.0, 0.0, -20.0]]), np.array([[0.0, 0.0, 30.0], [0.0, 0.0, 10.0]]),
              np.zeros((2, 3))]
    samples = [{'grid': grid, 'height': 16, 'width': 32, 'gain': truth} for truth in truths]
    guesses = [predicted, predicted, np.array([[0.0, -1.0, -1.0], [0.0, -1.0, -1.0]])]
    errors = mix_errors(stages, samples, guesses, budgets=(0.5, 0.998))  # 0.5: below exit 2 (0.85), no choice
    pixels = 16 * 32
    slope = 40 * area / ((stages.macs_per_pixel(6) - stages.macs_per_pixel(2)) * pixels)
    extra = planned_macs(stages, grid, [6, 2], 16, 32) - planned_macs(stages, grid, [2, 2], 16, 32)
    assert errors == pytest.approx([40.0, 20.0 + slope * extra / area])
    assert slope * extra / area > 1  # the true level counts
    # calibrate: four images whose tiles gain the predicted gains (tile 0 edged, tile 1 flat: the edge table of two
    # bins predicts them exactly), image 1 held out (every 5th): one held-out mix at 0.998, error 40
    fit = {'edge': np.array([1.0, 0.0]), 'stats': np.zeros((2, 4)), 'bicubic': np.zeros(2), 'grid': grid,
           'height': 16, 'width': 32, 'gain': predicted}
    record = calibrate([fit] * 4 + [{**fit, 'gain': truths[0]}], bins=2, hidden=2, steps=5, stages=stages,
                       budgets=(0.998,))
    assert record['edge_mix_count'] == 1 and record['edge_mix_residual'] == pytest.approx(40.0)
    assert (record['learned_mix_count'] > 0) == ('learned_mix_residual' in record)


def test_route_margin_prefers_the_residual_of_the_held_out_mixes(net):
    """``ROUTER_mix_residual`` scales the margin when the calibration has it (times ``margin``); else
    ``ROUTER_residual``, as before. On the image where a mix predicts more: a per-tile residual as large as the
    gains alone keeps the fixed exit; with a mix residual of 0 beside it, the mix runs."""
    from sd_plugin.routing.plan import route_margin
    assert route_margin('edge', {'edge_residual': 50.0, 'edge_mix_residual': 2.0}) == 2.0
    assert route_margin('learned', {'learned_residual': 50.0, 'learned_mix_residual': 2.0}, margin=3) == 6.0
    assert route_margin('edge', {'edge_residual': 50.0, 'edge_mix_residual': None}) == 50.0
    assert route_margin('edge', {'edge_residual': 50.0, 'learned_mix_residual': 2.0}) == 50.0
    half = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    half[..., :48] = 0.5
    table = {'bin_edges': [1.0], 'gain': [[0.0, 1.0, 1.0], [0.0, 1.0, 50.0]]}
    _, plan = route_image(staged(net), half, 0.97, 'edge', tile=16, calibration={'edge': table, 'edge_residual': 50.0})
    assert plan.fixed is not None
    _, plan = route_image(staged(net), half, 0.97, 'edge', tile=16,
                          calibration={'edge': table, 'edge_residual': 50.0, 'edge_mix_residual': 0.0})
    assert plan.fixed is None and plan.versus['margin'] == 0


def test_a_corrupt_mix_residual_or_count_is_refused_in_one_line(ckpt, hr_folder, tmp_path, capsys):
    """sd-calibrate's file with a mix residual or count edited to what ``calibrate`` never writes: loading it is one
    ConfigError naming the file and the key; sd-upscale --budget refuses it in one line."""
    import cv2

    from sd_plugin.tools.calibrate import main as calibrate_main
    from sd_plugin.tools.upscale import main as upscale_main
    calibrate_main([ckpt, '--data', hr_folder, '--route-tile', '4', '--steps', '20', '--bins', '3', '--quiet'])
    good = json.load(open(routing_path(ckpt)))
    faults = {('edge_mix_residual', -1.0): 'edge_mix_residual: must be >= 0',
              ('learned_mix_residual', float('nan')): 'learned_mix_residual: holds NaN or Inf',
              ('edge_mix_residual', 'big'): 'edge_mix_residual: must be a number',
              ('learned_mix_count', -1): 'learned_mix_count: must be a whole number >= 0, found -1',
              ('edge_mix_count', 2.5): 'edge_mix_count: must be a whole number >= 0, found 2.5',
              ('edge_mix_count', True): 'edge_mix_count: must be a whole number >= 0, found True'}
    for (key, value), message in faults.items():
        with open(routing_path(ckpt), 'w') as f:
            json.dump({**good, key: value}, f)
        with pytest.raises(ConfigError) as raised:
            load_calibration(ckpt, [2, 4, 6], 'params')
        assert str(raised.value) == f'{routing_path(ckpt)}: {message}' or (
            str(raised.value).startswith(f'{routing_path(ckpt)}: {message}') and '\n' not in str(raised.value)), key
    cv2.imwrite(str(tmp_path / 'lr.png'), np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        upscale_main([str(tmp_path / 'lr.png'), '--model', ckpt, '--out', str(tmp_path / 'up'), '--budget', '0.95',
                      '--router', 'edge', '--route-tile', '8', '--threads', '1', '--quiet'])
    lines = capsys.readouterr().err.strip().splitlines()
    assert err.value.code == 2 and len(lines) == 1 and 'edge_mix_count: must be a whole number' in lines[0]


def test_budget_one_below_the_cheapest_and_random_need_no_calibration(ckpt, tiny_set):
    """The edge router without sd-calibrate: budget 1 (the teacher) and a budget below the cheapest exit (0.85 of
    the teacher here: exit 2 everywhere) run, in sd-upscale's Upscaler and in sd-eval --budget; random runs at any
    budget; a budget with a choice asks for it."""
    from sd_plugin.evaluation.budget import evaluate_budget
    from sd_plugin.upscaler import Upscaler
    records = evaluate_budget(ckpt, tiny_set, ['Tiny'], (0.5, 1.0), ('edge',), 16, progress=False, log=lambda *a: None)
    assert [r['fixed_images'] for r in records if r['kind'] == 'routed'] == [2, 2]
    img = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    exit2 = Upscaler(ckpt, exit=2).upscale(img)
    for budget, depth in ((1.0, 6), (0.5, 2)):
        routed = Upscaler(ckpt, budget=budget, router='edge', route_tile=8)
        out = routed.upscale(img)
        assert routed.plans[-1].fixed == depth and routed.plans[-1].versus is None
    assert np.abs(out.astype(int) - exit2).max() <= 1
    Upscaler(ckpt, budget=0.95, router='random', route_tile=8).upscale(img)
    with pytest.raises(ConfigError, match='sd-calibrate'):
        Upscaler(ckpt, budget=0.95, router='edge')


def test_fixed_exits_at_equal_macs_are_interpolated_on_a_hand_made_example():
    """Exits at 0.4 / 0.6 / 1 of the MACs with 30 / 31 / 31.5 dB (set means; per image 29 / 30.5 / 31 and 31 /
    31.5 / 32): a router that ran 0.5 of the MACs is compared with 30.5 dB, a +bicubic one at 0.2 with the
    segment from bicubic (0, 28 dB) to exit 4: 29 dB; per image, at each image's own MACs run."""
    from sd_plugin.evaluation.budget import summary
    from sd_plugin.evaluation.budget_report import vs_fixed

    def fixed(kind, depth, share, images):
        return {'kind': kind, 'dataset': 'S', 'exit': depth, 'share': share, 'psnr': float(np.mean(images)),
                'psnr_images': images}

    def routed(router, macs, images):
        return {'kind': 'routed', 'dataset': 'S', 'router': router, 'budget': 0.5, 'share': 0.45,
                'executed_share': float(np.mean(macs)), 'psnr': float(np.mean(images)), 'ms': 1, 'teacher_ms': 2,
                'psnr_images': images, 'executed_images': macs, 'fixed_images': 1}

    records = [fixed('exit', 4, 0.4, [29, 31]), fixed('exit', 8, 0.6, [30.5, 31.5]), fixed('exit', 16, 1.0, [31, 32]),
               fixed('bicubic', 0, 0.0, [27, 29]),
               routed('edge', [0.4, 0.6], [29.5, 31.5]),  # image 0: 0.5 dB above exit 4; image 1: level with exit 8
               routed('edge+bicubic', [0.2, 0.2], [28, 30.5])]  # at 0.2: 28 and 30 dB
    rows = {r['router']: r for r in summary(records)}
    assert rows['edge']['fixed_at_equal_macs'] == pytest.approx(30.5) and rows['edge']['vs_fixed'] == 0
    assert rows['edge']['images_vs_fixed'] == {'ahead': 1, 'tied': 1, 'behind': 0}
    assert rows['edge+bicubic']['fixed_at_equal_macs'] == pytest.approx(29)
    assert rows['edge+bicubic']['vs_fixed'] == pytest.approx(0.25)
    assert rows['edge+bicubic']['images_vs_fixed'] == {'ahead': 1, 'tied': 1, 'behind': 0}
    table = vs_fixed(records, 'edge')
    assert table['default_router'] == 'edge' and list(table['sets']) == ['S']
    assert table['sets']['S'][0] == {'router': 'edge', 'budget': 0.5, 'macs_run': 0.5, 'psnr': 30.5,
                                     'fixed_at_equal_macs': 30.5, 'vs_fixed': 0.0,
                                     'images_vs_fixed': {'ahead': 1, 'tied': 1, 'behind': 0}, 'fixed_images': 1}
