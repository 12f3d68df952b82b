"""Reward scaling by the running std of discounted returns, as a pure pytree (observations are normalised by
`rewardax.stats.RunningMeanStd`, re-exported here).

The statistics can be shared by data-parallel replicas: pass the device axis name and the batch moments are
summed over devices (`rewardax.stats.device_sum`), so every device ends with identical statistics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rewardax.stats import EPSILON, RunningMeanStd


@struct.dataclass
class RewardScaler:
    """Scales rewards by the standard deviation of the discounted return (VecNormalize's reward half).

    Rewards are divided, never shifted, so their sign and the optimal policy are unchanged. This matters for
    VLM rewards: CLIP scores live in a narrow band (differences of ~0.01), which would otherwise give tiny
    advantages and value targets.
    """

    returns: jax.Array
    """[num_envs] discounted sum of the rewards of each env's current episode."""
    stats: RunningMeanStd
    """Moments of every discounted return seen so far."""

    @classmethod
    def create(cls, num_envs: int) -> RewardScaler:
        return cls(jnp.zeros(num_envs), RunningMeanStd.create())

    def update(self, reward: jax.Array, episode_end: jax.Array, gamma: float,
               axis_name: str | None = None, valid: jax.Array | None = None) -> RewardScaler:
        """Accumulate one step's [num_envs] rewards, record the returns of the ``valid`` envs, restart ended
        episodes."""
        returns = self.returns * gamma + reward
        stats = self.stats.update(returns, axis_name, valid)
        return RewardScaler(jnp.where(episode_end, 0.0, returns), stats)

    def scale(self, reward: jax.Array) -> jax.Array:
        return reward / jnp.sqrt(self.stats.var + EPSILON)


def scale_rewards(scaler: RewardScaler, rewards: jax.Array, episode_end: jax.Array, gamma: float,
                  axis_name: str | None = None, valid: jax.Array | None = None) -> tuple[RewardScaler, jax.Array]:
    """Update ``scaler`` with a rollout's [T, B] rewards, then scale them all by the updated return std.

    ``valid`` ([T, B], 1/0) leaves the returns of invalid steps out of the statistics.

    Scaling the whole rollout by its final statistics (rather than each step by the statistics so far, as
    VecNormalize does) keeps the first rollout of a run from being divided by the near-zero spread of a
    handful of one-step returns.
    """

    valid = jnp.ones_like(rewards) if valid is None else valid

    def one_step(scaler, step):
        reward, end, ok = step
        return scaler.update(reward, end, gamma, axis_name, ok), None

    scaler, _ = jax.lax.scan(one_step, scaler, (rewards, episode_end, valid))
    return scaler, scaler.scale(rewards)
