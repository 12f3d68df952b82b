"""The one interface every reward model implements, so the training step does not care which it holds.

A reward model is a pytree (its arrays — weights, text embeddings — are leaves; its settings are static) and
a callable ``reward(frames, data) -> (reward [B], metrics {name: [B]})`` evaluated inside the compiled
rollout on the batch of post-step states: ``frames`` are the task camera's uint8 ``[B, H, W, 3]`` images of
``data`` (the batched `mjx.Data`). Models that judge the physics state directly set ``needs_frames =
False`` and are called with ``frames=None``, so nothing is rendered for them.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax


class RewardModel(Protocol):
    needs_frames: bool

    def __call__(self, frames: jax.Array | None, data: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        ...
