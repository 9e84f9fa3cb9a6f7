"""Test with BasicSR's own pipeline and flags, with the plugin's option checks installed
(``sd_plugin.compat.install``). ``python sd_plugin/test.py -opt options/test/X.yml`` writes results/ under the
repository; the ``sd-test`` console script writes them under the current directory. torch's CPU threads:
``OMP_NUM_THREADS`` when set, else the cores idle at the start (``sd_plugin.threads``; printed)."""
import os
from os import path as osp

import sd_plugin  # noqa: F401  (registrations)
from sd_plugin import compat
from sd_plugin.cli import one_line_errors
from sd_plugin.threads import apply_threads


@one_line_errors('sd-test')
def main(root_path=None):
    compat.install()
    apply_threads(prog='sd-test')
    from basicsr.test import test_pipeline
    test_pipeline(root_path or os.getcwd())


if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
