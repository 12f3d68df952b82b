"""Command-line entry points answer a user's mistake with one line and exit status 1; a bug keeps its traceback.

    if __name__ == "__main__":
        cli.run(main)                       # main parses sys.argv (argparse through cli.ArgumentParser, or tyro)

A mistake is what the library raises for input it rejects (`user_errors`): a ValueError (a bad option, a
malformed reward spec, a damaged dataset or checkpoint: `rewardax.models.CheckpointError`,
`rewardax.train.CheckpointMismatch`, `rewardax.labelled_frames.DatasetError`, `UsageError`), a FileNotFoundError
(`rewardax.models.CheckpointNotFoundError`), and the trainer's `CheckpointCorrupt`, `TrainingDiverged`,
`ProcessLost` and `TrainingStalled`. It is printed as ``error: <message>`` on stderr, with nothing else.
Importing this module imports neither JAX nor the rest of rewardax: the trainer's error classes are looked up
only once an exception has reached an entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Callable, NoReturn


class UsageError(ValueError):
    """A command line that cannot be parsed (the message says which option and what it accepts)."""


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose usage errors raise `UsageError` (one line through `run`) instead of
    printing the usage and exiting with status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean a user's mistake or a run's documented failure, not a bug."""
    errors: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)
    if "rewardax.train" in sys.modules:  # only a program that trained can have raised the trainer's errors
        from rewardax.train import CheckpointCorrupt, ProcessLost, TrainingDiverged, TrainingStalled

        errors += (CheckpointCorrupt, ProcessLost, TrainingDiverged, TrainingStalled)
    return errors


def run(main: Callable[..., object], *args, **kwargs) -> None:
    """Call ``main(*args, **kwargs)`` as a program: a user error (`user_errors`) prints ``error: <message>`` on
    stderr and exits with status 1; any other exception propagates with its traceback."""
    try:
        with _tyro_rejections_raised():
            main(*args, **kwargs)
    except Exception as error:
        if not isinstance(error, user_errors()):
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        train = sys.modules.get("rewardax.train")
        if train is not None and isinstance(error, train.TrainingStalled):
            os._exit(1)  # the stuck computation still holds a thread inside XLA: a normal exit would abort on it
        sys.exit(1)


def _tyro_rejections_raised():
    """A value that a config's own checks reject while tyro builds it (e.g. ``--num-envs 0``) raises `UsageError`
    with the check's message, instead of tyro's boxed message and status 2. Syntax errors (an unknown option,
    a value of the wrong type) keep tyro's box, which lists the options. The hook is tyro's experimental
    ``tyro._errors.on_parse_error``; without it, tyro's box is what the user sees."""
    errors = getattr(sys.modules.get("tyro"), "_errors", None)  # a program parsing with tyro has imported it
    if not (hasattr(errors, "on_parse_error") and hasattr(errors, "InstantiationFailure")):
        return contextlib.nullcontext()

    def hook(event) -> None:
        if isinstance(event, errors.InstantiationFailure):
            raise UsageError(event.message)

    return errors.on_parse_error(hook)
