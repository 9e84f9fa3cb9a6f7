"""Train with BasicSR's own pipeline and flags (-opt, --auto_resume, --launcher, --debug, --force_yml), with the
plugin's fixes and checks installed (``sd_plugin.compat.install``).

torch's CPU threads: ``OMP_NUM_THREADS`` when set, else the cores idle at the start (``sd_plugin.threads``), chosen
once and printed ("sd-train: 2 threads (2 idle cores of 2)") and written to the training log. BasicSR parses the
command line itself, so there is no ``--threads`` flag: ``OMP_NUM_THREADS=1 sd-train -opt X.yml``.

``--import MODULE`` (repeatable) and the YAML's ``custom_imports: [module, ...]`` import a user's modules (their
arch and adapter) before the options are checked (``sd_plugin.imports``).

``python sd_plugin/train.py -opt options/X.yml`` roots experiments/ at the repository; the ``sd-train`` console
script roots them at the current directory.
"""
import os
import sys
from os import path as osp

import sd_plugin  # noqa: F401  (registrations)
from sd_plugin import compat
from sd_plugin.cli import one_line_errors
from sd_plugin.imports import import_modules, split_imports
from sd_plugin.threads import apply_threads


@one_line_errors('sd-train')
def main(root_path=None):
    sys.argv[1:], modules = split_imports(sys.argv[1:])  # BasicSR's parser reads the rest
    compat.install()
    import_modules(modules, '--import')
    apply_threads(prog='sd-train')
    from basicsr.train import train_pipeline
    train_pipeline(root_path or os.getcwd())


if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
