"""Run every (arm, seed) of a study with ``sd-train --auto_resume``, several at a time, so that rerunning the same
command continues a stopped study: finished runs are skipped, interrupted ones resume from their last checkpoint.

Layout under ``out``::

    runs/<arm>_seed<s>/  opt.yml, init.pth (paired initial weights), train.log, experiments/, tb_logger/,
                         seconds.json (the run's running wall time over all its segments: study/elapsed.py),
                         done.json (written last: iterations, wall seconds of every segment, threads)
    students/<arm>_seed<s>.pth   the final student as a stock MSRResNet checkpoint, fp16
"""
import fcntl
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from os import path as osp

from sd_plugin.checkpoint import atomic_save, load_checkpoint
from sd_plugin.errors import ConfigError
from sd_plugin.files import atomic_write
from sd_plugin.processes import Children
from sd_plugin.study.elapsed import wait_counting
from sd_plugin.study.spec import family_options, has_student, paired_init, run_name, run_options, write_yaml
from sd_plugin.threads import RunShares

CHILDREN = Children()  # the training runs in flight: they end with this process (sd_plugin.processes)


def jobs(spec):
    """[(arm, seed)] in the order they run: the study file's ``schedule`` (a list of {arms, seeds} stages, each run
    seed by seed) when it has one, then any (arm, seed) it left out; by default seed by seed, arms in the study
    file's order, so that an interrupted study has complete pairs for its first seeds."""
    order = []
    for stage in spec.get('schedule') or []:
        order += [(arm, seed) for seed in stage['seeds'] for arm in stage['arms']]
    seeds = list(dict.fromkeys([*spec['seeds'], *(s for arm in spec['arms'].values() for s in arm['seeds'])]))
    order += [(arm, seed) for seed in seeds for arm, arm_spec in spec['arms'].items() if seed in arm_spec['seeds']]
    wanted = {(arm, seed) for arm, arm_spec in spec['arms'].items() for seed in arm_spec['seeds']}
    return [job for job in dict.fromkeys(order) if job in wanted]


def run_dir(out, arm, seed):
    return osp.join(out, 'runs', run_name(arm, seed))


def finished(out, arm, seed, iters):
    """The run's done.json (dict) when it has trained at least ``iters`` iterations, else None."""
    done = osp.join(run_dir(out, arm, seed), 'done.json')
    if osp.isfile(done):
        with open(done) as f:
            record = json.load(f)
        if record['iters'] >= iters:
            return record
    return None


def export_student(spec, arm, seed, out):
    """Write the run's final student to ``out/students/<run>.pth``: a stock MSRResNet checkpoint in fp16."""
    from sd_plugin.export import export
    name = run_name(arm, seed)
    ckpt = osp.join(run_dir(out, arm, seed), 'experiments', name, 'models', 'net_g_latest.pth')
    target = osp.join(out, 'students', f'{name}.pth')
    export(ckpt, spec['student_depth'], target, network_opt=run_options(spec, arm, seed, None)['network_g'])
    saved = load_checkpoint(target)
    saved['params'] = {k: v.half() for k, v in saved['params'].items()}
    saved.pop('params_ema', None)
    atomic_save(saved, target)


def write_init(spec, arm, seed, out):
    """Write the run's paired initial weights to ``init.pth`` in its folder, once; returns the path. Not
    thread-safe (it seeds torch's global generator): ``run_study`` writes them all before training starts."""
    init = osp.join(run_dir(out, arm, seed), 'init.pth')
    if not osp.isfile(init):
        network = run_options(spec, arm, seed, init)['network_g']
        atomic_save(paired_init(network, spec['student_depth'], seed, family_options(spec, arm)), init)
    return init


def train_command():
    """The Python code a run's process runs: sd-train, with the folder sd-study runs in last on ``sys.path``, so
    that the run finds the study's ``custom_imports`` where sd-study found them (``sd_plugin.imports``: on
    ``sys.path``, then in the current folder; the run's own is its run folder)."""
    return f'import sys; sys.path.append({os.getcwd()!r}); from sd_plugin.train import main; main()'


def train_one(spec, arm, seed, out, shares, log=print):
    """Train (or resume) one run with its share of the cores (``shares``: a ``sd_plugin.threads.RunShares``);
    returns its done record, or None when another process holds it."""
    folder = run_dir(out, arm, seed)
    os.makedirs(folder, exist_ok=True)
    lock = open(osp.join(folder, '.lock'), 'a+')  # the claim: held while a process (or its child) runs it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip()
        lock.close()
        log(f'{run_name(arm, seed)}: running in another process{f" (pid {holder})" if holder else ""}, skipped')
        return None
    lock.seek(0)
    lock.truncate()
    lock.write(f'{os.getpid()}\n')  # a claim whose processes have all ended is free again: flock ends with them
    lock.flush()
    try:
        record = finished(out, arm, seed, spec['iters'])
        if record:  # another process of the study finished it while this one waited its turn
            return record
        opt = run_options(spec, arm, seed, write_init(spec, arm, seed, out))
        write_yaml(opt, osp.join(folder, 'opt.yml'))
        with shares.run() as (threads, env), open(osp.join(folder, 'train.log'), 'a') as out_log:
            log(f'{run_name(arm, seed)}: training to {spec["iters"]} iterations ({threads["line"]}; '
                f'log: {osp.join(folder, "train.log")})')
            child = CHILDREN.popen([sys.executable, '-c', train_command(), '-opt', 'opt.yml', '--auto_resume'],
                                   cwd=folder, env=env, stdout=out_log,
                                   stderr=subprocess.STDOUT, pass_fds=[lock.fileno()])  # the child keeps the lock
            if child is None:  # the study is stopping
                return None
            try:
                code, seconds = wait_counting(child, folder)
            finally:
                CHILDREN.running.discard(child)
        if CHILDREN.stopping.is_set():
            log(f'{run_name(arm, seed)}: stopped; the next run of the study resumes it')
            return None
        ckpt = osp.join(folder, 'experiments', opt['name'], 'models', 'net_g_latest.pth')
        if code != 0 or not osp.isfile(ckpt):
            raise ConfigError(f'{run_name(arm, seed)}: training failed (exit {code}); see '
                              f'{osp.join(folder, "train.log")}')
        if has_student(spec, arm):
            export_student(spec, arm, seed, out)
        record = {'iters': spec['iters'], 'seconds': seconds, 'threads': threads['threads'],
                  'threads_chosen_by': threads['line']}
        atomic_write(osp.join(folder, 'done.json'), lambda f: json.dump(record, f), mode='w')
        log(f'{run_name(arm, seed)}: done in {record["seconds"] / 60:.1f} min')
        return record
    finally:
        lock.close()


def run_study(spec, out, parallel=1, log=print):
    """Train every unfinished run of ``spec`` under ``out``, ``parallel`` at a time, each with its share of the idle
    cores or the user's OMP_NUM_THREADS (``sd_plugin.threads.RunShares``). Returns the names of the runs that
    failed."""
    out = osp.abspath(out)
    todo = [(arm, seed) for arm, seed in jobs(spec) if not finished(out, arm, seed, spec['iters'])]
    log(f'{spec["name"]}: {len(jobs(spec)) - len(todo)} of {len(jobs(spec))} runs finished, {len(todo)} to go')
    shares = RunShares(parallel)
    failures = []

    def work(job):
        if CHILDREN.stopping.is_set():
            return
        try:
            train_one(spec, *job, out, shares, log)
        except ConfigError as err:
            log(str(err))
            failures.append(run_name(*job))

    for job in todo:
        write_init(spec, *job, out)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(work, todo))
    return failures
