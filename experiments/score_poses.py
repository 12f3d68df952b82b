"""Score frames with CLIP: render the eight canonical poses and reward each against every task's prompts.

Prints a table (rows: task prompts; columns: rendered poses) of the VLM-RM goal–baseline reward. With a real
CLIP the best column of each row should be its own pose; with the tiny random checkpoint (``--clip random``,
offline) the numbers are meaningless but every step of the pipeline runs.

    python experiments/score_poses.py --clip random
    python experiments/score_poses.py --clip openai/clip-vit-base-patch32 --alpha 0.5
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from mujoco import mjx

import rewardax.envs as envs
from rewardax import cli
from rewardax.envs.tasks import pose_data
from rewardax.models import load_clip, write_random_clip
from rewardax.rewards import ClipReward


@dataclasses.dataclass(frozen=True)
class Args:
    clip: str = "random"
    """CLIP checkpoint: a Hugging Face hub id, a local directory, an open_clip file, or "random" (tiny, offline)."""
    alpha: float = 0.0
    """Goal-baseline regularisation strength in [0, 1] (0: cosine similarity to the goal prompt)."""
    look: str = "paper"
    """Scene look of the rendered poses."""
    size: int = 224
    """Rendered frame side in pixels (frames are resized to the model's input size)."""


def score_poses(args: Args) -> dict[str, dict[str, float]]:
    """{task prompt's task: {pose's task: reward}}."""
    with tempfile.TemporaryDirectory() as tmp:
        source = write_random_clip(pathlib.Path(tmp) / "tiny-random-clip") if args.clip == "random" else args.clip
        model, tokenizer = load_clip(source)
    env = envs.make("splits", look=args.look)
    poses = [mjx.put_data(env.mj_model, pose_data(task, env.mj_model)) for task in envs.TASKS.values()]
    frames = jax.jit(env.renderer(args.size, args.size))(jax.tree.map(lambda *x: jnp.stack(x), *poses)).rgb
    table = {}
    for name, task in envs.TASKS.items():
        reward = ClipReward.create(model, tokenizer, task.goal, task.baseline, args.alpha)
        values, _ = jax.jit(lambda r, f: r(f, None))(reward, frames)
        table[name] = dict(zip(envs.TASKS, np.asarray(values).round(4).tolist()))
    return table


def main(args: Args) -> None:
    table = score_poses(args)
    names = list(envs.TASKS)
    print("reward of each task's prompts (rows) for each rendered pose (columns)")
    print(" " * 14 + "".join(f"{n[:12]:>13}" for n in names))
    for row in names:
        print(f"{row[:13]:<14}" + "".join(f"{table[row][col]:13.4f}" for col in names))
    hits = sum(max(table[row], key=table[row].get) == row for row in names)
    print(json.dumps(dict(clip=args.clip, alpha=args.alpha, own_pose_scores_highest=f"{hits}/{len(names)}")))


if __name__ == "__main__":
    cli.run(lambda: main(tyro.cli(Args)))
