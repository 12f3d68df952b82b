"""Env and renderer throughput, printed as JSON lines (one per measurement). Not a test: no assertions.

    python benchmarks/env_render.py --batch-sizes 1 16 64 --size 224
    python benchmarks/env_render.py --batch-sizes 1 --size 16 --steps 1 --repeats 1   # checks the script

Measures, for each batch size: env-steps/s of MJX physics alone and of physics + rendering the task camera
(every env renders a frame on every step, inside the same `lax.scan`), render-only frames/s and rays/s,
the baseline of calling `mjx.ray` once per pixel, and FLOPs per env-step from XLA's cost analysis. Speeds are
from the best of ``--repeats`` calls after a warm-up call that compiles (`common.timed`).

XLA's cost analysis counts the body of a loop once, whatever its trip count, so FLOPs are taken from
loop-free pieces: one `mjx.step` (times ``frame_skip``; MJX's solver loops inside it count once, so this
is a lower bound) and one rendered frame (exact: the renderer has no loops).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys

import jax
import jax.numpy as jnp
import tyro

from common import emit, env_piece_flops, env_rungs, machine, reset_envs, timed
from rewardax import cli

with contextlib.redirect_stdout(sys.stderr):  # mujoco.mjx prints "Failed to import warp" to stdout: keep it JSON
    from mujoco import mjx

    import rewardax.envs as envs
    from rewardax.render import primary_rays


@dataclasses.dataclass(frozen=True)
class Args:
    batch_sizes: tuple[int, ...] = (1, 16, 64)
    """Numbers of envs stepped (and frames rendered) together."""
    size: int = 224
    """Frame side in pixels."""
    steps: int = 10
    """Env steps per compiled call (a `lax.scan`)."""
    repeats: int = 3
    """Timed calls per measurement (after one warm-up call that compiles)."""
    look: str = "paper"
    """Scene look."""


def main(args: Args) -> None:
    env = envs.make("splits", look=args.look)
    render = env.renderer(args.size, args.size)
    rays_per_frame = args.size * args.size
    base = dict(bench="env_render", machine=machine(), size=args.size)

    key = jax.random.key(0)
    data = jax.tree.map(lambda x: x[0], reset_envs(env, key, 1).pipeline_state)  # one env's state
    pieces = env_piece_flops(env, render, data)
    emit(dict(base, measure="flops per env-step", **pieces, total=pieces["physics"] + pieces["render"]))

    rungs = env_rungs(env, render)  # the ladder's physics and render rungs
    for batch in args.batch_sizes:
        state = reset_envs(env, key, batch)
        actions = jnp.zeros((args.steps, batch, env.action_size))
        for name, fn in (("physics", rungs["physics"]), ("physics+render", rungs["render"])):
            seconds = timed(fn, state, actions, repeats=args.repeats).best_s
            emit(dict(base, measure=name, batch=batch, env_steps_per_s=round(args.steps * batch / seconds, 1)))

        seconds = timed(lambda d: render(d).rgb, state.pipeline_state, repeats=args.repeats).best_s
        emit(dict(base, measure="render", batch=batch, frames_per_s=round(batch / seconds, 1),
                  rays_per_s=round(batch * rays_per_frame / seconds)))

    # Baseline: MuJoCo MJX's own ray function, called once per pixel (segmentation only, no shading).
    camera = env.camera(data)
    dirs = primary_rays(camera, args.size, args.size).reshape(-1, 3)
    seconds = timed(lambda d: jax.vmap(lambda v: mjx.ray(env.sys, d, camera.pos, v))(dirs), data,
                    repeats=args.repeats).best_s
    emit(dict(base, measure="mjx.ray per pixel (baseline)", batch=1, frames_per_s=round(1 / seconds, 1),
              rays_per_s=round(rays_per_frame / seconds)))


if __name__ == "__main__":
    cli.run(lambda: main(tyro.cli(Args)))
