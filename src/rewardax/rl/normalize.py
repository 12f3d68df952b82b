"""Running statistics for observation and reward normalisation, as pure pytrees.

Both statistics can be shared by data-parallel replicas: pass the device axis name and the batch moments
are summed over devices with `lax.psum`, so every device ends with identical statistics.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

EPSILON = 1e-8
"""Added to variances before a square root, so a constant signal does not divide by zero."""


def _psum(x, axis_name):
    return x if axis_name is None else jax.lax.psum(x, axis_name)


@struct.dataclass
class RunningMeanStd:
    """Mean and variance of every sample seen so far, per feature."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array
    """Number of samples seen (float32: exact up to 2**24; beyond, only the weighting of new batches blurs)."""

    @classmethod
    def create(cls, shape: tuple[int, ...] = ()) -> RunningMeanStd:
        """No samples yet (the first `update` replaces mean and var by the batch moments)."""
        return cls(jnp.zeros(shape), jnp.ones(shape), jnp.zeros(()))

    def update(self, batch: jax.Array, axis_name: str | None = None) -> RunningMeanStd:
        """Fold in ``batch`` (leading axes are samples) by Chan et al.'s parallel combination.

        With ``axis_name`` the batch is the union of every device's ``batch``.
        """
        sample_axes = tuple(range(batch.ndim - self.mean.ndim))
        batch_count = _psum(jnp.float32(math.prod(batch.shape[:len(sample_axes)])), axis_name)
        batch_mean = _psum(batch.sum(sample_axes), axis_name) / batch_count
        batch_var = _psum(((batch - batch_mean) ** 2).sum(sample_axes), axis_name) / batch_count

        count = self.count + batch_count
        delta = batch_mean - self.mean
        mean = self.mean + delta * batch_count / count
        sum_sq = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / count
        return RunningMeanStd(mean, sum_sq / count, count)

    def normalize(self, x: jax.Array, clip: float = 10.0) -> jax.Array:
        """``x`` standardised by the running moments and clipped to ``[-clip, clip]``."""
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + EPSILON), -clip, clip)


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
               axis_name: str | None = None) -> RewardScaler:
        """Accumulate one step's [num_envs] rewards, record the returns, restart ended episodes."""
        returns = self.returns * gamma + reward
        stats = self.stats.update(returns, axis_name)
        return RewardScaler(jnp.where(episode_end, 0.0, returns), stats)

    def scale(self, reward: jax.Array) -> jax.Array:
        return reward / jnp.sqrt(self.stats.var + EPSILON)


def scale_rewards(scaler: RewardScaler, rewards: jax.Array, episode_end: jax.Array, gamma: float,
                  axis_name: str | None = None) -> tuple[RewardScaler, jax.Array]:
    """Update ``scaler`` with a rollout's [T, B] rewards, then scale them all by the updated return std.

    Scaling the whole rollout by its final statistics (rather than each step by the statistics so far, as
    VecNormalize does) keeps the first rollout of a run from being divided by the near-zero spread of a
    handful of one-step returns.
    """

    def one_step(scaler, step):
        return scaler.update(*step, gamma, axis_name), None

    scaler, _ = jax.lax.scan(one_step, scaler, (rewards, episode_end))
    return scaler, scaler.scale(rewards)
