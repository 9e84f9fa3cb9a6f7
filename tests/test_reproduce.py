"""sd-reproduce on a tiny budget: tiny networks, generated data, valid JSON, skip on rerun."""
import json
import os
import shutil

import cv2
import yaml
from helpers import ROOT

from sd_plugin.tools.reproduce import reproduce


def tiny_templates(folder):
    """options/cpu's Table 1 templates shrunk to 8 features, 4 blocks (exit 2), disk data under datasets/tiny."""
    os.makedirs(folder)
    for stem in ('baseline_sr8', 'sd_sr32', 'ds_sr32'):
        opt = yaml.safe_load(open(os.path.join(ROOT, 'options', 'cpu', f'{stem}.yml')))
        opt['network_g'].update(num_feat=8, num_block=2 if stem == 'baseline_sr8' else 4)
        if 'exits' in opt['network_g']:
            opt['network_g']['exits'] = [2]
        opt['datasets']['train'].update(dataroot_gt='datasets/tiny/gt', dataroot_lq='datasets/tiny/lq', gt_size=32,
                                        io_backend={'type': 'disk'}, batch_size_per_gpu=2, num_worker_per_gpu=0)
        with open(os.path.join(folder, f'{stem}.yml'), 'w') as f:
            yaml.safe_dump(opt, f)


def test_runner_trains_evaluates_and_skips_finished_runs(tiny_data, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(os.path.dirname(tiny_data['train'][0]), data / 'tiny')
    for sub, src in (('GTmod4', 'gt'), ('LRbicx4', 'lq')):
        shutil.copytree(os.path.join(os.path.dirname(tiny_data['val'][0]), src), data / 'Bench' / sub)
    tiny_templates(tmp_path / 'options')
    out = tmp_path / 'results'
    doc = reproduce(1, 3, str(data), str(out), str(tmp_path / 'options'))

    saved = json.load(open(out / 'table1.json'))
    assert saved == json.loads(json.dumps(doc))
    assert [r['label'] for r in saved['runs']] == ['SRResNet-8 alone', 'SD-32', 'DS-32']
    rows = {(r['model'], r['exit']) for r in saved['records']}
    assert rows == {('bicubic', None), ('cpu_baseline_sr8_x4_3it', None), ('cpu_sd_sr32_x4_3it', 2),
                    ('cpu_sd_sr32_x4_3it', 4), ('cpu_ds_sr32_x4_3it', 2), ('cpu_ds_sr32_x4_3it', 4)}
    assert all(r['dataset'] == 'Bench' and 0 < r['psnr'] < 100 for r in saved['records'])
    table = open(out / 'table1.md').read()
    for label in ('Bicubic', 'SRResNet-8 alone', 'SD-32 exit 2', 'SD-32 teacher', 'DS-32 exit 2', 'DS-32 teacher'):
        assert f'| {label} |' in table
    assert cv2.imread(str(out / 'table1.png')) is not None

    again = reproduce(1, 3, str(data), str(out), str(tmp_path / 'options'))
    assert [r['seconds'] for r in again['runs']] == [0.0, 0.0, 0.0]
    assert again['records'] == doc['records']
