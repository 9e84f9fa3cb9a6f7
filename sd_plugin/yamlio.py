"""Reading YAML safely: every YAML file the plugin or BasicSR reads (options, study files, templates) goes through
``SafeOrderedLoader``.

An options file is data. A user runs one that a colleague sent, so no tag may construct a Python object or call a
function: PyYAML's full loader, which BasicSR's ``ordered_yaml`` returns, runs ``!!python/object/apply:os.system``.
``SafeOrderedLoader`` is ``yaml.SafeLoader`` (mappings, lists, strings, numbers, booleans, null), whose mappings are
plain dicts in the file's key order (BasicSR's ``OrderedDict`` is not needed: dicts keep insertion order, and
``yaml.safe_dump`` writes them back), and it refuses every Python tag (``tag:yaml.org,2002:python/...``) with a
``ConfigError`` naming the file and line, before constructing anything. A key given twice in one mapping is refused
the same way.
"""
import os

import yaml

from sd_plugin.errors import ConfigError

PYTHON_TAG_PREFIX = 'tag:yaml.org,2002:python/'


class SafeOrderedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (mappings in key order) that refuses Python tags and a key given twice in one mapping
    (YAML would keep the last silently: ``lr`` set twice trains with the second), each in one line."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == 'tag:yaml.org,2002:merge' or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise ConfigError(f'{self.name}: line {key_node.start_mark.line + 1}: key {key!r} is given '
                                      f'twice in one mapping (first at line {seen[key]}); YAML would keep the last '
                                      'silently, so the file is refused: keep one')
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _refuse_python_tag(loader, suffix, node):
    raise ConfigError(f'{loader.name}: line {node.start_mark.line + 1}: the tag !!python/{suffix} would run Python '
                      'code; an options file is data, so Python tags are refused (nothing was run)')


SafeOrderedLoader.add_multi_constructor(PYTHON_TAG_PREFIX, _refuse_python_tag)


def load_yaml(path, what='-opt'):
    """The content of the YAML file ``path`` (mappings as dicts in key order), read with ``SafeOrderedLoader``.

    Args:
        path (str): the file.
        what (str): how the user named it, for the messages (e.g. '-opt', 'study file', '--options').
    Returns:
        the document (any YAML value; None for an empty file).
    Raises:
        ConfigError: a missing file or folder, an unreadable file, invalid YAML (with its line and column), or a
            Python tag (with its line).
    """
    if not os.path.exists(path):
        raise ConfigError(f'{what} {path}: no such file')
    if os.path.isdir(path):
        raise ConfigError(f'{what} {path}: is a folder, not a YAML file')
    try:
        with open(path) as f:
            return yaml.load(f, Loader=SafeOrderedLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f' at line {mark.line + 1}, column {mark.column + 1}' if mark else ''
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        raise ConfigError(f'{what} {path}: not valid YAML{where} ({problem})') from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f'{what} {path}: cannot read it ({type(err).__name__})') from None

