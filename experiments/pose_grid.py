"""Render the eight tasks' canonical poses in both looks into one PNG grid (rows: looks; columns: tasks).

    python experiments/pose_grid.py --out docs/pose_grid.png --size 160
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from mujoco import mjx
from PIL import Image, ImageDraw

import rewardax.envs as envs
from rewardax import cli
from rewardax.envs.tasks import pose_data


@dataclasses.dataclass(frozen=True)
class Args:
    out: pathlib.Path = pathlib.Path("outputs/pose_grid.png")
    """Where to write the PNG."""
    size: int = 224
    """Side of each rendered frame in pixels."""


def pose_grid(size: int) -> np.ndarray:
    """uint8 image: one row per look, one column per task, captioned with the task name."""
    rows = []
    for look in envs.LOOKS[::-1]:  # paper first
        env = envs.make("splits", look=look)
        data = [mjx.put_data(env.mj_model, pose_data(task, env.mj_model)) for task in envs.TASKS.values()]
        batch = jax.tree.map(lambda *x: jnp.stack(x), *data)
        frames = np.asarray(jax.jit(env.renderer(size, size))(batch).rgb)
        rows.append(np.concatenate([_caption(f, f"{name} ({look})") for f, name in zip(frames, envs.TASKS)], 1))
    return np.concatenate(rows, 0)


def _caption(frame: np.ndarray, text: str) -> np.ndarray:
    image = Image.fromarray(frame)
    ImageDraw.Draw(image).text((4, 2), text, fill=(0, 0, 0))
    return np.asarray(image)


def main(args: Args) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pose_grid(args.size)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(lambda: main(tyro.cli(Args)))
