"""Env and renderer throughput, printed as JSON lines (one per measurement). Not a test: no assertions.

    python benchmarks/env_render.py --batch-sizes 1 16 64 --size 224

Measures, for each batch size: env-steps/s of MJX physics alone and of physics + rendering the task camera
(every env renders a frame on every step, inside the same `lax.scan`), render-only frames/s and rays/s,
the baseline of calling `mjx.ray` once per pixel, and FLOPs per env-step from XLA's cost analysis.

XLA's cost analysis counts the body of a loop once, whatever its trip count, so FLOPs are taken from
loop-free pieces: one `mjx.step` (times ``frame_skip``; MJX's solver loops inside it count once, so this
is a lower bound) and one rendered frame (exact: the renderer has no loops).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import tyro

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


def machine() -> dict:
    return dict(backend=jax.default_backend(), device=jax.devices()[0].device_kind, devices=jax.device_count(),
                cpu_count=os.cpu_count(), processor=platform.processor() or platform.machine(), jax=jax.__version__)


def flops(fn, *args) -> float:
    """FLOPs of one call according to XLA's cost analysis (loop bodies counted once)."""
    return float((jax.jit(fn).lower(*args).compile().cost_analysis() or {}).get("flops", float("nan")))


def timed(fn, *args, repeats: int) -> float:
    """Seconds per call: the best of ``repeats`` after a warm-up call that compiles."""
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - start)
    return best


def main(args: Args) -> None:
    env = envs.make("splits", look=args.look)
    render = env.renderer(args.size, args.size)
    rays_per_frame = args.size * args.size
    base = dict(machine=machine(), size=args.size)

    data = jax.jit(env.reset)(jax.random.PRNGKey(0)).pipeline_state
    physics_flops = env.config.frame_skip * flops(lambda d: mjx.step(env.sys, d), data)
    render_flops = flops(lambda d: render(jax.tree.map(lambda x: x[None], d)).rgb, data)
    print(json.dumps(dict(base, measure="flops per env-step", physics=physics_flops, render=render_flops,
                          total=physics_flops + render_flops)), flush=True)

    for batch in args.batch_sizes:
        state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), batch))
        actions = jnp.zeros((args.steps, batch, env.action_size))

        def physics(state, actions):
            def one(s, a):
                s = jax.vmap(env.step)(s, a)
                return s, s.obs[:, 0]
            return jax.lax.scan(one, state, actions)[1]

        def physics_render(state, actions):
            def one(s, a):
                s = jax.vmap(env.step)(s, a)
                return s, render(s.pipeline_state).rgb[:, 0, 0, 0]
            return jax.lax.scan(one, state, actions)[1]

        for name, fn in (("physics", physics), ("physics+render", physics_render)):
            seconds = timed(fn, state, actions, repeats=args.repeats)
            print(json.dumps(dict(base, measure=name, batch=batch,
                                  env_steps_per_s=round(args.steps * batch / seconds, 1))), flush=True)

        seconds = timed(lambda d: render(d).rgb, state.pipeline_state, repeats=args.repeats)
        print(json.dumps(dict(base, measure="render", batch=batch, frames_per_s=round(batch / seconds, 1),
                              rays_per_s=round(batch * rays_per_frame / seconds))), flush=True)

    # Baseline: MuJoCo MJX's own ray function, called once per pixel (segmentation only, no shading).
    camera = env.camera(data)
    dirs = primary_rays(camera, args.size, args.size).reshape(-1, 3)
    seconds = timed(lambda d: jax.vmap(lambda v: mjx.ray(env.sys, d, camera.pos, v))(dirs), data,
                    repeats=args.repeats)
    print(json.dumps(dict(base, measure="mjx.ray per pixel (baseline)", batch=1, frames_per_s=round(1 / seconds, 1),
                          rays_per_s=round(rays_per_frame / seconds))), flush=True)


if __name__ == "__main__":
    main(tyro.cli(Args))
