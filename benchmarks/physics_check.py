"""Does the humanoid's physics hold up? JSON lines on stdout (progress on stderr); no assertions.

    python benchmarks/physics_check.py                               # 1,024 envs × 1,000 steps (16 min on 2 CPU cores)
    python benchmarks/physics_check.py --num-envs 64 --steps 200     # a CPU-sized run
    python benchmarks/physics_check.py --engine mujoco               # the same MjModel in MuJoCo C (fast on CPU)
    python benchmarks/physics_check.py --iterations 1 --ls-iterations 4 --engine mujoco   # the old settings

Three measurements (see `rewardax.envs.physics_check`):

- ``stress``: saturated random actions (every actuator at a random limit, every step); the count of envs whose
  state turned non-finite must be 0. The tasks share one body, model and reset and differ only in their
  oracle, so one run checks the physics of every task; it also reports how often random flailing passes each
  task's oracle;
- ``drift``: MJX against MuJoCo C from the same state under the same controls (zero, and saturated random)
  over one episode: the largest joint-position difference after 1, 10, 50 and 100 steps;
- ``settle``: every task's canonical pose under zero action for one episode in both engines.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from typing import Literal

import jax
import numpy as np
import tyro
from tqdm import tqdm

import rewardax.envs as envs
import rewardax.envs.model as model_module
from rewardax.envs import physics_check


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


def main(args: Args) -> None:
    model_module.SOLVER_ITERATIONS, model_module.LINE_SEARCH_ITERATIONS = args.iterations, args.ls_iterations
    base = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "backend": jax.default_backend(),
            "devices": jax.device_count(), "iterations": args.iterations, "ls_iterations": args.ls_iterations}
    env = envs.make("kneeling")  # every task's env steps the same body; only the oracle differs
    if args.engine == "mjx":
        with tqdm(total=args.steps, desc="stress", unit="step", file=sys.stderr) as bar:
            result = physics_check.stress(env, args.num_envs, args.steps, seed=args.seed,
                                          progress=lambda done: bar.update(done - bar.n))
    else:
        result = physics_check.stress_mujoco(env.mj_model, args.num_envs, args.steps, env.config.frame_skip,
                                             seed=args.seed)
    print(json.dumps({**base, "measure": "stress", "seed": args.seed, **result}), flush=True)
    if not args.drift:
        return
    rng = np.random.default_rng(0)
    low, high = env.mj_model.actuator_ctrlrange.T
    controls = {"zero": np.zeros((env.episode_length, env.mj_model.nu)),
                "saturated_random": np.where(rng.random((env.episode_length, env.mj_model.nu)) < 0.5, low, high)}
    for name, ctrls in controls.items():
        print(json.dumps({**base, "measure": "drift", "controls": name, **physics_check.drift(env, ctrls)}), flush=True)
    for task in envs.TASKS:
        print(json.dumps({**base, "measure": "settle", **physics_check.settle(envs.make(task))}), flush=True)


if __name__ == "__main__":
    main(tyro.cli(Args))
