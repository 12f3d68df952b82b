"""Environments: the MJX humanoid, the paper's tasks (prompts + oracle pose tests) and their camera, and the
paper's classic-control envs, CartPole and continuous MountainCar (`rewardax.envs.classic`).

    env = rewardax.envs.make("splits", look="default")
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 4))  # jit: one program, not 1000s of ops
    frames = env.renderer(224, 224)(states.pipeline_state)   # a batch of 4 frames

Envs are `TaskEnv`s (`rewardax.envs.base`: brax `Env`s with actions in [-1, 1], a time limit, a task and
a renderer declared); batch and episode them with brax's wrappers, e.g.
``brax.envs.wrappers.training.wrap(env, episode_length=env.episode_length)``.
"""

from __future__ import annotations

import dataclasses

from rewardax.envs.base import TaskEnv, check_env
from rewardax.envs.classic import CartPole, MountainCar
from rewardax.envs.humanoid import Humanoid, HumanoidConfig
from rewardax.envs.model import LOOKS, humanoid_model, humanoid_spec
from rewardax.envs.tasks import TASKS, Task, get_task

CLASSIC = {"cartpole": CartPole, "mountaincar": MountainCar}
"""The classic-control envs by name (their only option is ``look``)."""

__all__ = ["CLASSIC", "LOOKS", "TASKS", "CartPole", "Humanoid", "HumanoidConfig", "MountainCar", "Task", "TaskEnv",
           "check_env", "get_task", "humanoid_model", "humanoid_spec", "make", "names"]


def names() -> tuple[str, ...]:
    """Every name `make` accepts: the humanoid tasks, then the classic-control envs."""
    return tuple(TASKS) + tuple(CLASSIC)


def make(name: str, **overrides) -> TaskEnv:
    """The humanoid env for task ``name``, with `HumanoidConfig` fields overridden by keyword; or the
    classic-control env ``name`` (``cartpole``, ``mountaincar``), whose only option is ``look``."""
    if name in CLASSIC:
        unknown = sorted(set(overrides) - {"look"})
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} for env {name!r}; its only option is look")
        return CLASSIC[name](**overrides)
    if name not in TASKS:
        raise ValueError(f"unknown env {name!r}; valid names are {', '.join(names())}")
    fields = [f.name for f in dataclasses.fields(HumanoidConfig) if f.name != "task"]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for env {name!r}; valid options are "
                         f"{', '.join(fields)}")
    return Humanoid(HumanoidConfig(task=name, **overrides))
