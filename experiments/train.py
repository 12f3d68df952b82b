"""Train a humanoid agent whose reward is a vision-language model looking at the rendered frames.

    python experiments/train.py --task kneeling                    # the preset sized for this machine
    python experiments/train.py --preset smoke --task kneeling     # offline, minutes: the whole pipeline
    python experiments/train.py --preset cpu --help                # every option with the preset's value

Presets size the run for a machine: smoke, cpu, gpu, tpu, paper, learning (see rewardax.train.config); the
task (a humanoid pose, cartpole or mountaincar) brings its env family's PPO settings. Options after the preset
override it, e.g. ``--num-envs 64 --ppo.learning-rate 1e-4 --run-dir runs/kneeling``. The reward model is a
subcommand that comes last, with its own options after it: ``reward:clip --reward.alpha 0.5``, ``reward:clip
--reward.checkpoint random`` (offline), ``reward:yes-token --reward.mode pairwise`` (a generative VLM's
P("yes")), ``reward:oracle`` or ``reward:dense`` (the task's ground truth). ``--train-reward`` (yes-token only)
trains the reward model inside the step from a simulated teacher (``--reward-learning.*``). Re-running with the
same ``--run-dir`` resumes from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from typing import Callable

import jax
import tyro

from rewardax import cli, distributed
from rewardax.models import CheckpointNotFoundError
from rewardax.train import TrainConfig, TrainingStalled, default_preset, presets, train
from rewardax.rewards import RewardConfig
from rewardax.train.config import PRESET_NAMES


def parse(argv: list[str], task: str | None = None,
          reward: Callable[[str], RewardConfig] | None = None) -> tuple[TrainConfig, str]:
    """``(config, preset)`` from ``argv`` over the preset for the task: the preset sizes the run for the
    machine, the task (``--task``, or a script's ``task``) brings its env family's PPO settings, ``reward(preset)``
    replaces the preset's reward model, and every option given overrides them."""
    parser = cli.ArgumentParser(add_help=False)
    parser.add_argument("--preset", choices=PRESET_NAMES)
    parser.add_argument("--task", default=task or TrainConfig.task)
    known, rest = parser.parse_known_args(argv)
    # A multi-process job is joined before anything asks JAX for devices (the presets do).
    distributed.initialize(required="--distributed" in rest)
    preset = known.preset or default_preset()
    base = presets(known.task)[preset]
    if reward is not None:
        base = dataclasses.replace(base, reward=reward(preset))
    config = tyro.cli(TrainConfig, default=base, args=rest, description=f"{__doc__}\nPreset: {preset}.")
    return config, preset


def main(argv: list[str] | None = None, task: str | None = None,
         reward: Callable[[str], RewardConfig] | None = None) -> dict:
    """Parse ``argv`` (`parse`) and train."""
    argv = sys.argv[1:] if argv is None else argv
    preset = None
    try:
        config, preset = parse(argv, task, reward)
        summary = train(config)
    except TrainingStalled as error:
        # The stuck computation still holds a thread inside XLA: a normal interpreter exit would abort on it.
        print(f"error: {error}", file=sys.stderr, flush=True)
        os._exit(1)
    except cli.user_errors() as error:  # a user's mistake or a documented failure: one line
        print(f"error: {error}", file=sys.stderr)
        if isinstance(error, CheckpointNotFoundError) and preset not in (None, "smoke"):
            print("hint: --preset smoke trains with a tiny random CLIP written locally (no download).",
                  file=sys.stderr)
        _exit(1)
    except Exception:
        if jax.process_count() == 1:
            raise
        traceback.print_exc()
        _exit(1)
    print(json.dumps(summary))
    return summary


def _exit(code: int):
    """Exit; in a multi-process job at once: a normal exit waits (minutes) at JAX's shutdown barrier for the
    other processes, which may be the ones that failed. They stop too: their next collective fails."""
    if jax.process_count() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    cli.run(main)
