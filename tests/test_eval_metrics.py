"""Reward-model metrics pinned to hand-computed values; EPIC's invariances (affine maps, potential shaping)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardax.eval import epic_distance, epic_distance_transitions, pearson, roc_auc, success_rate_at_threshold


def test_pearson_and_epic_distance_by_hand():
    x = jnp.asarray([1.0, 2.0, 3.0, 4.0])
    assert float(pearson(x, [1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)  # Σdxdy = 4, Σdx² = Σdy² = 5
    assert float(epic_distance(x, [1.0, 3.0, 2.0, 4.0])) == pytest.approx(np.sqrt(0.1))
    assert float(epic_distance(3.0 * x + 7.0, x)) == pytest.approx(0.0, abs=1e-4)  # positive affine: the same reward
    assert float(epic_distance(-x, x)) == pytest.approx(1.0)
    assert float(epic_distance(x, [5.0, 5.0, 9.0, 9.0], weights=[1, 1, 1, 0])) == pytest.approx(
        float(epic_distance(x[:3], [5.0, 5.0, 9.0])))  # weight 0 leaves a sample out
    assert np.isnan(float(pearson(x, jnp.ones(4))))


def test_roc_auc_and_success_rate_at_threshold_by_hand():
    scores, labels = jnp.asarray([0.1, 0.4, 0.35, 0.8]), jnp.asarray([0, 0, 1, 1])
    assert float(roc_auc(scores, labels)) == pytest.approx(0.75)  # 0.35 beats 0.1 only; 0.8 beats both
    assert float(roc_auc([0.5, 0.5], [1, 0])) == pytest.approx(0.5)  # a tie counts half
    assert float(roc_auc(scores, labels, weights=[1, 0, 1, 1])) == pytest.approx(1.0)  # without the 0.4
    assert float(success_rate_at_threshold(scores, labels, 0.35)) == pytest.approx(2 / 3)
    assert np.isnan(float(roc_auc(scores, jnp.zeros(4))))


def _transitions(n=64, m=256, seed=0):
    k = jax.random.split(jax.random.key(seed), 5)
    states, next_states = jax.random.normal(k[0], (n, 2)), jax.random.normal(k[1], (n, 2))
    actions = jax.random.normal(k[2], (n, 1))
    return states, actions, next_states, jax.random.normal(k[3], (m, 2)), jax.random.normal(k[4], (m, 1))


def test_general_epic_ignores_potential_shaping_and_reduces_to_pearson_for_state_rewards():
    gamma = 0.9
    goal = lambda s, a, s2: -jnp.sum((s2 - 1.0) ** 2, axis=-1)  # noqa: E731  a state-only reward r(s')
    potential = lambda s: jnp.sin(3.0 * s[..., 0]) + s[..., 1] ** 2  # noqa: E731
    shaped = lambda s, a, s2: goal(s, a, s2) + gamma * potential(s2) - potential(s)  # noqa: E731
    other = lambda s, a, s2: -jnp.sum((s2 + 0.5) ** 2, axis=-1) + 0.3 * a[..., 0]  # noqa: E731
    data = _transitions()
    assert float(epic_distance_transitions(goal, shaped, *data, gamma)) == pytest.approx(0.0, abs=2e-3)
    assert float(epic_distance(goal(*data[:3]), shaped(*data[:3]))) > 0.1  # shaping fools the plain Pearson distance
    plain = lambda s, a, s2: -jnp.sum((s2 + 0.5) ** 2, axis=-1)  # noqa: E731
    np.testing.assert_allclose(epic_distance_transitions(goal, plain, *data, gamma),
                               epic_distance(goal(*data[:3]), plain(*data[:3])), rtol=1e-4)
    assert 0.0 < float(epic_distance_transitions(goal, other, *data, gamma)) < 1.0
