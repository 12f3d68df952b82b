"""Runs each training iteration off the main thread under a time limit, so a hung one fails loudly.

    watch = Watchdog(config, on_stall=lambda: "the last checkpoint (iteration 2) is kept")
    result = watch(lambda: jax.block_until_ready(train_step(state, batch, labels, reward)), "iteration 3",
                   run_dir / "stall-3.txt")

A computation can hang inside C++ (a deadlocked kernel, a lost collective) at 0% CPU. If the main thread
waited on it, it would never run Python again: no error, and signal handlers never run (Python runs them
between bytecodes of the main thread), so only SIGKILL ends the process. Here the work runs in a daemon
thread (one that cannot hold up the interpreter's exit) while the main thread polls it, so signals are
handled within `POLL_S`. Past the limit, the Python and native stacks of every thread are written to a file
and to stderr, and `TrainingStalled` is raised.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")

POLL_S = 0.1
GDB_TIMEOUT_S = 60


class TrainingStalled(RuntimeError):
    """An iteration ran far past its time limit (a hang); every thread's stacks are in the file it names."""


class Watchdog:
    """Runs calls of one kind of work (training iterations, or evaluations) under a time limit each.

    The first call, which compiles, may take ``config.watchdog_first_s``; later ones
    max(``config.watchdog_min_s``, ``config.watchdog_factor`` × the median duration of the calls before).
    A zero first limit or factor disables that limit. ``on_stall()`` is called on a stall and names the
    checkpoint that is kept, for the error message.
    """

    def __init__(self, config, on_stall: Callable[[], str]):
        self.config, self.on_stall, self.durations = config, on_stall, []

    def _limit(self) -> tuple[float, str]:
        """The limit for the next call (0: none) and how it was chosen."""
        c = self.config
        if not self.durations:
            return c.watchdog_first_s, "watchdog_first_s; the first call compiles"
        median = statistics.median(self.durations)
        limit = max(c.watchdog_min_s, c.watchdog_factor * median) if c.watchdog_factor else 0.0
        return limit, (f"max(watchdog_min_s={c.watchdog_min_s:g}, watchdog_factor={c.watchdog_factor:g} × the median "
                       f"{median:.3g} s so far)")

    def __call__(self, work: Callable[[], T], label: str, dump: pathlib.Path) -> T:
        """``work()``'s result (or its exception, unchanged); `TrainingStalled` if it runs past the limit."""
        limit, why = self._limit()
        outcome = {}

        def run():
            try:
                outcome["value"] = work()
            except BaseException as error:  # re-raised in the main thread
                outcome["error"] = error

        began = time.perf_counter()
        thread = threading.Thread(target=run, name=label, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(POLL_S)
            waited = time.perf_counter() - began
            if limit and waited > limit and thread.is_alive():
                _dump_stacks(dump, f"{label}: no result after {waited:.1f} s (limit {limit:g} s, {why})")
                raise TrainingStalled(
                    f"{label} stalled: no result after {waited:.1f} s, past its limit of {limit:g} s ({why}). "
                    f"The Python and native stacks of every thread are in {dump}; {self.on_stall()}. A hang at "
                    f"0% CPU is a deadlock; a run that is only slow can raise the watchdog_* settings (0 disables).")
        if "error" in outcome:
            raise outcome["error"]
        self.durations.append(time.perf_counter() - began)
        return outcome["value"]


def _dump_stacks(path: pathlib.Path, header: str) -> None:
    """Every thread's Python and native stacks to ``path`` and to stderr."""
    path.parent.mkdir(parents=True, exist_ok=True)  # other processes of a multi-host run did not create it
    with open(path, "w") as out:
        out.write(f"{header}\n\nPython stacks:\n")
        out.flush()  # faulthandler and gdb write to the file descriptor, past Python's buffer
        faulthandler.dump_traceback(out, all_threads=True)
        out.write("\nNative stacks:\n")
        out.flush()
        _native_stacks(out)
    sys.stderr.write(path.read_text())
    sys.stderr.flush()


def _native_stacks(out) -> None:
    """Every thread's C/C++ stack (where a hung kernel or lock shows), from gdb attached to this process.

    gdb stops this process while it reads the stacks, so it writes to the file (a pipe we read would fill up
    and block it) and coreutils' ``timeout`` bounds it (a timeout of ours would be stopped too).
    """
    if not (shutil.which("gdb") and shutil.which("timeout")):
        out.write("native stacks need gdb and timeout on PATH (e.g. apt-get install gdb)\n")
        return
    if sys.platform == "linux":
        # Yama's default policy (Ubuntu: ptrace_scope 1) lets a process attach only to its descendants, and
        # gdb is our child: allow it (PR_SET_PTRACER, PR_SET_PTRACER_ANY; a no-op without Yama).
        ctypes.CDLL(None).prctl(0x59616D61, ctypes.c_ulong(-1), 0, 0, 0)
    gdb = subprocess.run(["timeout", "-s", "KILL", str(GDB_TIMEOUT_S), "gdb", "-nx", "-batch", "-p", str(os.getpid()),
                          "-ex", "thread apply all bt"], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    if gdb.returncode == 128 + signal.SIGKILL:  # killed by timeout; its tracee, this process, then runs on
        out.write(f"\ngdb did not finish within {GDB_TIMEOUT_S} s\n")
