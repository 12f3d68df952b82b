"""CartPole and MountainCar: the dynamics pinned to hand-computed steps, the paper's changes (no failure,
wrapped angle, clipped track; an absorbing goal), the oracle and dense ground truth, the renderers."""

import dataclasses
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rewardax.envs as envs
from rewardax.envs.classic import CartPoleState, MountainCarState

pytestmark = pytest.mark.timeout(300)


def _at(env, physics):
    return env._state(jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), physics))


def test_cartpole_step_pinned_to_the_hand_computed_euler_step():
    env = envs.make("cartpole")
    s = env.step(_at(env, CartPoleState(0.0, 0.0, 0.1, 0.0)), jnp.asarray([0.5])).pipeline_state  # a 5 N push
    np.testing.assert_allclose([s.x, s.x_dot, s.theta, s.theta_dot], [0.0, 0.0960663, 0.1, -0.1140285], atol=1e-6)


def test_cartpole_never_fails_its_angle_wraps_and_the_track_ends():
    env = envs.make("cartpole")
    step = jax.jit(jax.vmap(env.step))
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 8))
    pushes = jnp.ones((8, 1))
    for _ in range(150):  # full force to the right: the cart hits the end, the pole falls over and swings
        states = step(states, pushes)
        s = states.pipeline_state
        assert (np.abs(np.asarray(s.theta)) <= np.pi + 1e-6).all() and (np.abs(np.asarray(s.x)) <= 2.4).all()
        assert not np.asarray(states.done).any()
    assert (np.asarray(s.x) == 2.4).all() and (np.asarray(s.x_dot) == 0.0).all()
    assert not np.asarray(states.metrics["success"]).any()


def test_mountaincar_step_pinned_and_its_goal_absorbs():
    env = envs.make("mountaincar")
    s = env.step(_at(env, MountainCarState(-0.5, 0.0)), jnp.asarray([1.0])).pipeline_state
    np.testing.assert_allclose([s.x, s.v], [-0.498676843, 0.001323157], atol=1e-7)
    at_goal = _at(env, MountainCarState(0.46, 0.02))
    after = jax.jit(env.step)(at_goal, jnp.asarray([-1.0]))
    assert float(after.pipeline_state.x) == pytest.approx(0.46) and float(after.metrics["success"]) == 1.0
    wall = env.step(_at(env, MountainCarState(-1.19, -0.05)), jnp.asarray([-1.0])).pipeline_state
    assert float(wall.x) == pytest.approx(-1.2) and float(wall.v) == 0.0


@pytest.mark.parametrize("name", ["cartpole", "mountaincar"])
def test_dense_ground_truth_is_one_exactly_where_the_oracle_passes(name):
    env = envs.make(name)
    key = jax.random.key(1)
    if name == "cartpole":
        theta = jax.random.uniform(key, (1000,), minval=-np.pi, maxval=np.pi)
        physics = CartPoleState(jnp.zeros(1000), jnp.zeros(1000), theta, jnp.zeros(1000))
    else:
        x, v = jax.random.uniform(key, (2, 1000), minval=jnp.asarray([[-1.2], [-0.07]]), maxval=jnp.asarray([[0.6], [0.07]]))
        physics = MountainCarState(x, v)
    success, dense = np.asarray(env.task.success(physics)), np.asarray(env.task.dense(physics))
    assert 0 < success.mean() < 1 and ((dense >= 0) & (dense <= 1)).all()
    np.testing.assert_array_equal(dense == 1.0, success)


def test_renderers_draw_the_state_and_the_two_mountaincar_looks_differ():
    for name in ("cartpole", "mountaincar"):
        env = envs.check_env(envs.make(name))
        states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 2))
        frames = np.asarray(jax.jit(env.renderer(48, 64))(states.pipeline_state).rgb)
        goal = env.goal_frame(48, 64)
        assert frames.shape == (2, 48, 64, 3) and frames.dtype == np.uint8 and goal.shape == (48, 64, 3)
        assert (frames[0] != goal).any(), f"{name}: the start and the goal should look different"
    plain = envs.make("mountaincar", look="default").goal_frame(48, 64)
    textured = envs.make("mountaincar", look="paper").goal_frame(48, 64)
    white = lambda image: (image == 255).all(-1).mean()  # noqa: E731
    assert white(plain) > 0.8 and white(textured) < 0.05  # white paper vs sky and ground
    red = (textured[..., 0] > 180) & (textured[..., 1] < 60)
    assert red.any(), "the textured car is red"
    with pytest.raises(ValueError, match="valid looks are"):
        envs.make("mountaincar", look="neon")
    with pytest.raises(ValueError, match="only option is look"):
        envs.make("cartpole", frame_skip=2)


def test_ppo_solves_cartpole_with_its_dense_ground_truth_through_the_trainer(tmp_path):
    """The `classic` preset (64 envs, the humanoid's PPO, no reward scaling) on CartPole: every deterministic
    evaluation episode ends upright after 200 iterations (`benchmarks/learning.py` measures the curve)."""
    from rewardax.train import presets, train

    config = dataclasses.replace(presets("cartpole")["learning"], iterations=200, eval_every=0,
                                 checkpoint_every=200, run_dir=str(tmp_path))
    summary = train(config)
    assert summary["metrics"]["eval/success"] >= 0.95, summary["metrics"]


def test_the_mountaincar_clip_experiment_trains_with_the_smoke_preset(tmp_path):
    """``python experiments/mountaincar_clip.py --preset smoke``: a tiny random CLIP scores the textured frames."""
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "experiments"))
    import train as train_script

    summary = train_script.main(["--preset", "smoke", "--run-dir", str(tmp_path), "--eval-episodes", "1"],
                                task="mountaincar")
    assert summary["stopped"] == "finished" and np.isfinite(summary["metrics"]["clip/cos_goal"])
    assert (tmp_path / "videos" / "iteration_000002.mp4").stat().st_size > 0
