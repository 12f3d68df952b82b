"""Train a humanoid agent whose reward is a vision-language model looking at the rendered frames.

    python experiments/train.py --task kneeling                    # the preset sized for this machine
    python experiments/train.py --preset smoke --task kneeling     # offline, minutes: the whole pipeline
    python experiments/train.py --preset cpu --help                # every option with the preset's value

Presets: smoke, cpu, gpu, tpu, paper (see rewardax.rl.config). Options after the preset override it, e.g.
``--num-envs 64 --ppo.learning-rate 1e-4 --alpha 0.5 --run-dir runs/kneeling``. Re-running with the same
``--run-dir`` resumes from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import tyro

from rewardax.models import CheckpointError, CheckpointNotFoundError
from rewardax.rl.config import TrainConfig, default_preset, presets
from rewardax.rl.trainer import TrainingDiverged, TrainingStalled, train


def main(argv: list[str] | None = None, task: str | None = None) -> dict:
    choices = presets()
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", choices=sorted(choices), default=default_preset())
    known, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    base = choices[known.preset]
    if task is not None:
        base = dataclasses.replace(base, task=task)
    config = tyro.cli(TrainConfig, default=base, args=rest,
                      description=f"{__doc__}\nPreset: {known.preset}.")
    try:
        summary = train(config)
    except TrainingStalled as error:
        # The stuck computation still holds a thread inside XLA: a normal interpreter exit would abort on it.
        print(f"error: {error}", file=sys.stderr, flush=True)
        os._exit(1)
    except (ValueError, CheckpointError, CheckpointNotFoundError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        if isinstance(error, CheckpointNotFoundError) and known.preset != "smoke":
            print("hint: --preset smoke trains with a tiny random CLIP written locally (no download).",
                  file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
