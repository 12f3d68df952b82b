"""Does the humanoid's physics hold up? JSON lines on stdout (progress on stderr); no assertions.

    python benchmarks/physics_check.py                               # 1,024 envs × 1,000 steps (16 min on 2 CPU cores)
    python benchmarks/physics_check.py --num-envs 64 --steps 200     # a CPU-sized run
    python benchmarks/physics_check.py --engine mujoco               # the same MjModel in MuJoCo C (fast on CPU)
    python benchmarks/physics_check.py --iterations 1 --ls-iterations 4 --engine mujoco   # the old settings

Three measurements (the functions below; `tests/test_physics.py` runs small versions of them):

- ``stress`` (`stress`, `stress_mujoco`): saturated random actions (each actuator at one of its limits, drawn
  afresh every step: the extreme a Gaussian policy clipped to the actuator range can produce); the count of envs
  whose state turned non-finite must be 0 with the solver settings of `rewardax.envs.model`. The tasks share one
  body, model and reset and differ only in their oracle, so one run checks the physics of every task; it also
  reports how often random flailing passes each task's oracle. In MuJoCo C (fast on a CPU), a diverging state is
  replaced by a reset with a warning, which counts as a failure;
- ``drift`` (`drift`): MJX against MuJoCo C from the same state under the same controls (zero, and saturated
  random) over one episode: the largest joint-position difference after 1, 10, 50 and 100 steps (MJX runs
  float32, C float64, so chaotic motion drifts apart; quiet motion should not);
- ``settle`` (`settle`): every task's canonical pose under zero action for one episode in both engines: does the
  oracle still accept the pose at the end (seated and kneeling poses should hold; standing ones fall without
  torque, in both engines alike).

MJX steps through the env's own `Humanoid.physics_step`, so the check is of the physics training runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import time
from typing import Literal

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import tyro
from tqdm import tqdm

from common import emit, machine
from rewardax import cli

with contextlib.redirect_stdout(sys.stderr):  # mujoco.mjx prints "Failed to import warp" to stdout: keep it JSON
    from mujoco import mjx

    import rewardax.envs as envs
    import rewardax.envs.model as model_module
    from rewardax.envs.humanoid import Humanoid
    from rewardax.envs.tasks import TASKS, pose_data


# ---- The checks -----------------------------------------------------------------------------------------------


def _saturated(key: jax.Array, num_envs: int, action_size: int) -> jax.Array:
    """Unit actions at a random end of every actuator's range (-1 or 1)."""
    return jnp.where(jax.random.bernoulli(key, 0.5, (num_envs, action_size)), 1.0, -1.0)


def stress(env: Humanoid, num_envs: int, steps: int, seed: int = 0, chunk: int = 50, progress=None) -> dict:
    """Step ``num_envs`` envs ``steps`` times with saturated random actions in MJX; count non-finite envs.

    Every task has the same body, model and reset (they differ only in their oracle), so one run checks the
    physics of all of them; it also reports how often random flailing passes each task's oracle. Runs in
    jitted chunks of ``chunk`` steps; ``progress(done_steps)`` is called after each.
    """
    step = jax.vmap(env.step)
    oracles = {name: task.success for name, task in TASKS.items()}

    @jax.jit
    def run(state, first_bad, success, key, start):
        def one(carry, inputs):
            state, first_bad, success = carry
            key, t = inputs
            state = step(state, _saturated(key, num_envs, env.action_size))
            data = state.pipeline_state
            finite = jnp.isfinite(data.qpos).all(-1) & jnp.isfinite(data.qvel).all(-1)
            first_bad = jnp.where((first_bad < 0) & ~finite, t, first_bad)
            success = {name: success[name] + oracle(data) for name, oracle in oracles.items()}
            return (state, first_bad, success), None

        keys = jax.random.split(key, chunk)
        (state, first_bad, success), _ = jax.lax.scan(one, (state, first_bad, success),
                                                      (keys, start + jnp.arange(chunk)))
        return state, first_bad, success

    key = jax.random.key(seed)
    state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.fold_in(key, steps + 1), num_envs))
    first_bad, success = -jnp.ones(num_envs, jnp.int32), {name: jnp.zeros(num_envs) for name in oracles}
    began, done = time.perf_counter(), 0
    compile_seconds = None
    while done < steps:
        state, first_bad, success = run(state, first_bad, success, jax.random.fold_in(key, done), done)
        jax.block_until_ready(first_bad)
        if compile_seconds is None:
            compile_seconds = time.perf_counter() - began
            began = time.perf_counter()
        done += chunk
        if progress:
            progress(done)
    seconds = time.perf_counter() - began
    first_bad = np.asarray(first_bad)
    bad = first_bad >= 0
    timed_steps = done - chunk
    return {"engine": "mjx", "num_envs": num_envs, "steps": done, "non_finite_envs": int(bad.sum()),
            "first_non_finite_step": int(first_bad[bad].min()) if bad.any() else None,
            "oracle_success_rate": {name: float(np.asarray(passed).sum() / (num_envs * done))
                                    for name, passed in success.items()},
            "env_steps_per_s": round(num_envs * timed_steps / seconds, 1) if timed_steps else None,
            "compile_and_first_chunk_s": round(compile_seconds, 1)}


def _mujoco_step(model: mujoco.MjModel, data: mujoco.MjData, ctrl: np.ndarray, frame_skip: int) -> None:
    """One env step in MuJoCo C, in place: ``frame_skip`` physics steps under the controls ``ctrl``."""
    data.ctrl[:] = ctrl
    for _ in range(frame_skip):
        mujoco.mj_step(model, data)


def stress_mujoco(model: mujoco.MjModel, num_envs: int, steps: int, frame_skip: int = 5, seed: int = 0,
                  reset_noise: float = 0.01) -> dict:
    """`stress` in MuJoCo C on ``model`` (the env's `mj_model`), one env after another."""
    rng = np.random.default_rng(seed)
    low, high = model.actuator_ctrlrange.T
    bad_steps = []
    began = time.perf_counter()
    for _ in range(num_envs):
        data = mujoco.MjData(model)
        data.qpos[:] = model.qpos0 + rng.uniform(-reset_noise, reset_noise, model.nq)
        data.qvel[:] = rng.uniform(-reset_noise, reset_noise, model.nv)
        mujoco.mj_forward(model, data)
        for t in range(steps):
            _mujoco_step(model, data, np.where(rng.random(model.nu) < 0.5, low, high), frame_skip)
            diverged = data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number > 0
            if diverged or not (np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all()):
                bad_steps.append(t)
                break
    seconds = time.perf_counter() - began
    return {"engine": "mujoco", "num_envs": num_envs, "steps": steps, "non_finite_envs": len(bad_steps),
            "first_non_finite_step": min(bad_steps) if bad_steps else None,
            "env_steps_per_s": round(num_envs * steps / seconds, 1)}


@functools.cache
def _mjx_run(env: Humanoid):
    """``(qpos, qvel, ctrls [T, nu]) -> (qpos after every env step, the oracle at the end)`` in MJX, jitted once
    per env (one program: MJX run eagerly is thousands of small dispatches)."""

    def one(data, ctrl):
        data = env.physics_step(data, ctrl)
        return data, data.qpos

    @jax.jit
    def run(qpos, qvel, ctrls):
        data = mjx.forward(env.sys, mjx.make_data(env.sys).replace(qpos=qpos, qvel=qvel))
        data, trajectory = jax.lax.scan(one, data, ctrls)
        return trajectory, env.task.success(data)

    return run


def _mjx_trajectory(env: Humanoid, qpos: np.ndarray, qvel: np.ndarray, ctrls: np.ndarray):
    """qpos after every env step and the oracle at the end, MJX from (qpos, qvel) under ``ctrls`` [T, nu]."""
    trajectory, success = _mjx_run(env)(jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32),
                                        jnp.asarray(ctrls, jnp.float32))
    return np.asarray(trajectory), bool(success)


def _mujoco_trajectory(env: Humanoid, qpos: np.ndarray, qvel: np.ndarray, ctrls: np.ndarray):
    """`_mjx_trajectory` in MuJoCo C."""
    model = env.mj_model
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = qpos, qvel
    mujoco.mj_forward(model, data)
    out = []
    for ctrl in ctrls:
        _mujoco_step(model, data, ctrl, env.config.frame_skip)
        out.append(data.qpos.copy())
    return np.asarray(out), bool(env.task.success(data))


def drift(env: Humanoid, ctrls: np.ndarray, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None) -> dict:
    """Largest |qpos_MJX − qpos_C| over the joints (root position in metres, angles in radians) after env
    steps 1, 10, 50 and the last, from the same state under the same controls ``ctrls`` [T, nu]."""
    qpos = env.mj_model.qpos0 if qpos is None else qpos
    qvel = np.zeros(env.mj_model.nv) if qvel is None else qvel
    a, _ = _mjx_trajectory(env, qpos, qvel, ctrls)
    b, _ = _mujoco_trajectory(env, qpos, qvel, ctrls)
    gap = np.abs(a - b).max(-1)
    marks = sorted({1, 10, 50, len(ctrls)} & set(range(1, len(ctrls) + 1)))
    return {f"step_{t}": float(gap[t - 1]) for t in marks}


def settle(env: Humanoid, steps: int | None = None) -> dict:
    """The task's canonical pose under zero action for ``steps`` env steps (one episode) in MJX and in C:
    whether the oracle accepts the pose at the end in each, and how far the engines drifted apart."""
    steps = env.episode_length if steps is None else steps
    start = pose_data(env.task, env.mj_model)
    ctrls = np.zeros((steps, env.mj_model.nu))
    a, mjx_success = _mjx_trajectory(env, start.qpos, start.qvel, ctrls)
    b, c_success = _mujoco_trajectory(env, start.qpos, start.qvel, ctrls)
    return {"task": env.task.name, "oracle_at_start": bool(env.task.success(start)),
            "oracle_at_end_mjx": mjx_success, "oracle_at_end_mujoco": c_success,
            "max_qpos_gap": float(np.abs(a - b).max())}


# ---- The script -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Args:
    num_envs: int = 1024
    """Envs for the stress test."""
    steps: int = 1000
    """Env steps per env for the stress test (a multiple of 50 in MJX)."""
    seed: int = 0
    """Seed of the stress test's resets and actions."""
    engine: Literal["mjx", "mujoco"] = "mjx"
    """Physics engine for the stress test."""
    iterations: int = model_module.SOLVER_ITERATIONS
    """Newton solver iterations (the model's setting by default)."""
    ls_iterations: int = model_module.LINE_SEARCH_ITERATIONS
    """Line-search iterations."""
    drift: bool = True
    """Also measure MJX against MuJoCo C (drift and settle)."""
    tasks: tuple[str, ...] = tuple(TASKS)
    """Tasks whose canonical pose settles (each compiles its own MJX program)."""


def main(args: Args) -> None:
    unknown = sorted(set(args.tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    settings = model_module.SOLVER_ITERATIONS, model_module.LINE_SEARCH_ITERATIONS
    model_module.SOLVER_ITERATIONS, model_module.LINE_SEARCH_ITERATIONS = args.iterations, args.ls_iterations
    try:
        run(args)
    finally:  # the model's settings are module constants: leave them as they were
        model_module.SOLVER_ITERATIONS, model_module.LINE_SEARCH_ITERATIONS = settings


def run(args: Args) -> None:
    base = {"bench": "physics_check", "machine": machine(), "iterations": args.iterations,
            "ls_iterations": args.ls_iterations}
    env = envs.make("kneeling")  # every task's env steps the same body; only the oracle differs
    if args.engine == "mjx":
        with tqdm(total=args.steps, desc="stress", unit="step", file=sys.stderr) as bar:
            result = stress(env, args.num_envs, args.steps, seed=args.seed,
                            progress=lambda done: bar.update(done - bar.n))
    else:
        result = stress_mujoco(env.mj_model, args.num_envs, args.steps, env.config.frame_skip, seed=args.seed)
    emit({**base, "measure": "stress", "seed": args.seed, **result})
    if not args.drift:
        return
    rng = np.random.default_rng(0)
    low, high = env.mj_model.actuator_ctrlrange.T
    controls = {"zero": np.zeros((env.episode_length, env.mj_model.nu)),
                "saturated_random": np.where(rng.random((env.episode_length, env.mj_model.nu)) < 0.5, low, high)}
    for name, ctrls in controls.items():
        emit({**base, "measure": "drift", "controls": name, **drift(env, ctrls)})
    for task in args.tasks:  # the stress test's env where it fits: its MJX program is compiled already
        emit({**base, "measure": "settle", **settle(env if task == env.task.name else envs.make(task))})


if __name__ == "__main__":
    cli.run(lambda: main(tyro.cli(Args)))
