"""Train with BasicSR's own pipeline and flags (-opt, --auto_resume, --launcher, --debug, --force_yml), with the
plugin's fixes and checks installed (``sd_plugin.compat.install``).

``python sd_plugin/train.py -opt options/X.yml`` roots experiments/ at the repository; the ``sd-train`` console
script roots them at the current directory.
"""
import os
from os import path as osp

import sd_plugin  # noqa: F401  (registrations)
from sd_plugin import compat
from sd_plugin.cli import one_line_errors


@one_line_errors('sd-train')
def main(root_path=None):
    compat.install()
    from basicsr.train import train_pipeline
    train_pipeline(root_path or os.getcwd())


if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
