"""Probe envs: tiny pure-JAX `TaskEnv`s (no task, no frames) whose correct values and policies are known in closed form.

Each isolates one thing an RL implementation can get wrong (value fitting, using the observation, using the
action, discounting, truncation), so a short training run can assert the exact answer. Every probe has one
observation and one action dimension, and exposes ``episode_length`` (the time limit a rollout applies).
Their known answers are in their docstrings; γ is the discount factor.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import State

from rewardax.envs.base import TaskEnv


def _state(obs: jax.Array, reward: float | jax.Array = 0.0, done: float | jax.Array = 0.0) -> State:
    return State(None, obs, jnp.float32(reward), jnp.float32(done))


def _random_sign(key: jax.Array) -> jax.Array:
    """Observation [±1] with equal probability."""
    return jnp.where(jax.random.bernoulli(key), 1.0, -1.0)[None]


class Probe(TaskEnv):
    """Common shape of the probes: observation and action of size 1."""

    episode_length: int = 1
    """Steps before the rollout truncates an episode."""
    dt: float = 1.0
    """One step is one (abstract) second."""

    @property
    def observation_size(self) -> int:
        return 1

    @property
    def action_size(self) -> int:
        return 1


class ConstantReward(Probe):
    """One step, reward +1, always terminates. Known answer: V = 1 (tests value fitting alone)."""

    def reset(self, rng: jax.Array) -> State:
        return _state(jnp.zeros(1))

    def step(self, state: State, action: jax.Array) -> State:
        return _state(state.obs, 1.0, 1.0)


class ObservedReward(Probe):
    """Observation ±1 at random, reward = observation, one step. Known answer: V(obs) = obs (tests that the
    value network uses its input)."""

    def reset(self, rng: jax.Array) -> State:
        return _state(_random_sign(rng))

    def step(self, state: State, action: jax.Array) -> State:
        return _state(state.obs, state.obs[0], 1.0)


class ActionSign(Probe):
    """Observation ±1 at random (the target), reward +1 if the action has the target's sign, else 0; one step.

    Known answer: the optimal policy's mean has the sign of the observation, and V(obs) = 1 under it (tests
    the policy gradient, conditioned on the observation).
    """

    def reset(self, rng: jax.Array) -> State:
        return _state(_random_sign(rng))

    def step(self, state: State, action: jax.Array) -> State:
        return _state(state.obs, jnp.sign(action[0]) == state.obs[0], 1.0)


class TwoStep(Probe):
    """Two steps: observation 0 with reward 0, then observation 1 with reward +1 and termination.

    Known answer: V(0) = γ, V(1) = 1 (tests discounting and bootstrapping across steps).
    """

    episode_length = 2

    def reset(self, rng: jax.Array) -> State:
        return _state(jnp.zeros(1))

    def step(self, state: State, action: jax.Array) -> State:
        last = state.obs[0] > 0
        return _state(jnp.ones(1), last, last)


class TimeLimit(Probe):
    """Reward +1 every step, never terminates; truncated after k = ``episode_length`` steps. The observation
    is the step count modulo k, so the state a truncated episode ends in looks like a fresh start (its value
    is one the network is trained on, not an extrapolation).

    Known answer: the task is endless, so V(t) = 1/(1 − γ) at every t when truncation bootstraps. Treating
    the time limit as terminal instead learns V(t) = (1 − γ^(k − t))/(1 − γ): lower, and falling to 1 at the
    last step.
    """

    def __init__(self, episode_length: int = 5):
        self.episode_length = episode_length

    def reset(self, rng: jax.Array) -> State:
        return _state(jnp.zeros(1))

    def step(self, state: State, action: jax.Array) -> State:
        return _state((state.obs + 1.0) % self.episode_length, 1.0, 0.0)


class Reach(Probe):
    """A small control task with its true reward (not a probe with a closed-form answer).

    A point on a line starts at a random position and must move to a random target, both uniform in
    [-1, 1]; each step the action (clipped to [-1, 1]) moves it by at most 0.2. Observation: (position,
    target). Reward: −|position − target| after the move. Episodes last 20 steps. Random actions score about
    −0.7 per step; a good policy about −0.1 (it needs a few steps to arrive).
    """

    episode_length: int = 20

    @property
    def observation_size(self) -> int:
        return 2

    def reset(self, rng: jax.Array) -> State:
        return _state(jax.random.uniform(rng, (2,), minval=-1.0, maxval=1.0))

    def step(self, state: State, action: jax.Array) -> State:
        position = state.obs[0] + 0.2 * jnp.clip(action[0], -1.0, 1.0)
        target = state.obs[1]
        return _state(jnp.stack([position, target]), -jnp.abs(position - target))
