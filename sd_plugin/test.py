"""Test with BasicSR's own pipeline and flags, with the plugin's option checks installed
(``sd_plugin.compat.install``). ``python sd_plugin/test.py -opt options/test/X.yml`` writes results/ under the
repository; the ``sd-test`` console script writes them under the current directory. torch's CPU threads:
``OMP_NUM_THREADS`` when set, else the cores idle at the start (``sd_plugin.threads``; printed). ``--import MODULE``
and the YAML's ``custom_imports`` import a user's modules first (``sd_plugin.imports``)."""
import os
import sys
from os import path as osp

import sd_plugin  # noqa: F401  (registrations)
from sd_plugin import compat
from sd_plugin.cli import one_line_errors
from sd_plugin.imports import import_modules, split_imports
from sd_plugin.threads import apply_threads


@one_line_errors('sd-test')
def main(root_path=None):
    sys.argv[1:], modules = split_imports(sys.argv[1:])  # BasicSR's parser reads the rest
    compat.install()
    import_modules(modules, '--import')
    apply_threads(prog='sd-test')
    from basicsr.test import test_pipeline
    test_pipeline(root_path or os.getcwd())


if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
