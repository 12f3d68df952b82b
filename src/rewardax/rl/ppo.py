"""Proximal policy optimisation as pure functions: config, batch from a rollout, loss, optimiser, update.

One training iteration, all inside `jit` (and `shard_map` for data parallelism, with ``axis_name``):

    carry, transitions = rollout(...)                                   # rewardax.rl.rollout
    scaler, rewards = scale_rewards(scaler, transitions.reward, ...)    # optional, rewardax.rl.normalize
    batch = make_batch(transitions, rewards, config)
    params, opt_state, metrics = update(agent, optimizer, params, opt_state, batch, key, config)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rewardax.rl.gae import gae
from rewardax.rl.networks import ActorCritic, Params, gaussian_entropy, gaussian_log_prob
from rewardax.stats import device_mean, device_sum
from rewardax.rl.rollout import Transition


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters (defaults: the usual continuous-control values)."""

    learning_rate: float = 3e-4
    """Adam step size at the start of training."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    """How the step size decays to 0 over the run: not at all, linearly, or along a half cosine."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE's bias–variance trade-off: 0 is one-step TD, 1 is the Monte Carlo return."""
    clip_eps: float = 0.2
    """Probability ratios outside [1 - clip_eps, 1 + clip_eps] get no gradient from the surrogate."""
    clip_value_loss: bool = False
    """Also clip the value change to ±clip_eps around the rollout's values (off: it slows value learning)."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Gradients are rescaled to at most this global norm (after averaging over devices)."""
    epochs: int = 10
    """Passes over each rollout."""
    minibatches: int = 4
    """Minibatches per pass; each holds num_steps / minibatches time steps of every env, so it must divide
    num_steps."""
    num_steps: int = 128
    """Env steps per rollout (T)."""
    normalise_advantages: bool = True
    """Standardise the advantages of each minibatch (over all devices)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of both the policy and the value MLP."""
    activation: str = "tanh"
    """Hidden activation: the name of a `jax.nn` function."""
    init_log_std: float = 0.0
    """Initial log standard deviation of every action dimension."""
    truncation_as_terminal: bool = False
    """Treat the time limit as termination (no bootstrap), as the original VLM-RM code did. Off is correct."""
    scale_reward: bool = True
    """Divide rewards by the running std of discounted returns (`rewardax.rl.normalize`): CLIP rewards live in
    a narrow band, which would otherwise give tiny advantages."""

    def __post_init__(self):
        problems = self.problems()
        if problems:
            raise ValueError("invalid PPO config: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with these values, each with what would be right (empty: nothing)."""
        problems = []
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            problems.append(f"lr_schedule must be constant, linear or cosine, got {self.lr_schedule!r}")
        for name in ("epochs", "minibatches", "num_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not problems and self.num_steps % self.minibatches:
            problems.append(f"minibatches={self.minibatches} must divide num_steps={self.num_steps} (each minibatch "
                            f"holds num_steps / minibatches time steps of every env)")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be positive, got {self.learning_rate!r} (a negative one ascends "
                            f"the loss)")
        for name, low, high in (("gamma", 0.0, 1.0), ("gae_lambda", 0.0, 1.0)):
            if not low <= getattr(self, name) <= high:
                problems.append(f"{name} must be in [{low:g}, {high:g}], got {getattr(self, name)!r}")
        for name in ("clip_eps", "max_grad_norm"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("vf_coef", "ent_coef"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be at least 0, got {getattr(self, name)!r}")
        if not self.hidden_sizes or any(not isinstance(h, int) or h < 1 for h in self.hidden_sizes):
            problems.append(f"hidden_sizes must be one or more positive widths, got {self.hidden_sizes!r}")
        if not callable(getattr(jax.nn, self.activation, None)):
            problems.append(f"activation must name a jax.nn function (tanh, relu, silu, ...), got {self.activation!r}")
        return problems


@struct.dataclass
class Batch:
    """[T, B] training data from a rollout (time-major, one column per env)."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    """Log-probability of ``action`` under the policy that collected it."""
    value: jax.Array
    """Value estimate at collection time."""
    advantage: jax.Array
    target: jax.Array
    """Value target: advantage + value."""
    valid: jax.Array
    """1.0 for a real step, 0.0 for one that reached a non-finite state (left out of the loss)."""


def make_batch(transitions: Transition, rewards: jax.Array, config: PPOConfig) -> Batch:
    """GAE over the [T, B] ``transitions`` with ``rewards`` (raw or scaled).

    An invalid step gets advantage 0 and target = its own value (its reward is set to its value and it ends
    without bootstrap), so the step before it bootstraps from the last finite state as at a truncation.
    """
    invalid = transitions.valid == 0
    terminated = transitions.episode_end if config.truncation_as_terminal else transitions.terminated
    rewards = jnp.where(invalid, transitions.value, rewards)
    advantage, target = gae(rewards, transitions.value, transitions.next_value, terminated | invalid,
                            transitions.episode_end, config.gamma, config.gae_lambda)
    return Batch(transitions.obs, transitions.action, transitions.log_prob, transitions.value, advantage, target,
                 transitions.valid)


def _global_mean(x: jax.Array, weight: jax.Array, axis_name: str | None) -> jax.Array:
    """Mean of ``x`` weighted by ``weight`` over every element on every device."""
    sums = jnp.stack([(x * weight).sum(), weight.sum()])
    sums = device_sum(sums, axis_name)
    return sums[0] / jnp.maximum(sums[1], 1.0)


def ppo_loss(params: Params, agent: ActorCritic, batch: Batch, config: PPOConfig,
             axis_name: str | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped surrogate + vf_coef · value loss − ent_coef · entropy, and diagnostics.

    Every term is a mean over the valid steps only (``batch.valid``). With ``axis_name``, the means and the
    advantage moments are taken over the whole cross-device minibatch, and the loss is the device's share of
    the global mean, so the data-parallel gradient (averaged over devices) equals the single-device one.
    """
    valid = batch.valid
    devices = 1 if axis_name is None else jax.lax.psum(1, axis_name)
    count = valid.sum() if axis_name is None else jax.lax.psum(valid.sum(), axis_name)
    share = devices / jnp.maximum(count, 1.0)  # sum(x * valid) * share: this device's part of the global mean

    def mean(x):
        return (x * valid).sum() * share

    advantage = batch.advantage
    if config.normalise_advantages:
        centre = _global_mean(advantage, valid, axis_name)
        std = jnp.sqrt(_global_mean((advantage - centre) ** 2, valid, axis_name))
        advantage = (advantage - centre) / (std + 1e-8)

    mean_action, log_std = agent.distribution(params, batch.obs)
    log_ratio = gaussian_log_prob(mean_action, log_std, batch.action) - batch.log_prob
    ratio = jnp.exp(log_ratio)
    clipped_ratio = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
    policy_loss = mean(-jnp.minimum(ratio * advantage, clipped_ratio * advantage))

    value = agent.value(params, batch.obs)
    value_error = (value - batch.target) ** 2
    if config.clip_value_loss:
        clipped_value = batch.value + jnp.clip(value - batch.value, -config.clip_eps, config.clip_eps)
        value_error = jnp.maximum(value_error, (clipped_value - batch.target) ** 2)
    value_loss = 0.5 * mean(value_error)

    entropy = mean(gaussian_entropy(log_std))
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
    metrics = {
        "loss": loss,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": mean((ratio - 1.0) - log_ratio),
        "clip_fraction": mean(jnp.abs(ratio - 1.0) > config.clip_eps),
    }
    return loss, metrics


def make_optimizer(config: PPOConfig, total_updates: int) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam whose step size follows ``config.lr_schedule``.

    ``total_updates`` is the number of optimiser steps in the run: iterations × epochs × minibatches.
    """
    schedules = {
        "constant": lambda: config.learning_rate,
        "linear": lambda: optax.linear_schedule(config.learning_rate, 0.0, total_updates),
        "cosine": lambda: optax.cosine_decay_schedule(config.learning_rate, total_updates),
    }
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                       optax.adam(schedules[config.lr_schedule](), eps=1e-5))


def update(agent: ActorCritic, optimizer: optax.GradientTransformation, params: Params,
           opt_state: optax.OptState, batch: Batch, key: jax.Array, config: PPOConfig,
           axis_name: str | None = None) -> tuple[Params, optax.OptState, dict[str, jax.Array]]:
    """``config.epochs`` passes over the [T, B] ``batch`` in ``config.minibatches`` shuffled minibatches.

    A minibatch is a random set of T / minibatches time steps, taken from every env. The shuffle depends
    only on ``key`` (the same on every device), so with ``axis_name`` the union of the devices' minibatches
    is exactly the minibatch one device would draw from the whole batch: gradients and metrics are
    averaged over devices and a data-parallel run takes the same steps as a single-device one. Returns the
    new params, optimiser state and the loss metrics averaged over all minibatches.
    """
    num_steps = batch.obs.shape[0]
    if num_steps % config.minibatches:
        raise ValueError(f"minibatches={config.minibatches} must divide the {num_steps} time steps of a rollout "
                         f"(num_steps); change one of them")
    steps_per_minibatch = num_steps // config.minibatches

    def minibatch_step(state, minibatch):
        params, opt_state = state
        minibatch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), minibatch)  # [t, B] -> [t·B]
        if axis_name is None:
            grads, metrics = jax.grad(ppo_loss, has_aux=True)(params, agent, minibatch, config)
        else:
            # Differentiate per-device copies: under shard_map's replication checks the gradient of the
            # replicated params would otherwise come back already summed (not averaged) over devices.
            local_params = jax.lax.pcast(params, axis_name, to="varying")
            grads, metrics = jax.grad(ppo_loss, has_aux=True)(local_params, agent, minibatch, config, axis_name)
            grads, metrics = device_mean((grads, metrics), axis_name)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), metrics

    def epoch(state, key):
        order = jax.random.permutation(key, num_steps)
        minibatches = jax.tree.map(
            lambda x: x[order].reshape((config.minibatches, steps_per_minibatch) + x.shape[1:]), batch)
        return jax.lax.scan(minibatch_step, state, minibatches)

    (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, config.epochs))
    return params, opt_state, jax.tree.map(jnp.mean, metrics)
