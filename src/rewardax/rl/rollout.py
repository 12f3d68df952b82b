"""Collect [T, B] transitions from a batch of envs, with per-env auto-reset and truncation kept apart.

The env is an unbatched brax `Env`; the rollout vmaps it. It does not use brax's AutoResetWrapper, which
restarts every env from one cached initial state and overwrites the state the episode ended in: here each
ended env gets a fresh reset with its own key, and the value of the state it ended in is computed first
(``next_value``), so a time-limit truncation can bootstrap.

Randomness is per env: every env carries its own key, derived from the run's key and the env's global
index, so a run gives the same trajectories whether its envs sit on one device or are split over many.

A guard keeps one broken simulation from ending a run of thousands: an env whose state turns non-finite
(NaN or inf in its observation or physics state) is reset on the spot, and its step is marked invalid
(``valid = 0``): PPO, the reward statistics and the metrics leave it out, and the trainer logs how often it
happened (``env/non_finite_resets``).

The rollout knows neither PPO nor the reward model: it calls ``policy_fn``, ``value_fn`` and ``reward_fn``.
The reward function may keep a memory (any pytree: a score held between the steps it scores, the best frame so
far) that the rollout threads through its steps in ``RolloutCarry.reward_memory``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State
from flax import struct

from rewardax.rl.normalize import RunningMeanStd

PolicyFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]
"""(normalised obs [B, O], per-env keys [B]) -> (action [B, A], log_prob [B], env_action [B, A])."""
ValueFn = Callable[[jax.Array], jax.Array]
"""normalised obs [B, O] -> value [B]."""
RewardFn = Callable[[State, jax.Array, Any], tuple[jax.Array, dict[str, jax.Array], Any]]
"""(post-step State batch, [B] whether the step is the first of its episode, memory)
-> (reward [B], metrics {name: [B]}, memory)."""


@struct.dataclass
class RolloutCarry:
    """What a rollout hands to the next one."""

    env_state: State
    """Batched [B] env state the next step starts from."""
    steps: jax.Array
    """[B] int32 steps taken in each env's current episode."""
    keys: jax.Array
    """[B] each env's own random key (actions and resets)."""
    obs_stats: RunningMeanStd
    """Moments of every observation the policy has seen; observations are normalised with them."""
    reward_memory: Any = None
    """What ``reward_fn`` remembers from one step to the next (None when it remembers nothing)."""


@struct.dataclass
class Transition:
    """One step of a batch of envs; a rollout returns these stacked to [T, B]."""

    obs: jax.Array
    """Normalised observation the policy acted on."""
    action: jax.Array
    """Raw action sample (before clipping or scaling for the env)."""
    log_prob: jax.Array
    value: jax.Array
    """Value of ``obs``."""
    reward: jax.Array
    """Reward from ``reward_fn`` (unscaled)."""
    next_value: jax.Array
    """Value of the observation this step reached, before any reset."""
    terminated: jax.Array
    """The env ended the episode (``done``): no value beyond this step."""
    episode_end: jax.Array
    """Terminated, truncated at the time limit, or invalid; the env was reset after this step."""
    valid: jax.Array
    """1.0, or 0.0 where the step reached a non-finite state (its reward, values and metrics are zeroed)."""
    metrics: dict[str, jax.Array]
    """Metrics from ``reward_fn``."""


def init_carry(env: Env, key: jax.Array, num_envs: int, axis_name: str | None = None) -> RolloutCarry:
    """``num_envs`` freshly reset envs; observation statistics start from their observations.

    Env i's key is ``fold_in(key, i)`` with i its global index; with ``axis_name``, ``num_envs`` is per device
    and device d holds envs d·num_envs … (d + 1)·num_envs − 1.
    """
    first = 0 if axis_name is None else jax.lax.axis_index(axis_name) * num_envs
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(first + jnp.arange(num_envs))
    keys, reset_keys = _split_each(keys)
    env_state = jax.vmap(env.reset)(reset_keys)
    obs_stats = RunningMeanStd.create(env_state.obs.shape[1:]).update(env_state.obs, axis_name)
    return RolloutCarry(env_state, jnp.zeros(num_envs, jnp.int32), keys, obs_stats)


def _split_each(keys: jax.Array, num: int = 2) -> tuple[jax.Array, ...]:
    """Split every key of a [B] batch: ``num`` [B] batches of keys."""
    return tuple(jnp.moveaxis(jax.vmap(lambda k: jax.random.split(k, num))(keys), 1, 0))


def _device_varying(tree, axis_name: str | None):
    """Type every leaf of a per-env pytree as differing between devices.

    Under shard_map, scan carries and cond branches must keep one replication type, but an env can return
    constants (a zero reward, ``done`` = 0) that JAX would type as identical on all devices.
    """
    if axis_name is None:
        return tree

    axes = (axis_name,) if isinstance(axis_name, str) else tuple(axis_name)

    def cast(x):
        missing = tuple(a for a in axes if a not in jax.typeof(x).manual_axis_type.varying)
        return jax.lax.pcast(x, missing, to="varying") if missing else x

    return jax.tree.map(cast, tree)


def finite_envs(state: State) -> jax.Array:
    """[B] whether each env's observation and physics state (qpos, qvel when it has them) are all finite."""
    parts = [state.obs] + [getattr(state.pipeline_state, name) for name in ("qpos", "qvel")
                            if hasattr(state.pipeline_state, name)]
    return jnp.stack([jnp.isfinite(x.reshape(x.shape[0], -1)).all(-1) for x in parts]).all(0)


def select_envs(mask: jax.Array, on_true, on_false):
    """Per-env select over two batched pytrees."""
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b),
                        on_true, on_false)


def rollout(env: Env, policy_fn: PolicyFn, value_fn: ValueFn, reward_fn: RewardFn, carry: RolloutCarry,
            num_steps: int, episode_length: int, axis_name: str | None = None) -> tuple[RolloutCarry, Transition]:
    """Step every env ``num_steps`` times; episodes end on ``done`` or after ``episode_length`` steps.

    Observation statistics are updated after each step with the observations the policy will see next.
    With ``axis_name`` the statistics combine every device's envs.
    """
    reset, step = jax.vmap(env.reset), jax.vmap(env.step)

    def one_step(carry: RolloutCarry, _):
        keys, action_keys, reset_keys = _split_each(carry.keys, 3)
        obs = carry.obs_stats.normalize(carry.env_state.obs)
        action, log_prob, env_action = policy_fn(obs, action_keys)
        value = value_fn(obs)

        reached = _device_varying(step(carry.env_state, env_action), axis_name)
        valid = finite_envs(reached)
        reward, metrics, memory = reward_fn(reached, carry.steps == 0, carry.reward_memory)
        reward = jnp.where(valid, reward, 0.0)
        metrics = {name: jnp.where(valid, value, 0.0) for name, value in metrics.items()}
        steps = carry.steps + 1
        terminated = reached.done.astype(bool) & valid
        episode_end = terminated | (steps >= episode_length) | ~valid

        env_state = jax.lax.cond(
            episode_end.any(),
            lambda: select_envs(episode_end, reset(reset_keys), reached),
            lambda: reached)
        obs_stats = carry.obs_stats.update(env_state.obs, axis_name)
        next_value = jnp.where(valid, value_fn(obs_stats.normalize(reached.obs)), 0.0)

        transition = Transition(obs, action, log_prob, value, reward, next_value, terminated, episode_end,
                                valid.astype(jnp.float32), metrics)
        return RolloutCarry(env_state, jnp.where(episode_end, 0, steps), keys, obs_stats, memory), transition

    carry = carry.replace(env_state=_device_varying(carry.env_state, axis_name),
                          steps=_device_varying(carry.steps, axis_name), keys=_device_varying(carry.keys, axis_name))
    return jax.lax.scan(one_step, carry, length=num_steps)
