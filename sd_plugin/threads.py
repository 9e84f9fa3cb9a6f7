"""How many torch CPU threads a command uses: the one choice every command (sd-train, sd-test, the launchers,
sd-quickstart, sd-study's runs, sd-eval, sd-upscale, sd-compare) makes at its start with ``apply_threads``.

PyTorch takes one thread per core. When another program keeps a core busy, every parallel region waits for the
thread stuck on that core: on 2 cores with one busy, 2 threads made a training step several times slower than 1.
So, unless the user said otherwise, a command counts the cores that are idle when it starts and uses that many.

Who decides, first match wins (``apply_threads``):

1. an explicit ``--threads N`` of the command;
2. a ``torch.set_num_threads(N)`` the caller made before calling the command in-process (seen as a count other
   than torch's default at import and other than the last count ``apply_threads`` set);
3. ``OMP_NUM_THREADS`` in the environment (torch already read it at import; it is applied again here);
4. otherwise ``auto``: the cores this process may use (``os.sched_getaffinity``) that were idle over 0.2 s
   (``/proc/stat``; the process sleeps meanwhile, so it does not count itself), rounded, at least 1 and at most
   torch's default (``TORCH_DEFAULT``). Without ``/proc/stat``: torch's default.

The decision is made once, at the start of a command: a core that becomes busy an hour into a training run is not
noticed (measuring idle cores while the run itself and its data-loader workers load them would need telling their
load from other programs'). The environment is not changed: a command's child processes that should follow the
choice get it explicitly (``sd-study`` passes ``OMP_NUM_THREADS`` to each run).
"""
import contextlib
import os
import threading
import time

import torch

from sd_plugin.errors import ConfigError

AUTO = 'auto'
TORCH_DEFAULT = torch.get_num_threads()  # torch's count at import (one per core, or OMP_NUM_THREADS): auto's cap
IDLE_INTERVAL = 0.2  # seconds over which the idle cores are counted
_last_applied = None  # the count apply_threads set last (so a later call does not take it for the user's)


def parse_threads(text):
    """A ``--threads`` value: 'auto' or a positive integer (int or text); ConfigError naming the value otherwise."""
    if text == AUTO:
        return AUTO
    if isinstance(text, bool):
        value = 0
    else:
        try:
            value = int(text)
        except (TypeError, ValueError):
            value = 0
    if value < 1:
        raise ConfigError(f'--threads {text}: must be a positive integer, or auto')
    return value


def env_threads(environ=None):
    """The thread count ``OMP_NUM_THREADS`` asks for (its first entry, as OpenMP reads a list), or None when it is
    not set; ConfigError for a value that is not a positive integer."""
    text = (os.environ if environ is None else environ).get('OMP_NUM_THREADS', '').strip()
    if not text:
        return None
    first = text.split(',')[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise ConfigError(f'OMP_NUM_THREADS={text!r}: must be a positive integer')
    return int(first)


def usable_cpus():
    """Indices of the CPUs this process may run on (None where the platform cannot say)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None


def idle_cores(interval=IDLE_INTERVAL):
    """(idle, cores): how many of the usable CPUs were idle over the next ``interval`` seconds (a float: the sum of
    each CPU's idle share, idle + iowait jiffies over all jiffies) and how many there are. The process sleeps
    meanwhile. Raises OSError / ValueError where ``/proc/stat`` cannot be read."""
    cpus = usable_cpus()
    before = _cpu_times(cpus)
    time.sleep(interval)
    after = _cpu_times(cpus)
    idle = sum((after[c][0] - before[c][0]) / max(1, after[c][1] - before[c][1]) for c in after if c in before)
    return idle, len(after)


def auto_threads(interval=IDLE_INTERVAL, most=None):
    """(threads, idle, cores): the idle cores rounded, at least 1 and at most ``most`` (default ``TORCH_DEFAULT``);
    idle and cores are None where ``/proc/stat`` cannot be read (threads is then ``most``)."""
    most = most or TORCH_DEFAULT
    try:
        idle, cores = idle_cores(interval)
    except (OSError, ValueError, IndexError):
        return most, None, None
    return max(1, min(most, round(idle))), idle, cores


def choose_threads(threads=AUTO, interval=IDLE_INTERVAL):
    """The number of torch CPU threads for ``threads``: None: torch's current setting; an int >= 1: that; 'auto':
    ``auto_threads``. ConfigError for anything else. (Chooses only; ``apply_threads`` also sets and logs.)"""
    if threads is None:
        return torch.get_num_threads()
    if threads == AUTO:
        return auto_threads(interval)[0]
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f'--threads {threads!r}: must be a positive integer or auto')
    return threads


def user_set_threads():
    """torch's current count when the caller set it with ``torch.set_num_threads`` (it differs from torch's default
    at import and from what ``apply_threads`` set last), else None."""
    now = torch.get_num_threads()
    return None if now in (TORCH_DEFAULT, _last_applied) else now


def decide_threads(requested=AUTO, interval=IDLE_INTERVAL, environ=None):
    """The choice ``apply_threads`` makes, without making it: a dict with ``threads`` (int), ``source``
    ('--threads', 'torch.set_num_threads', 'OMP_NUM_THREADS' or 'auto'), ``idle`` (float or None: the idle cores
    measured, auto only), ``cores`` (int or None: the usable CPUs) and ``line``, the one-line description: "2 threads
    (2 idle cores of 2)", "1 thread (OMP_NUM_THREADS=1)", "1 thread (--threads 1)"."""
    requested = AUTO if requested is None else parse_threads(requested)
    cpus = usable_cpus()
    cores = len(cpus) if cpus else os.cpu_count()
    idle = None
    if requested != AUTO:
        threads, source, why = requested, '--threads', f'--threads {requested}'
    elif user_set_threads() is not None:
        threads = user_set_threads()
        source, why = 'torch.set_num_threads', f'torch.set_num_threads({threads}) before the command'
    elif env_threads(environ) is not None:
        threads = env_threads(environ)
        source, why = 'OMP_NUM_THREADS', f'OMP_NUM_THREADS={threads}'
    else:
        threads, idle, measured = auto_threads(interval)
        source = AUTO
        if idle is None:
            why = "torch's default: idle cores unknown"
        else:
            cores = measured
            why = f'{round(idle)} idle core{"s" if round(idle) != 1 else ""} of {cores}'
    return {'threads': threads, 'source': source, 'idle': None if idle is None else round(idle, 2), 'cores': cores,
            'line': f'{threads} thread{"s" if threads != 1 else ""} ({why})'}


def apply_threads(requested=AUTO, log=print, prog=None, interval=IDLE_INTERVAL, environ=None):
    """Decide (``decide_threads``) and set torch's intra-op thread count, and log the choice in one line.

    Args:
        requested (int | str | None): a command's ``--threads`` value: a positive integer (wins), or 'auto' / None
            (the caller's torch.set_num_threads, then OMP_NUM_THREADS, then the idle cores).
        log (callable | None): called with the line, e.g. ``print`` or ``logger.info``; None: silent.
        prog (str | None): prefixed to the line as ``prog: ``.
    Returns:
        dict: the decision (``threads``, ``source``, ``idle``, ``cores``, ``line``); also kept in ``CHOICE``.
    """
    global _last_applied, CHOICE
    choice = decide_threads(requested, interval, environ)
    if torch.get_num_threads() != choice['threads']:
        torch.set_num_threads(choice['threads'])
    _last_applied = choice['threads']
    CHOICE = choice
    if log is not None:
        log(f'{prog}: {choice["line"]}' if prog else choice['line'])
    return choice


CHOICE = None  # the last apply_threads decision (a launcher logs it again into BasicSR's log file)


class RunShares:
    """Threads for training runs started side by side by one process (``sd-study --parallel P``): each run gets its
    share of the idle cores, decided when it starts, and passes it to its process as ``OMP_NUM_THREADS``.

    A run's share is ``(idle cores now + threads held by this study's runs in flight) // P``, at least 1 and at most
    ``TORCH_DEFAULT``: the cores measured idle plus those the study's own runs hold, divided among P runs (rounded
    down: an oversubscribed core costs far more than an unused one). A user's ``OMP_NUM_THREADS`` wins: every run gets
    it, and the environment is passed on unchanged.
    """

    def __init__(self, parallel, interval=IDLE_INTERVAL, environ=None):
        self.parallel, self.interval = parallel, interval
        self.environ = dict(os.environ if environ is None else environ)
        self.held = 0
        self._lock = threading.Lock()

    def decide(self):
        """The decision for the next run (``decide_threads``' dict; ``source`` 'OMP_NUM_THREADS' or 'auto')."""
        user = env_threads(self.environ)
        if user is not None:
            return {'threads': user, 'source': 'OMP_NUM_THREADS', 'idle': None, 'cores': None,
                    'line': f'{user} thread{"s" if user != 1 else ""} (OMP_NUM_THREADS={user})'}
        try:
            idle, cores = idle_cores(self.interval)
        except (OSError, ValueError, IndexError):
            idle, cores = None, None
        free = TORCH_DEFAULT if idle is None else round(idle) + self.held
        threads = max(1, min(TORCH_DEFAULT, free // self.parallel))
        why = ("torch's default: idle cores unknown" if idle is None else
               f'{round(idle)} idle of {cores} cores + {self.held} held by this study\'s runs, // --parallel '
               f'{self.parallel}')
        return {'threads': threads, 'source': 'auto', 'idle': None if idle is None else round(idle, 2),
                'cores': cores, 'line': f'{threads} thread{"s" if threads != 1 else ""} ({why})'}

    @contextlib.contextmanager
    def run(self):
        """Yields (decision, environment for the run's process); the run holds its threads until the block ends."""
        with self._lock:
            choice = self.decide()
            self.held += choice['threads']
        env = dict(self.environ)
        if choice['source'] != 'OMP_NUM_THREADS':
            env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(choice['threads'])
        try:
            yield choice, env
        finally:
            with self._lock:
                self.held -= choice['threads']


def _cpu_times(cpus):
    """{cpu index: (idle jiffies incl. iowait, total jiffies)} from /proc/stat, for ``cpus`` (None: every CPU)."""
    times = {}
    with open('/proc/stat') as f:
        for line in f:
            name, *fields = line.split()
            if not name.startswith('cpu') or name == 'cpu':
                continue
            index = int(name[3:])
            if cpus is None or index in cpus:
                values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                times[index] = (values[3] + values[4], sum(values))
    if not times:
        raise ValueError('no CPU lines in /proc/stat')
    return times
