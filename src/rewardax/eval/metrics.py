"""How well a reward model agrees with the ground truth: plain functions on arrays (NumPy or JAX, jittable).

- `epic_distance(rewards, ground_truth)`: the EPIC pseudometric (Gleave et al. 2021) as the VLM-RM paper uses it
  for goal-based tasks. A reward that depends only on the state reached, R(s, a, s') = r(s'), canonicalises
  to r(s') − E[r(S')] (every other term of the canonicalisation is a constant), so EPIC reduces to the Pearson
  distance √((1 − ρ) / 2) of the two rewards over the dataset's states: 0 for rewards that agree up to a
  positive affine map, √½ for uncorrelated ones, 1 for opposite ones.
- `epic_distance_transitions(reward_a, reward_b, ...)`: the general form, for rewards of whole transitions,
  canonicalised by Monte-Carlo means over a coverage distribution of states and actions.
- `roc_auc(scores, labels)`: the probability that a successful frame scores higher than an unsuccessful one
  (ties count half): 0.5 is a reward model blind to the task.
- `success_rate_at_threshold(scores, labels, threshold)`: the oracle success rate among the frames the reward
  model scores at or above ``threshold`` (how often "this looks done" is right).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from rewardax.stats import pearson, roc_auc

__all__ = ["canonicalise", "epic_distance", "epic_distance_transitions", "pearson", "roc_auc",
           "success_rate_at_threshold"]


def epic_distance(rewards, ground_truth, weights=None) -> jax.Array:
    """EPIC distance of two state-only rewards over the same states: √((1 − ρ) / 2) (see the module docstring)."""
    return jnp.sqrt(jnp.clip(1.0 - pearson(rewards, ground_truth, weights), 0.0, 2.0) / 2.0)


def canonicalise(reward: Callable, states, actions, next_states, coverage_states, coverage_actions,
                 gamma: float) -> jax.Array:
    """C(R)(s, a, s') = R(s, a, s') + γ·E[R(s', A, S')] − E[R(s, A, S')] − γ·E[R(S, A, S')], with S, S' drawn
    from ``coverage_states`` and A from ``coverage_actions`` (M samples each, paired by index).

    ``reward(states, actions, next_states) -> [N]`` is batched; states and actions may be pytrees of arrays
    with a leading batch axis. Returns ``[N]``.
    """
    m = jax.tree.leaves(coverage_actions)[0].shape[0]
    shuffled = jax.tree.map(lambda x: jnp.roll(x, 1, axis=0), coverage_states)  # S independent of S' = coverage

    def expected_from(origins):  # E over (A, S') of R(origin, A, S'), for each origin: [N]
        def one(origin):
            tiled = jax.tree.map(lambda x: jnp.broadcast_to(x, (m,) + x.shape), origin)
            return reward(tiled, coverage_actions, coverage_states).mean()
        return jax.lax.map(one, origins)

    constant = reward(shuffled, coverage_actions, coverage_states).mean()
    return (reward(states, actions, next_states) + gamma * expected_from(next_states) - expected_from(states)
            - gamma * constant)


def epic_distance_transitions(reward_a: Callable, reward_b: Callable, states, actions, next_states,
                              coverage_states, coverage_actions, gamma: float) -> jax.Array:
    """EPIC distance of two transition rewards: the Pearson distance of their canonicalisations over the
    transitions (``states``, ``actions``, ``next_states``), canonicalised over the coverage samples."""
    args = (states, actions, next_states, coverage_states, coverage_actions, gamma)
    return epic_distance(canonicalise(reward_a, *args), canonicalise(reward_b, *args))


def success_rate_at_threshold(scores, labels, threshold: float) -> jax.Array:
    """The fraction of frames scoring ≥ ``threshold`` whose label is a success (NaN when none scores that high)."""
    flagged = jnp.asarray(scores).ravel() >= threshold
    return (flagged & jnp.asarray(labels, bool).ravel()).sum() / flagged.sum()
