"""What the training step, the evaluator and the rewards need from an env, declared in one place.

A `TaskEnv` is a brax `Env` with:

- actions in [-1, 1]: ``step`` takes the policy's action (clipped to [-1, 1] by the agent) and maps it onto
  its own actuators itself (the humanoid: `Humanoid.control`), so no other part knows an actuator range;
- ``episode_length``: the time limit the rollout applies (episodes end there by truncation);
- ``dt``: simulated seconds per step (evaluation videos play in real time);
- ``task``: what the env is for, with the prompts a VLM reward reads (``goal``, ``baseline``) and the oracle
  (``success(pipeline_state)``, ``dense(pipeline_state)``), whose values the env also reports after every step
  in ``metrics["success"]`` and ``metrics["dense"]``; None for an env with no such task (the probes);
- ``renderer(height, width)``: a jittable ``pipeline_state [B] -> Frame [B]`` of the task camera, or None for
  an env that draws nothing (reward models that need frames cannot score it);
- ``goal_frame(height, width)``: the task's goal drawn by that camera (the humanoid: its canonical pose), a uint8
  ``[H, W, 3]`` image, or None (the pairwise yes-token reward compares frames with it);
- ``draw(pipeline_state, height, width)`` (given): one state drawn by the renderer, a uint8 image;
- ``state_path(n)``: ``n`` physics states along one coordinate that leads to the goal (CartPole: the pole
  angle; MountainCar: the car's position; the humanoid: standing → the task's pose), as ``(values [n], label,
  pipeline_state [n])``, or None: what reward landscapes and labelled datasets sweep.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env


class TaskEnv(Env):
    """A brax `Env` with the declared interface of the module docstring (defaults: no task, no frames; an env
    must declare ``episode_length`` and ``dt`` itself: `check_env` names the one it forgot)."""

    episode_length: int
    dt: float
    task: Any = None

    def renderer(self, height: int = 224, width: int = 224) -> Callable | None:
        return None

    @property
    def backend(self) -> str:
        """brax's backend name: "jax" for envs written in plain JAX (the humanoid says "mjx")."""
        return "jax"

    def goal_frame(self, height: int = 224, width: int = 224):
        return None

    def draw(self, pipeline_state, height: int = 224, width: int = 224):
        """One (unbatched) physics state drawn by the task camera, a uint8 ``[H, W, 3]`` NumPy image, or None for an
        env that draws nothing (one compiled program: rendering run eagerly is thousands of small ops)."""
        render = self.renderer(height, width)
        if render is None:
            return None
        one = jax.jit(lambda s: render(jax.tree.map(lambda x: jnp.asarray(x)[None], s)).rgb[0])
        return np.asarray(one(pipeline_state))

    def state_path(self, n: int):
        return None


def check_env(env: Any) -> TaskEnv:
    """``env`` itself, or one clear error when it does not declare the interface."""
    if not isinstance(env, TaskEnv):
        raise TypeError(f"the training step needs a rewardax.envs.TaskEnv (actions in [-1, 1], episode_length, dt, "
                        f"task, renderer), got {type(env).__name__}: subclass TaskEnv and map the unit action onto "
                        f"the env's controls in its step")
    for name, kind, what in (("episode_length", int, "the time limit in steps"),
                             ("dt", (int, float), "simulated seconds per step")):
        value = getattr(env, name, None)
        if value is None:
            raise ValueError(f"{type(env).__name__} does not declare {name} ({what}): set it on the class or "
                             f"in __init__")
        if not isinstance(value, kind) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"{type(env).__name__}.{name} ({what}) must be a positive number"
                             f"{' (an integer)' if kind is int else ''}, got {value!r}")
    return env
