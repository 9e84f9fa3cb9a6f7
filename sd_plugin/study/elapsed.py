"""Wall time of a study run over all its segments: a run that was stopped and resumed (``--auto_resume``) trains in
several processes, and its time is the sum of theirs.

The runner waits on each training process with ``wait_counting``, which keeps the run's running total in
``<run folder>/seconds.json`` (``{"seconds": float}``), rewritten every ``EVERY`` seconds and when the process ends.
A study killed outright loses at most the last ``EVERY`` seconds of the interrupted segment. A run folder written
before this file existed starts its total at 0 when it resumes.
"""
import json
import subprocess
import time
from os import path as osp

from sd_plugin.files import atomic_write

FILE = 'seconds.json'
EVERY = 30.  # seconds between updates of the running total


def earlier_seconds(folder):
    """Seconds the run's earlier segments trained (0 when none was recorded)."""
    path = osp.join(folder, FILE)
    if not osp.isfile(path):
        return 0.
    try:
        with open(path) as f:
            return float(json.load(f)['seconds'])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.


def wait_counting(process, folder, every=EVERY):
    """Wait for ``process`` (a ``subprocess.Popen``), adding its wall time to the run's total in ``folder``.
    Returns (exit code, total seconds of every segment, this one included)."""
    before, start = earlier_seconds(folder), time.time()

    def save():
        total = before + time.time() - start
        atomic_write(osp.join(folder, FILE), lambda f: json.dump({'seconds': total}, f), mode='w')
        return total

    while True:
        try:
            code = process.wait(timeout=every)
            break
        except subprocess.TimeoutExpired:
            save()
    return code, save()
