"""Generalised advantage estimation that keeps termination and truncation apart."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array, terminated: jax.Array,
        episode_end: jax.Array, gamma: float, lam: float) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets of time-major [T, B] arrays.

        delta_t = r_t + gamma * (1 - terminated_t) * next_value_t - value_t
        A_t     = delta_t + gamma * lam * (1 - episode_end_t) * A_{t+1}

    ``next_values[t]`` is the value of the observation step t reached, before any reset. A truncated
    episode (``episode_end`` but not ``terminated``) therefore still bootstraps from its last state; only
    the advantage recursion stops at every episode end. Beyond the rollout, ``A_T = 0``.

    Returns ``(advantages, returns)`` with ``returns = advantages + values``, both [T, B].
    """
    bootstrap = gamma * (1.0 - terminated.astype(values.dtype))
    deltas = rewards + bootstrap * next_values - values
    carry_on = gamma * lam * (1.0 - episode_end.astype(values.dtype))

    def backwards(next_advantage, step):
        delta, carry_on = step
        advantage = delta + carry_on * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(backwards, jnp.zeros_like(values[0]), (deltas, carry_on), reverse=True)
    return advantages, advantages + values
