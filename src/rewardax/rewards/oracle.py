"""Ground-truth rewards from the task's pose test on the physics state: the binary oracle (for ablations and
probes) and its dense counterpart (for checking PPO and presets without a VLM, and for scoring reward models).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from rewardax.envs.tasks import Task
from rewardax.rewards.base import Reward


def _judge(task: Task, data) -> dict[str, jnp.ndarray]:
    return {"oracle/success": task.success(data).astype(jnp.float32), "oracle/dense": task.dense(data)}


@struct.dataclass
class OracleReward(Reward):
    """Reward = the task's oracle success test (1 or 0) on the physics state (no frames needed)."""

    task: Task = struct.field(pytree_node=False)
    needs_frames = False

    def __call__(self, frames, state):
        metrics = _judge(self.task, state.pipeline_state)
        return metrics["oracle/success"], metrics


@struct.dataclass
class DenseReward(Reward):
    """Reward = the task's dense ground truth in [0, 1] on the physics state, 1 exactly where the oracle
    passes (`Task.dense`; no frames needed), plus ``success_bonus`` where it passes."""

    task: Task = struct.field(pytree_node=False)
    success_bonus: float = struct.field(pytree_node=False, default=0.0)
    needs_frames = False

    def __call__(self, frames, state):
        metrics = _judge(self.task, state.pipeline_state)
        return metrics["oracle/dense"] + self.success_bonus * metrics["oracle/success"], metrics
