"""Policy and value networks (Flax NNX) and the pure functions PPO calls on their split state.

Actions: the policy is a diagonal Gaussian over an unbounded ``action``; the env receives that sample *clipped*
to [-1, 1], the action box of every env (`rewardax.envs.TaskEnv`, which maps it onto its actuators). Clipping is
part of the env, not of the policy, so the stored ``action`` is the raw sample and its log-probability and
entropy are the exact Gaussian ones (no change-of-variables term, unlike tanh squashing, and a closed-form
entropy).

Modules are built once with `init_actor_critic`, which returns a static `ActorCritic` (the graph definitions)
and a params pytree ``{"policy": nnx.State, "value": nnx.State}``; everything inside `jit` works on that pytree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Params = dict[str, nnx.State]


def _activation(name: str):
    fn = getattr(jax.nn, name, None)
    if not callable(fn):
        raise ValueError(f"unknown activation {name!r}; use the name of a jax.nn function, e.g. tanh, relu, gelu")
    return fn


class MLP(nnx.Module):
    """Dense layers with orthogonal weights (gain √2 on hidden layers, ``output_gain`` last) and zero biases."""

    def __init__(self, in_size: int, hidden_sizes: Sequence[int], out_size: int, activation: str,
                 output_gain: float, rngs: nnx.Rngs):
        sizes = [in_size, *hidden_sizes, out_size]
        gains = [math.sqrt(2.0)] * len(hidden_sizes) + [output_gain]
        self.layers = nnx.List([
            nnx.Linear(a, b, kernel_init=nnx.initializers.orthogonal(gain), bias_init=nnx.initializers.zeros,
                       rngs=rngs)
            for a, b, gain in zip(sizes[:-1], sizes[1:], gains)
        ])
        self.activation = _activation(activation)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)


class Policy(nnx.Module):
    """Gaussian policy: an MLP gives the mean, a learned state-independent vector the log-std.

    The small output gain (0.01) starts every action dimension near mean 0, so early behaviour is set by
    ``init_log_std``.
    """

    def __init__(self, obs_size: int, action_size: int, hidden_sizes: Sequence[int], activation: str,
                 init_log_std: float, rngs: nnx.Rngs):
        self.mean = MLP(obs_size, hidden_sizes, action_size, activation, 0.01, rngs)
        self.log_std = nnx.Param(jnp.full((action_size,), init_log_std, jnp.float32))

    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = self.mean(obs)
        return mean, jnp.broadcast_to(self.log_std[...], mean.shape)


class Value(nnx.Module):
    """State-value MLP with a scalar output."""

    def __init__(self, obs_size: int, hidden_sizes: Sequence[int], activation: str, rngs: nnx.Rngs):
        self.mlp = MLP(obs_size, hidden_sizes, 1, activation, 1.0, rngs)

    def __call__(self, obs: jax.Array) -> jax.Array:
        return self.mlp(obs)[..., 0]


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """Log-density of ``action`` under the diagonal Gaussian, summed over the last (action) axis."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy of the diagonal Gaussian, summed over the last (action) axis."""
    return jnp.sum(log_std + 0.5 * math.log(2 * math.pi * math.e), axis=-1)


@dataclasses.dataclass(frozen=True)
class ActorCritic:
    """The static half of the agent (graph definitions); the params pytree is passed to every call."""

    policy_graph: nnx.GraphDef
    value_graph: nnx.GraphDef

    def distribution(self, params: Params, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and log-std of the action distribution for (normalised) ``obs``."""
        return nnx.merge(self.policy_graph, params["policy"])(obs)

    def value(self, params: Params, obs: jax.Array) -> jax.Array:
        return nnx.merge(self.value_graph, params["value"])(obs)

    def act(self, params: Params, obs: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Sample for a batch ``obs [B, O]`` with one key per row: ``(action, log_prob, env_action)`` (the
        raw sample, its log-density, the sample clipped to the envs' action box [-1, 1])."""
        mean, log_std = self.distribution(params, obs)
        noise = jax.vmap(lambda key: jax.random.normal(key, mean.shape[1:]))(keys)
        action = mean + jnp.exp(log_std) * noise
        return action, gaussian_log_prob(mean, log_std, action), jnp.clip(action, -1.0, 1.0)


def init_actor_critic(key: jax.Array, obs_size: int, action_size: int, hidden_sizes: Sequence[int] = (64, 64),
                      activation: str = "tanh", init_log_std: float = 0.0) -> tuple[ActorCritic, Params]:
    """Separate policy and value MLPs, randomly initialised from ``key``."""
    policy_key, value_key = jax.random.split(key)
    policy_graph, policy_params = nnx.split(
        Policy(obs_size, action_size, hidden_sizes, activation, init_log_std, nnx.Rngs(policy_key)))
    value_graph, value_params = nnx.split(Value(obs_size, hidden_sizes, activation, nnx.Rngs(value_key)))
    return ActorCritic(policy_graph, value_graph), {"policy": policy_params, "value": value_params}
