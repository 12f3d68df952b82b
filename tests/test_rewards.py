"""Rewards: the goal–baseline formula on toy embeddings, the CLIP reward end to end, the oracle and dense rewards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mujoco import mjx

from brax.envs.base import State

import rewardax.envs as envs
from rewardax.envs.tasks import pose_data
from rewardax.models import l2_normalize, load_clip, write_random_clip
from rewardax.rewards import ClipReward, DenseReward, OracleReward, clip_reward, goal_baseline_reward

G, B, S = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])


def test_alpha_zero_is_cosine_similarity():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(5, 4))
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    g, b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 4)))
    np.testing.assert_allclose(goal_baseline_reward(s, g, b, 0.0), s @ g, atol=1e-6)


@pytest.mark.parametrize("alpha,expected", [
    # s − g = (−1, 0, 1); u = (1, −1, 0)/√2; (s − g)·u = −1/√2
    (0.0, 0.0),  # cosine of orthogonal unit vectors
    (1.0, 1 - 0.5 * 0.5),  # only the component along g − b survives: ½·(1/√2)²
    (0.5, 1 - 0.5 * (0.75**2 + 0.25**2 + 0.5**2)),  # ½(−½, ½, 0) + ½(−1, 0, 1) = (−¾, ¼, ½)
])
def test_hand_computed_values_in_three_dimensions(alpha, expected):
    assert float(goal_baseline_reward(S, G, B, alpha)) == pytest.approx(expected, abs=1e-6)


def test_general_alpha_matches_the_projection_onto_the_line_through_b_and_g():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(6, 3))
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    g, b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 3)))
    u = (g - b) / np.linalg.norm(g - b)
    proj = b + ((s - b) @ u)[:, None] * u  # the affine projection onto L, written out
    for alpha in (0.0, 0.3, 0.7, 1.0):
        expected = 1 - 0.5 * np.sum((alpha * proj + (1 - alpha) * s - g) ** 2, axis=1)
        np.testing.assert_allclose(goal_baseline_reward(s, g, b, alpha), expected, atol=1e-6)


def test_two_dimensional_toy_alpha_one_ignores_what_goal_and_baseline_share():
    """In 2-D with g = (1, 0), b = (0, 1): moving s along g + b (shared by both prompts) leaves R unchanged."""
    g, b = np.array([1.0, 0]), np.array([0, 1.0])
    s1 = np.array([np.cos(0.3), np.sin(0.3)])
    shift = np.array([1.0, 1.0]) * 0.2
    assert float(goal_baseline_reward(s1, g, b, 1.0)) == pytest.approx(float(goal_baseline_reward(s1 + shift, g, b, 1.0)))
    assert float(goal_baseline_reward(s1, g, b, 0.0)) != pytest.approx(float(goal_baseline_reward(s1 + shift, g, b, 0.0)))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    path = write_random_clip(tmp_path_factory.mktemp("clip") / "tiny-random-clip")
    model, tokenizer = load_clip(path)
    return path, model, tokenizer


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_out_of_range_is_one_clear_error(tiny_clip, alpha):
    path, model, tokenizer = tiny_clip
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        ClipReward.create(model, tokenizer, ["a robot"], ["a thing"], alpha)


def test_bad_prompts_are_one_clear_error(tiny_clip):
    _, model, tokenizer = tiny_clip
    with pytest.raises(ValueError, match="non-empty list"):
        ClipReward.create(model, tokenizer, "a robot", ["a thing"])


def test_several_prompts_average_their_normalised_embeddings(tiny_clip):
    _, model, tokenizer = tiny_clip
    prompts = ["a humanoid robot kneeling", "a robot on its knees"]
    reward = ClipReward.create(model, tokenizer, prompts, ["a humanoid robot"])
    from rewardax.models import tokenize
    each = l2_normalize(model.encode_text(jnp.asarray(tokenize(tokenizer, prompts))))
    expected = (each[0] + each[1]) / np.linalg.norm(each[0] + each[1])
    np.testing.assert_allclose(reward.goal, expected, atol=1e-6)
    assert float(jnp.linalg.norm(reward.goal)) == pytest.approx(1.0)


def test_clip_reward_scores_frames_inside_jit(tiny_clip):
    path, model, tokenizer = tiny_clip
    task = envs.get_task("kneeling")
    reward = clip_reward(path, task.goal, task.baseline, alpha=0.5)
    frames = jax.random.randint(jax.random.PRNGKey(0), (3, 40, 56, 3), 0, 256).astype(jnp.uint8)
    value, metrics = jax.jit(lambda r, f: r(f, None))(reward, frames)
    s = reward.embed(frames)
    np.testing.assert_allclose(value, goal_baseline_reward(s, reward.goal, reward.baseline, 0.5), atol=1e-5)
    np.testing.assert_allclose(metrics["clip/cos_goal"], s @ reward.goal, atol=1e-5)
    assert value.shape == (3,) and metrics["clip/cos_baseline"].shape == (3,)


def test_oracle_reward_is_the_task_success_test():
    task = envs.get_task("kneeling")
    env = envs.make("kneeling")
    poses = [mjx.put_data(env.mj_model, pose_data(name, env.mj_model)) for name in ("kneeling", "standing")]
    batch = jax.tree.map(lambda *x: jnp.stack(x), *poses)
    value, metrics = OracleReward(task)(None, State(batch, None, None, None))
    np.testing.assert_array_equal(value, [1.0, 0.0])
    assert OracleReward.needs_frames is False and ClipReward.needs_frames is True


def test_oracle_reward_also_reports_the_dense_value():
    task = envs.get_task("kneeling")
    data = pose_data("standing")
    _, metrics = OracleReward(task)(None, State(data, None, None, None))
    assert float(metrics["oracle/dense"]) == pytest.approx(float(task.dense(data)))
    assert 0 < float(metrics["oracle/dense"]) < 1 and float(metrics["oracle/success"]) == 0


def test_dense_reward_scores_reset_states_inside_jit():
    env = envs.make("kneeling")
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 4))
    value, metrics = jax.jit(lambda r, s: r(None, s))(DenseReward(env.task), states)
    assert value.shape == (4,) and ((value >= 0) & (value <= 1)).all()
    assert (value < 1).all()  # the reset pose stands: not kneeling
    np.testing.assert_array_equal(value, metrics["oracle/dense"])
    np.testing.assert_array_equal(metrics["oracle/success"], states.metrics["success"])
    assert DenseReward.needs_frames is False


def test_the_dense_reward_adds_its_success_bonus_only_where_the_oracle_passes():
    from rewardax.rewards import DenseRewardConfig

    env = envs.make("kneeling")
    poses = [mjx.put_data(env.mj_model, pose_data(name, env.mj_model)) for name in ("kneeling", "standing")]
    batch = State(jax.tree.map(lambda *x: jnp.stack(x), *poses), None, None, None)
    plain, metrics = DenseRewardConfig().build(env)(None, batch)
    bonus, _ = DenseRewardConfig(success_bonus=0.5).build(env)(None, batch)
    np.testing.assert_allclose(bonus, plain + 0.5 * np.array([1.0, 0.0]))
    assert float(plain[0]) == 1.0 and 0 < float(plain[1]) < 1
    with pytest.raises(ValueError, match="success_bonus must be at least 0"):
        DenseRewardConfig(success_bonus=-1.0)

