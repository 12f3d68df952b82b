"""The one interface every reward model implements, so the training step does not care which it holds.

A reward model is a pytree (its arrays — weights, text embeddings — are leaves; its settings are static) that
subclasses `Reward` and is called as ``reward(frames, state) -> (reward [B], metrics {name: [B]})`` inside the
compiled rollout on the batch of post-step env states: ``frames`` are the task camera's uint8 ``[B, H, W, 3]``
images of ``state.pipeline_state`` (the batched physics state). Models that judge the physics state directly
set ``needs_frames = False`` and are called with ``frames=None``, so nothing is rendered for them.

Frozen and trainable parts. A model's frozen arrays (a CLIP's weights) are passed to every step as an
argument, as they are: large, never changed, never checkpointed. Parameters that training changes live in the
train state instead (`rewardax.rl.step.TrainState.reward_params`, with their optimiser state), where they are
checkpointed by name with the agent:

    frozen, params = reward.split()    # params: None for a frozen model (every model so far)
    reward = frozen.merge(params)      # the whole model again, inside the step

A trainable model overrides `split`, `merge` and ``optimizer`` (the optax transformation its parameters take).

An adaptive reference. A model that compares each frame with a reference image (the pairwise yes-token reward)
can have that reference replaced, after each rollout, by the best frame seen so far: it returns its starting
reference from `initial_reference` (the train state keeps the current one, `TrainState.reward_reference`),
builds itself around another with `with_reference`, and says which rewards mean "better than the reference"
with `beats_reference`.
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import struct

from rewardax.models.sharding import shard_model


class Reward:
    """Base of every reward model: frozen by default (see the module docstring)."""

    needs_frames: bool = False
    optimizer: optax.GradientTransformation | None = None
    """How the trainable parameters are updated (None for a frozen model)."""

    def __call__(self, frames: jax.Array | None, state: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
        raise NotImplementedError

    def split(self) -> tuple[Reward, Any]:
        """(the frozen part, the trainable parameters or None)."""
        return self, None

    def merge(self, params: Any) -> Reward:
        """The model with the trainable parameters ``params`` (as `split` returned them) put back."""
        return self

    def shard(self, size: int) -> Reward:
        """This model with its weights marked to be split over ``size`` devices (`rewardax.models.sharding`), for a
        mesh whose model axis has that size. A model keeping its weights as ``graphdef``/``params`` (CLIP,
        InternVL) is split by `rewardax.models.sharding.shard_model`; a model without weights only runs on
        ``size`` 1."""
        if size == 1:
            return self
        if not hasattr(self, "graphdef") or getattr(self, "params", None) is None:
            raise ValueError(f"{type(self).__name__} has no weights to split over a model axis of {size}: use "
                             f"--mesh model=1 (the default)")
        graphdef, params = shard_model(self.graphdef, self.params, size)
        return self.replace(graphdef=graphdef, params=params)

    def initial_reference(self) -> jax.Array | None:
        """The uint8 [H, W, 3] reference to start from when the best frame so far is to replace it; None for a
        model whose reference is fixed or that has none (every model but the adaptive pairwise one)."""
        return None

    def with_reference(self, image: jax.Array) -> Reward:
        """The model comparing frames with ``image`` (jittable; only for a model with an adaptive reference)."""
        raise NotImplementedError(f"{type(self).__name__} has no adaptive reference")

    def beats_reference(self, reward: jax.Array) -> jax.Array:
        """Whether a frame with this reward is better than the reference (only for an adaptive reference)."""
        raise NotImplementedError(f"{type(self).__name__} has no adaptive reference")


def check_reward(reward: Any) -> Reward:
    """``reward`` itself, or one clear error when it is not a `Reward`."""
    if not isinstance(reward, Reward):
        raise TypeError(f"a reward model must subclass rewardax.rewards.Reward (needs_frames, __call__(frames, "
                        f"state) -> (reward, metrics), split/merge), got {type(reward).__name__}")
    return reward


@struct.dataclass
class EnvReward(Reward):
    """The env's own ``state.reward`` (probe envs, hand-written rewards)."""

    def __call__(self, frames, state):
        return state.reward, {}
