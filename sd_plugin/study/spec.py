"""The study file (e.g. ``options/study/proxy.yml``) and the BasicSR options of each of its runs.

A study file holds ``name``, ``seeds`` (list of int), ``iters``, ``val_freq``, ``student_depth`` (the exit depth
that every arm's student sits at), ``baseline`` (an arm name), ``arms`` ({name: overrides}) and ``base`` (a BasicSR
training option dict for ``SelfDistillSRModel``). Each arm is ``base`` with its overrides merged in; its keys
``label`` and ``seeds`` belong to the study, not to BasicSR. An optional ``schedule`` (a list of {arms, seeds}) sets
the order the runs train in; every (arm, seed) it names must also be in that arm's seeds.

An optional ``custom_imports`` (as in BasicSR options; also under ``base``) names modules to import first (a
user's arch and adapter); every run's options carry them (``study_imports``).

An optional ``family_arm`` (an arm with exits) pairs every exit with its twin trained alone: an arm whose network
has one output, at a depth that is an output of the family arm, starts from the family arm's initial weights at that
depth (stem, units 1..d and head d), so each exit and its twin start equal (``paired_init``'s ``family_opt``).
"""
import copy
import os
from os import path as osp

import torch
import yaml

from sd_plugin.errors import ConfigError
from sd_plugin.names import plain_name
from sd_plugin.yamlio import load_yaml

STUDY_KEYS = ('name', 'seeds', 'iters', 'val_freq', 'student_depth', 'baseline', 'arms', 'base')
ARM_KEYS = ('label', 'seeds')


def merge(base, overrides):
    """A deep copy of ``base`` with ``overrides`` merged in: nested dicts merge, any other value replaces."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _positive_int(spec, key):
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f'{key}={value!r}: must be a positive integer')
    return value


def load_spec(path, **overrides):
    """Read and check a study file; ``overrides`` (``seeds``, ``iters``, ``val_freq``, ``arms``: a list of arm
    names to keep) replace its values when not None (``seeds`` also replaces the seeds an arm lists itself)."""
    if not osp.isfile(path):
        raise ConfigError(f'{path}: no such study file')
    spec = load_yaml(path, 'study file')
    if not isinstance(spec, dict):
        raise ConfigError(f'{path}: a study file is a mapping with keys {", ".join(STUDY_KEYS)}')
    missing = [k for k in STUDY_KEYS if k not in spec]
    if missing:
        raise ConfigError(f'{path}: missing key {missing[0]!r}')
    if not isinstance(spec['arms'], dict) or not spec['arms']:
        raise ConfigError(f'arms={spec["arms"]!r}: must be a mapping of arm name to overrides')
    if not isinstance(spec['base'], dict):
        raise ConfigError(f'base={spec["base"]!r}: must be a mapping (a BasicSR training options file)')
    spec['custom_imports'] = study_imports(spec, overrides.pop('imports', None) or [])
    for key, value in overrides.items():
        if value is not None and key != 'arms':
            spec[key] = value
    keep = overrides.get('arms')
    if keep:
        unknown = [a for a in keep if a not in spec['arms']]
        if unknown:
            raise ConfigError(f'--arms {unknown[0]}: not an arm of {path} ({", ".join(spec["arms"])})')
        kept = {*keep, spec['baseline'], spec.get('family_arm')}  # the twins' pairs need the family arm's weights
        spec['arms'] = {name: arm for name, arm in spec['arms'].items() if name in kept}
    for key in ('iters', 'val_freq', 'student_depth'):
        _positive_int(spec, key)
    if not isinstance(spec['seeds'], list) or not spec['seeds'] or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in spec['seeds']):
        raise ConfigError(f'seeds={spec["seeds"]!r}: must be a non-empty list of integers')
    if spec['baseline'] not in spec['arms']:
        raise ConfigError(f'baseline={spec["baseline"]!r}: not one of the arms ({", ".join(spec["arms"])})')
    for name, arm in spec['arms'].items():
        plain_name('arm name', name)  # it names the run's folder under --out
        if arm is not None and not isinstance(arm, dict):
            raise ConfigError(f'arms.{name}={arm!r}: must be a mapping of overrides (label, seeds, network_g, ...)')
        arm = spec['arms'][name] = dict(arm or {})
        arm.setdefault('label', name)
        arm.setdefault('seeds', spec['seeds'])
        if overrides.get('seeds') is not None:  # --seeds replaces an arm's own seeds too
            arm['seeds'] = list(overrides['seeds'])
    for i, stage in enumerate(spec.get('schedule') or []):
        if not isinstance(stage, dict) or not isinstance(stage.get('arms'), list) or not isinstance(stage.get('seeds'),
                                                                                                   list):
            raise ConfigError(f'schedule[{i}]: must be a mapping with lists arms and seeds')
        unknown = [a for a in stage['arms'] if a not in spec['arms']]
        if unknown and not keep:
            raise ConfigError(f'schedule[{i}].arms: {unknown[0]!r} is not an arm')
        absent = [(a, s) for a in stage['arms'] if a in spec['arms'] for s in stage['seeds']
                  if s not in spec['arms'][a]['seeds']]
        if absent and overrides.get('seeds') is None:
            raise ConfigError(f'schedule[{i}].seeds: seed {absent[0][1]!r} is not a seed of arm {absent[0][0]!r} '
                              f'({spec["arms"][absent[0][0]]["seeds"]}); the schedule only orders the runs')
    check_arm_options(spec)
    family = spec.get('family_arm')
    if family is not None and (family not in spec['arms'] or len(arm_depths(spec, family)) < 2):
        raise ConfigError(f'family_arm={family!r}: must name an arm whose network has exits '
                          f'({", ".join(spec["arms"])})')
    if not has_student(spec, spec['baseline']):
        raise ConfigError(f'baseline={spec["baseline"]!r}: has no output at student_depth={spec["student_depth"]}')
    return spec


def study_imports(spec, names):
    """The modules every run imports (the study file's ``custom_imports``, ``base.custom_imports``, then ``names``:
    sd-study's ``--import``), imported here first, so that the arms' checks know the user's archs."""
    from sd_plugin.imports import KEY, import_modules, yaml_imports
    modules = []
    for where, group in ((KEY, yaml_imports(spec)), (f'base.{KEY}', yaml_imports(spec['base'], f'base.{KEY}')),
                         ('--import', names)):
        import_modules(group, where)
        modules += [name for name in group if name not in modules]
    return modules


def check_arm_options(spec):
    """Each arm's BasicSR options (``run_options``) pass the plugin's file-free option checks (required keys, types,
    registered types: ``preflight.check_option_values``), and log to TensorBoard, which the report reads: a bad arm
    is refused before any run trains."""
    from sd_plugin.preflight import check_option_values
    for arm, arm_spec in spec['arms'].items():
        seeds = arm_spec['seeds']
        if not isinstance(seeds, list) or not seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f'arms.{arm}.seeds={seeds!r}: must be a non-empty list of integers')
        try:
            opt = run_options(spec, arm, seeds[0], 'init.pth')
        except (KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f'arms.{arm}: base merged with the arm lacks a section the study sets ({err}); base '
                              'is a BasicSR training options file (datasets, network_g, path, train, val, logger)') \
                from None
        try:
            check_option_values(opt, is_train=True)
        except ConfigError as err:
            raise ConfigError(f'arms.{arm} (base + its overrides): {err}') from None
        if opt['logger'].get('use_tb_logger') is not True:
            raise ConfigError(f'arms.{arm}: logger.use_tb_logger={opt["logger"].get("use_tb_logger")!r}; sd-study '
                              'reads its learning curves from the TensorBoard logs, so it must be true')


def arm_depths(spec, arm):
    """The output depths (exits, then the teacher) of an arm's network."""
    from sd_plugin.archs.multi_exit_arch import output_depths
    return output_depths(merge(spec['base'], spec['arms'][arm])['network_g'])


def has_student(spec, arm):
    """True when the arm's network has an output at ``student_depth`` (SRResNet-16 alone has not)."""
    return spec['student_depth'] in arm_depths(spec, arm)


def family_options(spec, arm):
    """The family arm's network_g when ``arm`` is one of its twins (one output, at one of the family's depths),
    else None."""
    family = spec.get('family_arm')
    if family is None or arm == family:
        return None
    depths = arm_depths(spec, arm)
    if len(depths) == 1 and depths[0] in arm_depths(spec, family):
        return merge(spec['base'], spec['arms'][family])['network_g']
    return None


def run_name(arm, seed):
    return f'{arm}_seed{seed}'


def run_options(spec, arm, seed, init_path):
    """The BasicSR option dict of one (arm, seed) run: a constant budget of ``iters``, validation and a checkpoint
    every ``val_freq`` iterations, ``manual_seed`` = seed, initial weights from ``init_path``, and every relative
    data path made absolute (the run's working folder is its own)."""
    overrides = {k: v for k, v in spec['arms'][arm].items() if k not in ARM_KEYS}
    opt = merge(spec['base'], overrides)
    opt['name'] = run_name(arm, seed)
    opt['manual_seed'] = seed
    opt['train']['total_iter'] = spec['iters']
    opt['val']['val_freq'] = spec['val_freq']
    opt['logger']['save_checkpoint_freq'] = spec['val_freq']
    opt['path']['pretrain_network_g'] = init_path
    opt['path']['strict_load_g'] = True
    for dataset in opt['datasets'].values():
        for key in ('dataroot_gt', 'dataroot_lq'):
            if dataset.get(key):
                dataset[key] = osp.abspath(dataset[key])
    if not opt['network_g'].get('exits'):
        opt['train'].pop('self_distill', None)
    if spec.get('custom_imports'):
        opt['custom_imports'] = list(spec['custom_imports'])  # the run's sd-train imports them too
    return opt


def paired_init(network_opt, student_depth, seed, family_opt=None):
    """Initial weights of an arm's network for ``seed`` in which the student's parameters (the stem, units 1..k and
    the head at depth k) are those of the stock student (``MSRResNet(num_block=k)``, or a MultiExitSR's arch at
    depth k: ``student_network_opt``) initialised with ``torch.manual_seed(seed)``; the other parameters are the
    arm's own initialisation with the same seed. A network without an output at depth k (a deeper model trained
    alone) shares the stem and units 1..k. With ``family_opt`` (a multi-exit network_g that has an output at this
    single-output network's depth d), the whole network is the family's initial weights at depth d instead.

    Returns:
        dict: ``{'params': state dict}``, the layout ``path.pretrain_network_g`` loads.
    """
    from sd_plugin.archs.adapters import get_adapter
    from sd_plugin.archs.multi_exit_arch import build_stock, student_network_opt
    from sd_plugin.archs.multi_exit_arch import student_keys as shared_keys
    from sd_plugin.export import student_keys
    from sd_plugin.preflight import build_network
    network_opt = dict(network_opt)
    if family_opt is not None:
        from sd_plugin.archs.multi_exit_arch import output_depths
        family = paired_init(family_opt, student_depth, seed)['params']
        depth = output_depths(network_opt)[-1]
        twin = {name: family[key].clone() for name, key in student_keys(family, depth, family_opt).items()}
        build_network(network_opt).load_state_dict(twin, strict=True)  # the twin's shapes and names, checked
        return {'params': twin}
    student_opt = student_network_opt(network_opt, student_depth)
    torch.manual_seed(seed)
    student = build_stock(student_opt).state_dict()
    torch.manual_seed(seed)
    net = build_network(network_opt)
    state = net.state_dict()
    if student_depth == net.depths[-1]:
        shared = {k: k for k in student}  # the student itself, trained alone
    elif student_depth in net.depths:
        shared = student_keys(state, student_depth)
    else:
        shared = shared_keys(get_adapter(student_opt['type']), state, student_depth, net.depths[-1])
    for name, key in shared.items():
        state[key] = student[name].clone()
    return {'params': state}


def write_yaml(opt, path):
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
