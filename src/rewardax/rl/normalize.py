"""Running statistics for observation and reward normalisation, as pure pytrees.

Both statistics can be shared by data-parallel replicas: pass the device axis name and the batch moments
are summed over devices (`rewardax.rl.reduce.device_sum`), so every device ends with identical statistics.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
from flax import struct

from rewardax.rl.reduce import device_sum

EPSILON = 1e-8
"""Added to variances before a square root, so a constant signal does not divide by zero."""


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

    def update(self, batch: jax.Array, axis_name: str | None = None, mask: jax.Array | None = None) -> RunningMeanStd:
        """Fold in ``batch`` (leading axes are samples) by Chan et al.'s parallel combination.

        With ``axis_name`` the batch is the union of every device's ``batch``; ``mask`` (1/0 per sample) leaves
        samples out. A batch with no samples leaves the statistics unchanged.
        """
        sample_axes = tuple(range(batch.ndim - self.mean.ndim))
        sample_shape = batch.shape[:len(sample_axes)]
        weight = jnp.ones(sample_shape) if mask is None else mask.astype(jnp.float32)
        weight = weight.reshape(sample_shape + (1,) * self.mean.ndim)
        batch_count = device_sum(weight.sum(), axis_name)
        safe_count = jnp.maximum(batch_count, 1.0)
        batch_mean = device_sum((batch * weight).sum(sample_axes), axis_name) / safe_count
        batch_var = device_sum((weight * (batch - batch_mean) ** 2).sum(sample_axes), axis_name) / safe_count

        count = self.count + batch_count
        safe_total = jnp.maximum(count, 1.0)
        delta = batch_mean - self.mean
        mean = self.mean + delta * batch_count / safe_total
        sum_sq = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / safe_total
        var = jnp.where(count > 0, sum_sq / safe_total, self.var)
        return RunningMeanStd(mean, var, count)

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
