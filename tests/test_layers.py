"""The package's layers run one way (issue 24): ``archs/`` imports nothing above it (not ``export``, which cuts
students with the adapters' key hook), ``routing/`` imports neither ``evaluation/`` nor ``compare`` (what both need,
the MAC counter, the RGB reader and the HR -> LR derivation, lives below them), and no code outside ``archs/`` checks
an adapter's class."""
import ast
import glob
import re
from os import path as osp

import pytest
from helpers import ROOT

PACKAGE = osp.join(ROOT, 'sd_plugin')
ABOVE = {  # folder -> modules it must not import (at the top or inside a function)
    'archs': ('sd_plugin.export', 'sd_plugin.inference', 'sd_plugin.wrapped_network', 'sd_plugin.routing',
              'sd_plugin.evaluation', 'sd_plugin.compare', 'sd_plugin.tools', 'sd_plugin.study'),
    'routing': ('sd_plugin.evaluation', 'sd_plugin.compare', 'sd_plugin.tools', 'sd_plugin.upscaler'),
}


def imported_modules(path):
    """Every module a source file imports, as dotted names (``from a import b`` gives ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f'{node.module}.{alias.name}' for alias in node.names)
    return names


@pytest.mark.parametrize('folder', ABOVE)
def test_a_layer_does_not_import_the_layers_above_it(folder):
    files = glob.glob(osp.join(PACKAGE, folder, '**', '*.py'), recursive=True)
    assert files
    wrong = [(osp.relpath(path, ROOT), name) for path in files for name in imported_modules(path)
             if name.startswith(ABOVE[folder])]
    assert not wrong


def test_no_code_outside_archs_names_an_adapter_class():
    outside = [path for path in glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True)
               if osp.join('sd_plugin', 'archs') not in path]
    named = [osp.relpath(path, ROOT) for path in outside
             if any(name.endswith('Adapter') and name != 'Adapter'
                    for name in (n.attr if isinstance(n, ast.Attribute) else getattr(n, 'id', '')
                                 for n in ast.walk(ast.parse(open(path).read()))))]
    assert not named


LAYER_NAMES = {'conv_first', 'conv_last', 'body', 'upconv1', 'upconv2', 'conv_hr', 'exit_heads'}
THROUGH_ADAPTERS = ('routing', 'export.py', 'checkpoint.py', 'inference.py', 'complexity.py')


def code_names(path):
    """Attribute names and string constants of a source file, docstrings left out."""
    tree = ast.parse(open(path).read())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            yield node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield from re.findall(r'\w+', node.value)


def test_routing_export_checkpoint_inference_name_no_layer():
    """Routing, export, checkpoint reading, inference and MAC counting reach a network's layers through its
    adapter (or ``archs/`` functions): their code names no layer (docstrings may)."""
    files = [path for name in THROUGH_ADAPTERS
             for path in glob.glob(osp.join(PACKAGE, name, '*.py')) + [osp.join(PACKAGE, name)] if path.endswith('.py')]
    assert len(files) > 6
    named = {(osp.relpath(path, ROOT), name) for path in files for name in code_names(path) if name in LAYER_NAMES}
    assert not named
