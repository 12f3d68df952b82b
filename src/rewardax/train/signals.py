"""SIGTERM/SIGINT (preemptible TPU VMs, Ctrl-C): finish the iteration, save, return; a second one exits at once."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Callable


class StopOnSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each iteration; a second signal, for a run that
    does not finish its iteration (a hang, an impatient Ctrl-C), ends the process at once.

    ``kept()`` names the checkpoint that survives that exit.
    """

    def __init__(self, kept: Callable[[], str]):
        self.kept = kept

    def __enter__(self):
        self.received = None
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received:
            print(f"second {name}: exiting now without saving; {self.kept()}", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.received = name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
