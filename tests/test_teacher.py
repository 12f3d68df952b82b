"""The simulated teacher: rational labels from the ground truth, and B-Pref's irrational teachers by their
statistics (flip rate, the noisy teacher's logistic curve, ties, skips); query selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardax.rewards.teacher import Teacher, choose

N = 200_000


def test_a_rational_teacher_says_what_the_ground_truth_says():
    label, weight = Teacher().yes_no(jax.random.key(0), jnp.array([1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(label, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(weight, 1.0)
    label, weight = Teacher().prefer(jax.random.key(0), jnp.array([0.9, 0.2, 0.5]), jnp.array([0.3, 0.4, 0.5]))
    np.testing.assert_array_equal(label, [1.0, 0.0, 0.5])
    np.testing.assert_array_equal(weight, 1.0)


def test_mistakes_flip_labels_at_their_rate():
    success = jnp.arange(N) % 2
    label, _ = jax.jit(Teacher(mistake=0.1).yes_no)(jax.random.key(1), success)
    flipped = float(jnp.mean(label != success))
    assert flipped == pytest.approx(0.1, abs=4 * np.sqrt(0.1 * 0.9 / N))  # four standard errors
    label, _ = Teacher(mistake=0.25).prefer(jax.random.key(2), jnp.ones(N), jnp.zeros(N))
    assert float(jnp.mean(label == 0.0)) == pytest.approx(0.25, abs=4 * np.sqrt(0.25 * 0.75 / N))


@pytest.mark.parametrize("gap", [0.0, 0.05, 0.2])
def test_the_noisy_teacher_prefers_with_the_logistic_of_beta_times_the_gap(gap):
    beta = 10.0
    label, _ = Teacher(noisy=beta).prefer(jax.random.key(3), jnp.full(N, 0.5 + gap), jnp.full(N, 0.5))
    expected = 1 / (1 + np.exp(-beta * gap))  # σ(10 × 0.2) = 0.881
    assert float(label.mean()) == pytest.approx(expected, abs=4 * np.sqrt(expected * (1 - expected) / N))
    assert set(np.unique(label)) <= {0.0, 1.0}


def test_equal_and_skip_margins():
    a, b = jnp.array([0.50, 0.50, 0.10, 0.90]), jnp.array([0.52, 0.70, 0.15, 0.10])
    label, weight = Teacher(equal=0.05, skip=0.2).prefer(jax.random.key(4), a, b)
    np.testing.assert_array_equal(label, [0.5, 0.0, 0.0, 1.0])  # gaps 0.02 and 0.05: only the first is a tie
    np.testing.assert_array_equal(weight, [1.0, 1.0, 0.0, 1.0])  # both below 0.2: skipped


def test_bad_teacher_values_are_named():
    with pytest.raises(ValueError, match=r"mistake must be a probability in \[0, 0.5\].*noisy must be at least 0"):
        Teacher(mistake=0.7, noisy=-1.0)


def test_queries_are_distinct_and_the_uncertain_ones_come_first():
    picked = np.asarray(choose(jax.random.key(5), 10, 50))
    assert len(set(picked)) == 10 and picked.min() >= 0 and picked.max() < 50
    p_yes = jnp.array([0.01, 0.5, 0.99, 0.45, 0.9, 0.6])
    assert set(np.asarray(choose(jax.random.key(6), 3, 6, p_yes))) == {1, 3, 5}
    with pytest.raises(ValueError, match="cannot choose 7 queries from 6 candidates"):
        choose(jax.random.key(7), 7, 6, p_yes)
