"""The reward model's losses, pinned to hand-computed values."""

import math

import jax.numpy as jnp
import pytest

from rewardax.rewards.losses import answer_cross_entropy, bradley_terry


def test_answer_cross_entropy_by_hand():
    log_yes, log_no = jnp.log(jnp.array([0.5, 0.2, 0.6])), jnp.log(jnp.array([0.25, 0.7, 0.3]))
    label, weight = jnp.array([1.0, 0.0, 0.5]), jnp.array([1.0, 1.0, 2.0])
    # −ln 0.5 = 0.6931; −ln 0.7 = 0.3567; ½(−ln 0.6 − ln 0.3) = ½(0.5108 + 1.2040) = 0.8574 (weight 2)
    expected = (0.693147 + 0.356675 + 2 * 0.857399) / 4
    assert float(answer_cross_entropy(log_yes, log_no, label, weight)) == pytest.approx(expected, rel=1e-5)
    assert float(answer_cross_entropy(log_yes, log_no, label, jnp.zeros(3))) == 0.0  # nothing answered


def test_bradley_terry_by_hand():
    r_a, r_b = jnp.array([2.0, 0.0, 1.0]), jnp.array([0.0, 1.0, 1.0])
    label, weight = jnp.array([1.0, 1.0, 0.5]), jnp.array([1.0, 1.0, 0.0])
    # −ln σ(2) = ln(1 + e⁻²) = 0.1269; −ln σ(−1) = ln(1 + e) = 1.3133; the third is skipped (weight 0)
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.e)) / 2
    assert float(bradley_terry(r_a, r_b, label, weight)) == pytest.approx(expected, rel=1e-6)
    tie = bradley_terry(jnp.array([0.3]), jnp.array([0.3]), jnp.array([0.5]), jnp.ones(1))
    assert float(tie) == pytest.approx(math.log(2.0), rel=1e-6)  # a tie between equal rewards: ln 2
