"""sd-basicsr-dropin: make a BasicSR source checkout's own ``python basicsr/train.py`` see this plugin.

BasicSR registers components by importing every ``basicsr/archs/*_arch.py`` and ``basicsr/models/*_model.py``.
This writes two one-line modules there:

* ``basicsr/archs/sd_plugin_arch.py`` imports ``sd_plugin``. The arch scan runs before ``basicsr.data`` is imported,
  so this also installs the torchvision alias that a 1.4.2 checkout needs, and registers the arch and the loss.
* ``basicsr/models/sd_plugin_model.py`` imports ``sd_plugin.models``, which registers SelfDistillSRModel; it can
  only be imported once ``basicsr.archs`` is complete, hence the second file.
"""
import argparse
import shlex
from os import path as osp

from sd_plugin.cli import one_line_errors
from sd_plugin.errors import ConfigError
from sd_plugin.imports import parse_with_imports

DROPINS = {
    osp.join('basicsr', 'archs', 'sd_plugin_arch.py'):
    'import sd_plugin  # noqa: F401  (written by sd-basicsr-dropin)\n',
    osp.join('basicsr', 'models', 'sd_plugin_model.py'):
    'import sd_plugin.models  # noqa: F401  (written by sd-basicsr-dropin)\n',
}


def install(basicsr_root):
    """Write the drop-in modules into the checkout at ``basicsr_root`` (the folder holding ``basicsr/``).
    Returns the paths written."""
    for folder in ('archs', 'models'):
        if not osp.isdir(osp.join(basicsr_root, 'basicsr', folder)):
            raise ConfigError(f'{basicsr_root}: not a BasicSR checkout (no basicsr/{folder}/ folder)')
    written = []
    for rel, text in DROPINS.items():
        path = osp.join(basicsr_root, rel)
        with open(path, 'w') as f:
            f.write(text)
        written.append(path)
    return written


def missing_version_fix(basicsr_root):
    """The command that writes ``basicsr/version.py`` when the checkout lacks it (BasicSR's ``setup.py`` writes
    it; a fresh git clone does not have it), else None."""
    if osp.isfile(osp.join(basicsr_root, 'basicsr', 'version.py')):
        return None
    return f'cd {shlex.quote(osp.abspath(basicsr_root))} && python setup.py develop'


@one_line_errors('sd-basicsr-dropin')
def main(argv=None):
    parser = argparse.ArgumentParser(prog='sd-basicsr-dropin', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='example: sd-basicsr-dropin ~/BasicSR && cd ~/BasicSR && '
                                     'PYTHONPATH=. python basicsr/train.py -opt /path/to/sd_plugin/options/sd_sr32.yml')
    parser.add_argument('basicsr_root', help='BasicSR source checkout (the folder that holds basicsr/)')
    args = parse_with_imports(parser, argv)
    for path in install(args.basicsr_root):
        print(f'wrote {path}')
    fix = missing_version_fix(args.basicsr_root)
    if fix:
        print(f'note: {osp.join(args.basicsr_root, "basicsr", "version.py")} is missing (a fresh git clone: BasicSR\'s '
              f'own set-up writes it), so basicsr/train.py would fail with "No module named \'basicsr.version\'". '
              f'Write it with:\n  {fix}')


if __name__ == '__main__':
    main()
