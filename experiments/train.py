"""Train a humanoid agent whose reward is a vision-language model looking at the rendered frames.

    python experiments/train.py --task kneeling                    # the preset sized for this machine
    python experiments/train.py --preset smoke --task kneeling     # offline, minutes: the whole pipeline
    python experiments/train.py --preset cpu --help                # every option with the preset's value

Presets size the run for a machine: smoke, cpu, gpu, tpu, paper, learning, offline (see rewardax.train.config); the
task (a humanoid pose, cartpole or mountaincar) brings its env family's PPO settings. Options after the preset
override it, e.g. ``--num-envs 64 --ppo.learning-rate 1e-4 --run-dir runs/kneeling``. The reward model is a
subcommand that comes last, with its own options after it: ``reward:clip --reward.alpha 0.5``, ``reward:clip
--reward.checkpoint random`` (offline), ``reward:yes-token --reward.mode pairwise`` (a generative VLM's
P("yes")), ``reward:oracle`` or ``reward:dense`` (the task's ground truth). ``--train-reward`` (yes-token only)
trains the reward model inside the step from a simulated teacher (``--reward-learning.*``). Re-running with the
same ``--run-dir`` resumes from its latest checkpoint.

When the preset's pretrained weights cannot be found (no network, nothing cached) and the command does not name
its reward model, the run falls back, with a banner, to the ``offline`` preset: a humanoid learning to kneel from
its dense ground truth (config.json records why in ``fallback``). A reward model named on the command line
(``reward:clip --reward.checkpoint ...``) that cannot be found stays an error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
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


def parse(argv: list[str], task: str | None = None, reward: Callable[[str], RewardConfig] | None = None,
          preset: str | None = None) -> tuple[TrainConfig, str]:
    """``(config, preset)`` from ``argv`` over the preset for the task: the preset (``preset`` if given, as the
    offline fall-back does; else ``--preset``; else the machine's) sizes the run, the task (``--task``, or a
    script's ``task``) brings its env family's PPO settings, ``reward(preset)`` replaces the preset's reward model, and every option given overrides them."""
    parser = cli.ArgumentParser(add_help=False)
    parser.add_argument("--preset", choices=PRESET_NAMES)
    parser.add_argument("--task", default=task or TrainConfig.task)
    known, rest = parser.parse_known_args(argv)
    # A multi-process job is joined before anything asks JAX for devices (the presets do).
    distributed.initialize(required="--distributed" in rest)
    preset = preset or known.preset or default_preset()
    base = presets(known.task)[preset]
    if reward is not None and preset != "offline":
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
        try:
            summary = train(config)
        except CheckpointNotFoundError as missing:
            if preset in ("smoke", "offline") or chose_reward(argv):
                raise
            # No pretrained weights (offline, nothing cached): run what learns without them, and say so loudly.
            config, preset = parse(argv, task, reward, preset="offline")
            config = dataclasses.replace(config, fallback=f"{missing}".splitlines()[0])
            banner(config)
            summary = train(config)
    except TrainingStalled as error:
        # The stuck computation still holds a thread inside XLA: a normal interpreter exit would abort on it.
        print(f"error: {error}", file=sys.stderr, flush=True)
        os._exit(1)
    except cli.user_errors() as error:  # a user's mistake or a documented failure: one line
        print(f"error: {error}", file=sys.stderr)
        if isinstance(error, CheckpointNotFoundError) and preset not in (None, "smoke"):
            print("hint: without downloads, --preset offline learns a humanoid pose from its ground truth, and "
                  "--preset smoke checks the pipeline with a tiny random CLIP written locally.", file=sys.stderr)
        _exit(1)
    except Exception:
        if jax.process_count() == 1:
            raise
        traceback.print_exc()
        _exit(1)
    if jax.process_index() == 0:
        print(what_next(summary))
    print(json.dumps(summary))
    return summary


def chose_reward(argv: list[str]) -> bool:
    """Whether the command names its reward model (``reward:...`` or a ``--reward.`` option): weights it asked
    for by name that cannot be found are an error, not a reason to fall back."""
    return any(arg.startswith(("reward:", "--reward.")) for arg in argv)


def banner(config: TrainConfig) -> None:
    """The offline fall-back announces itself: what could not be found, what runs instead, how to get the real run."""
    rule = "=" * 100
    print(f"{rule}\nNO PRETRAINED WEIGHTS: {config.fallback}\n"
          f"Running the offline fall-back instead (--preset offline): {config.task} learned from its dense "
          f"ground-truth reward, {config.num_envs} envs, {config.iterations} iterations (about a quarter hour on "
          f"2 CPU cores, minutes on an accelerator). No VLM scores it: that needs the weights. With the hub "
          f"reachable or the weights cached (HF_HOME), the same command trains what it names; to stop here instead, "
          f"name the reward model (e.g. reward:clip --reward.checkpoint <hub id or directory>).\n{rule}",
          file=sys.stderr, flush=True)


def what_next(summary: dict) -> str:
    """Where the run is, what it reached, and how to watch, resume or extend it."""
    run_dir = pathlib.Path(summary["run_dir"])
    metrics = summary["metrics"]
    lines = [f"run directory: {run_dir} ({summary['stopped']} after {summary['iterations']} iterations)"]
    if "eval/success" in metrics:
        lines.append(f"evaluation: the policy's mean action reached the pose (oracle success) in "
                     f"{metrics['eval/success']:.0%} of episodes")
    if "best" in summary:
        best = summary["best"]
        lines.append(f"best evaluation: {best['success']:.0%} at iteration {best['iteration']}, kept in "
                     f"{run_dir / 'best'} (rewardax.train.load_agent(run_dir, which='best'))")
    videos = sorted((run_dir / "videos").glob("*.mp4"))
    if videos:
        lines.append(f"video of the last evaluation: {videos[-1]}")
    if "learning_curve" in summary:
        lines.append(f"learning curve: {summary['learning_curve']}")
    lines += [f"watch it: tensorboard --logdir {run_dir / 'tb'}",
              f"resume it (after a stop) or extend it: the same command with --run-dir {run_dir} "
              f"(and --iterations N to go on to iteration N)"]
    return "\n".join(lines)


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
