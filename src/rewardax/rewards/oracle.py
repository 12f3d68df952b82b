"""The oracle reward: 1 when the task's geometric pose test passes, else 0 (for ablations and probes)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from rewardax.envs.tasks import Task


@struct.dataclass
class OracleReward:
    """Reward = the task's oracle success test on the physics state (no frames needed)."""

    task: Task = struct.field(pytree_node=False)
    needs_frames = False

    def __call__(self, frames, state):
        success = self.task.success(state.pipeline_state).astype(jnp.float32)
        return success, {"oracle/success": success}
