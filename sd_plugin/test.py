"""Test with BasicSR's own pipeline and flags, with the plugin's option checks installed
(``sd_plugin.compat.install``). ``python sd_plugin/test.py -opt options/test/X.yml`` writes results/ under the
repository; the ``sd-test`` console script writes them under the current directory."""
import os
from os import path as osp

import sd_plugin  # noqa: F401  (registrations)
from sd_plugin import compat
from sd_plugin.cli import one_line_errors


@one_line_errors('sd-test')
def main(root_path=None):
    compat.install()
    from basicsr.test import test_pipeline
    test_pipeline(root_path or os.getcwd())


if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
