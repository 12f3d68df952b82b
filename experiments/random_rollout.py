"""A random-policy rollout of a humanoid task, rendered inside the compiled rollout, saved as mp4 + PNG strip.

Physics (MJX), rendering (the JAX ray caster) and the oracle success test all run in one `lax.scan`; only
finished frames come back to the host.

    python experiments/random_rollout.py --task splits --steps 100 --out-dir outputs/random_rollout
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
import warnings

import imageio.v2 as imageio
import jax
import numpy as np
import tyro
from tqdm import tqdm

import rewardax.envs as envs
from rewardax import cli


@dataclasses.dataclass(frozen=True)
class Args:
    task: str = "splits"
    """Task name (see rewardax.envs.TASKS)."""
    look: str = "paper"
    """Scene look: paper or default."""
    steps: int = 100
    """Env steps to roll out (100 = one episode of the paper)."""
    size: int = 224
    """Frame side in pixels (CLIP's input size)."""
    chunk: int = 10
    """Env steps per compiled call (the progress bar advances once per chunk)."""
    seed: int = 0
    """Seed of the initial-state noise and of the random actions."""
    out_dir: pathlib.Path = pathlib.Path("outputs/random_rollout")
    """Where the mp4, the PNG strip and a JSON summary go."""


def make_rollout(env: envs.Humanoid, size: int, chunk: int):
    """Compiled ``(state, key) -> (state, frames [chunk, H, W, 3], success [chunk])`` with uniform random actions."""
    render = env.renderer(size, size)

    def one_step(state, key):
        action = jax.random.uniform(key, (env.action_size,), minval=-1.0, maxval=1.0)
        state = env.step(state, action)
        frame = render(jax.tree.map(lambda x: x[None], state.pipeline_state)).rgb[0]  # a batch of one
        return state, (frame, state.metrics["success"])

    @jax.jit
    def rollout(state, key):
        state, (frames, success) = jax.lax.scan(one_step, state, jax.random.split(key, chunk))
        return state, frames, success

    return rollout


def main(args: Args) -> None:
    if args.steps < 1 or args.chunk < 1 or args.size < 8:
        raise ValueError("steps and chunk must be >= 1 and size >= 8")
    env = envs.make(args.task, look=args.look)
    rollout = make_rollout(env, args.size, min(args.chunk, args.steps))
    key_reset, key = jax.random.split(jax.random.PRNGKey(args.seed))
    state = jax.jit(env.reset)(key_reset)
    frames, success = [], []
    start = time.time()
    with tqdm(total=args.steps, desc=f"{args.task}: physics + render (first chunk compiles)", unit="step") as bar:
        while len(frames) < args.steps:
            key, sub = jax.random.split(key)
            state, chunk_frames, chunk_success = rollout(state, sub)
            take = min(len(chunk_frames), args.steps - len(frames))
            frames.extend(np.asarray(chunk_frames[:take]))
            success.extend(np.asarray(chunk_success[:take]).tolist())
            bar.update(take)
    elapsed = time.time() - start

    args.out_dir.mkdir(parents=True, exist_ok=True)
    video = args.out_dir / f"{args.task}_random.mp4"
    with warnings.catch_warnings():  # imageio starts ffmpeg in a subprocess; JAX warns about any fork
        warnings.filterwarnings("ignore", message="os.fork")
        imageio.mimwrite(video, frames, fps=round(1 / env.dt), macro_block_size=1)
    strip_frames = [frames[i] for i in np.linspace(0, len(frames) - 1, 8).astype(int)]
    strip = args.out_dir / f"{args.task}_random_strip.png"
    imageio.imwrite(strip, np.concatenate(strip_frames, axis=1))
    summary = dict(task=args.task, look=args.look, steps=len(frames), seconds=round(elapsed, 2),
                   oracle_success_rate=float(np.mean(success)), video=str(video), strip=str(strip))
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    cli.run(lambda: main(tyro.cli(Args)))
