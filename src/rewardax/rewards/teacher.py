"""A simulated teacher for training a reward model inside the step, the way B-Pref (Lee et al. 2021) simulates a
human labeller: labels for single frames from the task's ground truth, drawn inside the compiled program.

What a rational teacher says, for single frames:

- yes/no (pointwise): "yes" (1) exactly where the task's binary oracle passes (``oracle/success``);
- a preference between frames a and b (B-Pref's segments, here of length one, so its myopic teacher has nothing
  to discount): 1 if a's dense ground truth is higher (``oracle/dense``), 0 if lower, ½ on a tie.

The irrational teachers of B-Pref, as they apply to single frames (`Teacher`'s fields; all off by default):

- ``mistake`` ε: every label is flipped (y → 1 − y) with probability ε, independently;
- ``noisy`` β > 0 (preferences): a is preferred with probability σ(β (d_a − d_b)), the softmax of β times the two
  frames' dense values (B-Pref's stochastic teacher; β → ∞ is the rational one);
- ``equal`` δ (preferences): frames whose dense values differ by less than δ are called equally good, ½, which
  trains as half "yes" and half "no";
- ``skip`` δ (preferences): a query whose frames both have dense values below δ is not answered (weight 0): the
  teacher sees neither doing the task.

Noisy, equal and skip compare two frames, so they apply to preferences only; yes/no labels take ``mistake``.
A label comes with a weight (1 answered, 0 skipped), so batches keep their shapes under `jit`.

Which frames to ask about (`choose`): uniformly at random, or those the reward model is least sure of (the largest
entropy of its P(yes), PEBBLE's entropy rule).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Teacher:
    """A simulated labeller: rational by default, irrational by B-Pref's four options (module docstring)."""

    mistake: float = 0.0
    """Probability ε that a label is flipped."""
    noisy: float = 0.0
    """β of the stochastic teacher for preferences (0: rational, a hard comparison)."""
    equal: float = 0.0
    """Preferences between frames whose dense values differ by less than this are ½."""
    skip: float = 0.0
    """Preferences between frames whose dense values are both below this are not answered."""

    def __post_init__(self):
        problems = self.problems()
        if problems:
            raise ValueError("invalid teacher: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with these values, each with what would be right (empty: nothing)."""
        problems = []
        if not 0.0 <= self.mistake <= 0.5:
            problems.append(f"mistake must be a probability in [0, 0.5] (0.5: labels are coin flips), got "
                            f"{self.mistake!r}")
        for name in ("noisy", "equal", "skip"):
            if not getattr(self, name) >= 0.0:
                problems.append(f"{name} must be at least 0 (0: off), got {getattr(self, name)!r}")
        return problems

    def yes_no(self, key: jax.Array, success: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(label, weight)``: "yes" (1.0) where ``success`` holds, else 0.0, after the teacher's mistakes; every
        weight is 1."""
        label = (jnp.asarray(success) > 0.5).astype(jnp.float32)
        return self._flip(key, label), jnp.ones_like(label)

    def prefer(self, key: jax.Array, dense_a: jax.Array, dense_b: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(label, weight)`` of the preferences "a is better than b" (1, 0 or ½) from the two frames' dense values;
        weight 0 for the queries the teacher skips."""
        noise_key, mistake_key = jax.random.split(key)
        a, b = jnp.asarray(dense_a, jnp.float32), jnp.asarray(dense_b, jnp.float32)
        if self.noisy > 0:
            label = jax.random.bernoulli(noise_key, jax.nn.sigmoid(self.noisy * (a - b))).astype(jnp.float32)
        else:
            label = jnp.where(a > b, 1.0, jnp.where(a < b, 0.0, 0.5))
        label = jnp.where(jnp.abs(a - b) < self.equal, 0.5, label)
        weight = jnp.where(jnp.maximum(a, b) < self.skip, 0.0, 1.0)
        return self._flip(mistake_key, label), weight

    def _flip(self, key: jax.Array, label: jax.Array) -> jax.Array:
        if self.mistake == 0:
            return label
        return jnp.where(jax.random.bernoulli(key, self.mistake, label.shape), 1.0 - label, label)


def choose(key: jax.Array, count: int, candidates: int, p_yes: jax.Array | None = None) -> jax.Array:
    """Indices of ``count`` of ``candidates`` to ask the teacher about, without repeats: uniformly at random, or,
    given the reward model's ``p_yes [candidates]`` on them, those with the largest binary entropy of it (the
    model's least certain answers, PEBBLE's entropy rule; random order among equal entropies)."""
    if not 0 < count <= candidates:
        raise ValueError(f"cannot choose {count} queries from {candidates} candidates: the label budget per "
                         f"iteration must be between 1 and the frames a rollout offers")
    if p_yes is None:
        return jax.random.permutation(key, candidates)[:count]
    p = jnp.clip(p_yes.astype(jnp.float32), 1e-6, 1 - 1e-6)
    entropy = -(p * jnp.log(p) + (1 - p) * jnp.log1p(-p))
    return jax.lax.top_k(entropy + 1e-5 * jax.random.uniform(key, (candidates,)), count)[1]
