"""benchmarks/benchlib.py judges a ratio only when its per-round spread allows it: synthetic per-round ratios in, the
verdict out (no timing, no network)."""
import sys
from os import path as osp

import pytest

BENCHMARKS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'benchmarks')
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

import benchlib  # noqa: E402

TIGHT = [1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 1.01, 0.99]  # IQR 0.99-1.01: 2 % of the median
WIDE = [0.70, 0.77, 0.90, 1.10, 1.30, 1.62, 1.70, 0.80]  # IQR 0.79-1.38: 59 % of the median (the bench_train case)


@pytest.mark.parametrize('goal, verdict', [
    (('<=', 1.20, 'x'), 'PASS'), (('<=', 0.90, 'x'), 'MISS'),
    (('>=', 0.90, 'x'), 'PASS'), (('>=', 1.20, 'x'), 'MISS'),
    (('in', (0.95, 1.05), 'x'), 'PASS'), (('in', (1.05, 1.20), 'x'), 'MISS'),
])
def test_a_tight_spread_gets_a_verdict(goal, verdict):
    r = benchlib.judge(TIGHT, goal)
    assert r['verdict'] == verdict and r['passed'] is (verdict == 'PASS') and not r['unstable']
    assert r['result'].startswith(f'{verdict} (margin ')


@pytest.mark.parametrize('goal', [('<=', 1.60, 'x'), ('<=', 0.50, 'x'), ('>=', 0.50, 'x'), ('in', (0.5, 2.0), 'x')])
def test_a_wide_spread_is_unstable_whatever_the_median(goal):
    """Even goals the median meets or misses by far: with quartiles 0.79 and 1.38 the next run could say otherwise."""
    r = benchlib.judge(WIDE, goal)
    assert r['verdict'] == 'UNSTABLE' and r['passed'] is None
    assert r['result'].startswith('UNSTABLE (IQR 0.793-1.380, 59 % of the median)')
    table = benchlib.ratio_table([{'name': 'SD / plain', 'bound': None, **r}])
    assert 'UNSTABLE (IQR' in table and 'PASS' not in table and 'MISS' not in table


def test_a_goal_inside_the_iqr_is_unstable():
    """Narrow enough (4 % of the median), but the quartiles straddle the goal: no verdict either way."""
    ratios = [0.98, 1.00, 1.02, 1.04, 1.00, 1.01, 0.99, 1.03]
    for goal in (('<=', 1.01, 'x'), ('>=', 1.01, 'x'), ('in', (1.01, 1.5), 'x')):
        r = benchlib.judge(ratios, goal)
        assert r['rel_iqr'] < benchlib.MAX_REL_IQR and r['verdict'] == 'UNSTABLE', goal
        assert 'goal 1.010 inside IQR' in r['result']


def test_the_threshold_and_the_rounds():
    assert benchlib.judge(WIDE, ('<=', 2.0, 'x'), max_rel_iqr=0.6)['verdict'] == 'PASS'
    assert benchlib.judge(TIGHT, ('<=', 2.0, 'x'), max_rel_iqr=0.01)['verdict'] == 'UNSTABLE'
    few = benchlib.judge(TIGHT[:3], ('<=', 2.0, 'x'))
    assert few['verdict'] == 'UNSTABLE' and '3 rounds' in few['result']
    # without a goal: no verdict when stable, UNSTABLE when too wide
    assert benchlib.judge(TIGHT)['result'] == '' and benchlib.judge(WIDE)['verdict'] == 'UNSTABLE'


def test_ratio_takes_per_round_ratios():
    times = {'a': [2.0, 4.0, 2.0, 2.2, 2.0, 1.0], 'b': [1.0, 2.0, 1.0, 1.0, 1.0, 0.5]}
    r = benchlib.ratio(times, 'a', 'b', 'a / b', goal=('<=', 2.5, 'x'))
    assert r['per_round'] == [2.0, 2.0, 2.0, 2.2, 2.0, 2.0] and r['median'] == 2.0 and r['verdict'] == 'PASS'
