"""Child processes that end with the process that started them (``sd-study``'s training runs).

Two guards, so that no training run is left behind with PPID 1, holding its run's claim:
  * ``die_with_parent`` (a ``preexec_fn``): on Linux the kernel sends the child SIGTERM when its parent ends, however
    it ends, SIGKILL included (``prctl(PR_SET_PDEATHSIG)``);
  * ``Children``: the parent's register of the children it started; ``stop()`` (called from the parent's SIGTERM or
    SIGINT handler) sends each one SIGTERM and tells the parent to start no more.
"""
import ctypes
import os
import signal
import subprocess
import sys
import threading

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent=None):
    """A ``preexec_fn`` for ``subprocess.Popen``: in the child, before it runs, ask Linux to send it SIGTERM when the
    parent ends (elsewhere: nothing). ``parent``: the parent's pid, given when the ``preexec_fn`` is made with
    ``functools.partial``; a child whose parent has already gone exits at once."""
    if not sys.platform.startswith('linux'):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if parent is not None and os.getppid() != parent:  # the parent ended before prctl took effect
        os._exit(1)


class Children:
    """The children a process starts (``popen``) and can stop all at once (``stop``), e.g. from a signal handler.

    ``stopping`` is set by ``stop``: the caller checks it before starting more work."""

    def __init__(self):
        self.running, self.stopping, self.lock = set(), threading.Event(), threading.Lock()

    def popen(self, args, **kwargs):
        """``subprocess.Popen(args, **kwargs)`` for a child that ends with this process (``die_with_parent``),
        registered until it has been waited for (``wait``). None when ``stop`` has been called."""
        with self.lock:
            if self.stopping.is_set():
                return None
            parent = os.getpid()
            child = subprocess.Popen(args, preexec_fn=lambda: die_with_parent(parent), **kwargs)
            self.running.add(child)
            return child

    def wait(self, child):
        """``child.wait()``, then forget it; returns its exit status."""
        try:
            return child.wait()
        finally:
            with self.lock:
                self.running.discard(child)

    def stop(self):
        """Start no more children and send SIGTERM to every running one. Safe in a signal handler."""
        self.stopping.set()
        for child in list(self.running):
            if child.poll() is None:
                child.terminate()
