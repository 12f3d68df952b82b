"""The losses that train a yes-token reward model (RewardDance's two recipes), on the answer's log-probabilities.

Both read the model's next-token distribution at the answer position: ``log_yes`` and ``log_no``, the
full-vocabulary log-probabilities of "yes" and "no" (each summed over the tokenizer's spellings of the word), and
the reward r = log_yes − log_no (the log-odds). Labels are in [0, 1]: 1 "yes" / "the first is better", 0 the
opposite, ½ a tie (trained as half of each); examples with weight 0 (empty buffer slots, skipped queries) do not
count. Each loss is the weighted mean over the examples, 0 when no example has weight.

- `answer_cross_entropy`: next-token cross-entropy on the answer, −[y·log P(yes) + (1−y)·log P(no)]: the
  pairwise model's loss (the answer to "is image 2 better than image 1?") and the pointwise model's auxiliary
  term on yes/no labels.
- `bradley_terry`: −[y·log σ(r_a − r_b) + (1−y)·log σ(r_b − r_a)] for preference pairs scored one frame at a
  time: the pointwise model's main loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
    """Σ w·v / Σ w (0 when every weight is 0)."""
    total = weight.sum()
    return jnp.where(total > 0, (weight * values).sum() / jnp.maximum(total, 1e-12), 0.0)


def answer_cross_entropy(log_yes: jax.Array, log_no: jax.Array, label: jax.Array, weight: jax.Array) -> jax.Array:
    """Next-token cross-entropy of the answer "yes" (label 1) or "no" (label 0); see the module docstring."""
    return weighted_mean(-(label * log_yes + (1 - label) * log_no), weight)


def bradley_terry(reward_a: jax.Array, reward_b: jax.Array, label: jax.Array, weight: jax.Array) -> jax.Array:
    """−log σ(r_a − r_b) for "a is better" (label 1), −log σ(r_b − r_a) for label 0; see the module docstring."""
    margin = reward_a - reward_b
    return weighted_mean(-(label * jax.nn.log_sigmoid(margin) + (1 - label) * jax.nn.log_sigmoid(-margin)), weight)
