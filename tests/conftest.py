"""Fixtures shared by the tests; the helpers they use are in helpers.py."""
import pytest
import torch
from helpers import write_pairs

from sd_plugin import compat

compat.install()  # in-process tests run what the launchers run


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    """{'train': (gt_dir, lq_dir), 'val': (gt_dir, lq_dir)}: 8 train pairs of 48 px GT, 3 val pairs of 32 px, x4."""
    root = tmp_path_factory.mktemp('tiny_data')
    return {'train': write_pairs(str(root / 'train'), 8, 48, 4, seed=1),
            'val': write_pairs(str(root / 'val'), 3, 32, 4, seed=2)}


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored after): on a busy 2-core machine, 2 threads make tiny convolutions
    many times slower. A module opts in with ``pytestmark = pytest.mark.usefixtures('one_thread')``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
