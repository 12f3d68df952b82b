"""The one interface every reward model implements, so the training step does not care which it holds.

A reward model is a pytree (its arrays — weights, text embeddings — are leaves; its settings are static) and
a callable ``reward(frames, state) -> (reward [B], metrics {name: [B]})`` evaluated inside the compiled
rollout on the batch of post-step env states: ``frames`` are the task camera's uint8 ``[B, H, W, 3]`` images
of ``state.pipeline_state`` (the batched `mjx.Data`). Models that judge the physics state directly set
``needs_frames = False`` and are called with ``frames=None``, so nothing is rendered for them.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
from flax import struct


class RewardModel(Protocol):
    needs_frames: bool

    def __call__(self, frames: jax.Array | None, state: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        ...


@struct.dataclass
class EnvReward:
    """The env's own ``state.reward`` (probe envs, hand-written rewards)."""

    needs_frames = False

    def __call__(self, frames, state):
        return state.reward, {}
