"""sd-study's runs: their threads (a user's OMP_NUM_THREADS is kept, and recorded), their wall time over every
segment of a resumed run, and --seeds overriding an arm's own seeds."""
import json
import subprocess
import sys

import yaml
from test_study import tiny_spec

from sd_plugin.study.elapsed import earlier_seconds, wait_counting
from sd_plugin.study.runner import jobs
from sd_plugin.study.spec import load_spec


def test_seeds_override_an_arms_own_seeds(tiny_data, tmp_path):
    path = tiny_spec(tiny_data, tmp_path)
    spec = yaml.safe_load(open(path))
    spec['arms']['sd4']['seeds'] = [0, 1, 2, 3, 4]
    with open(path, 'w') as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    assert len(jobs(load_spec(path, arms=['sd4']))) == 2 + 5
    assert jobs(load_spec(path, seeds=[0], arms=['sd4'])) == [('alone2', 0), ('sd4', 0)]


def test_a_runs_seconds_add_up_over_its_segments(tmp_path):
    assert earlier_seconds(tmp_path) == 0
    (tmp_path / 'seconds.json').write_text(json.dumps({'seconds': 100.0}))  # an earlier, interrupted segment
    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(0.5)'])
    code, total = wait_counting(child, tmp_path, every=0.1)
    assert code == 0 and 100.4 < total < 110
    assert json.loads((tmp_path / 'seconds.json').read_text())['seconds'] == total


def test_a_study_keeps_the_users_omp_num_threads_and_records_threads_and_all_seconds(tiny_data, tmp_path,
                                                                                      monkeypatch):
    from sd_plugin.tools.study import main
    path = tiny_spec(tiny_data, tmp_path)
    out = tmp_path / 'out'
    run = out / 'runs' / 'alone2_seed0'
    run.mkdir(parents=True)
    (run / 'seconds.json').write_text(json.dumps({'seconds': 1000.0}))  # as if resumed after 1000 s of training
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    main([path, '--out', str(out), '--arms', 'alone2', '--seeds', '0', '--parallel', '1'])
    done = json.loads((run / 'done.json').read_text())
    assert done['threads'] == 1 and done['threads_chosen_by'] == '1 thread (OMP_NUM_THREADS=1)'
    assert done['seconds'] > 1000
    assert 'sd-train: 1 thread (OMP_NUM_THREADS=1)' in (run / 'train.log').read_text()
    study = json.loads((out / 'study.json').read_text())
    assert study['arms']['alone2']['threads'] == {'0': 1} and study['arms']['alone2']['seconds']['0'] > 1000
