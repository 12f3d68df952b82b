"""The humanoid env: registry, paper settings, episodes (truncation, not termination), looks and camera."""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from brax.envs.wrappers import training

import rewardax.envs as envs
from rewardax.envs import probes
from rewardax.render import FreeCamera

def test_every_env_name_makes_an_env_that_declares_the_interface_and_steps():
    for name in envs.names():
        env = envs.check_env(envs.make(name))
        assert env.task.name == name and env.task.goal and env.task.baseline  # prompts: tests/test_tasks.py
    for name in envs.CLASSIC:  # the humanoid steps in the rollout fixture below
        env = envs.make(name)
        state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 2))
        state = jax.jit(jax.vmap(env.step))(state, jnp.ones((2, env.action_size)))
        assert state.obs.shape == (2, env.observation_size) and np.isfinite(state.obs).all()
        assert set(state.metrics) >= {"success", "dense"}


def test_an_env_that_forgets_its_time_limit_or_step_length_is_refused():
    class Forgetful(probes.ConstantReward):
        episode_length = 10
        dt = None  # as if it never said (Probe's own is 1.0)

    with pytest.raises(ValueError, match="Forgetful does not declare dt"):
        envs.check_env(Forgetful())
    Forgetful.dt = 0.0
    with pytest.raises(ValueError, match=r"Forgetful.dt \(simulated seconds per step\) must be a positive number"):
        envs.check_env(Forgetful())


@pytest.mark.parametrize("call,message", [
    (lambda: envs.make("backflip"), "unknown env 'backflip'; valid names are kneeling"),
    (lambda: envs.make("splits", colour="red"), "unknown option.*colour.*valid options are look, frame_skip"),
    (lambda: envs.make("splits", look="shiny"), "unknown look 'shiny'; valid looks are default, paper"),
    (lambda: envs.make("splits", frame_skip=0), "frame_skip must be a positive integer"),
    (lambda: envs.make("splits", camera=(1, 2)), "camera must be a rewardax.render.FreeCamera"),
])
def test_bad_input_gets_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_paper_physics_settings():
    env = envs.make("splits")
    model = env.mj_model
    assert model.opt.timestep == pytest.approx(0.003)
    assert env.config.frame_skip == 5 and env.dt == pytest.approx(0.015)
    assert env.episode_length == 100
    assert env.action_size == 17 and model.nq == 24 and model.nv == 23
    floor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    body_geoms = [g for g in range(model.ngeom) if g != floor]
    # every body part can rest on the floor (kneeling, sitting), no self-collision
    assert all(model.geom_contype[g] & model.geom_conaffinity[floor] for g in body_geoms)
    assert not any(model.geom_contype[a] & model.geom_conaffinity[b] for a in body_geoms for b in body_geoms)


@pytest.mark.parametrize("look", ["paper", "default"])
def test_looks_are_materials_and_textures_in_the_model(look):
    model = envs.humanoid_model(look)
    types = list(model.tex_type)
    assert mujoco.mjtTexture.mjTEXTURE_SKYBOX in types
    floor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    floor_tex = model.mat_texid[model.geom_matid[floor], mujoco.mjtTextureRole.mjTEXROLE_RGB]
    assert model.tex_type[floor_tex] == mujoco.mjtTexture.mjTEXTURE_2D  # the tiled floor
    light = model.light_type[0]
    assert light == mujoco.mjtLightType.mjLIGHT_DIRECTIONAL and model.light_castshadow[0]
    assert model.light_dir[0][2] < -0.9  # from above
    torso = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "torso1")
    if look == "paper":
        np.testing.assert_allclose(model.geom_rgba[torso][:3], [0.82, 0.82, 0.84])  # light grey
    else:
        np.testing.assert_allclose(model.geom_rgba[torso][:3], [0.4, 0.33, 0.26])  # the MJCF's brown


def test_paper_camera_and_tracking():
    env = envs.make("splits")
    data = mujoco.MjData(env.mj_model)
    mujoco.mj_forward(env.mj_model, data)
    cam = env.camera(data)
    # look-at (0, 0, 1), distance 3.5, azimuth 180°, elevation −10°: the camera sits on +x, looking back at the body
    expected = np.array([3.5 * np.cos(np.deg2rad(10)), 0.0, 1 + 3.5 * np.sin(np.deg2rad(10))])
    np.testing.assert_allclose(np.asarray(cam.pos), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(cam.xmat[:, 2]), (expected - [0, 0, 1]) / 3.5, atol=1e-5)

    tracking = envs.make("splits", camera=FreeCamera(track=True))
    data.qpos[:2] = [1.5, -0.5]
    mujoco.mj_forward(tracking.mj_model, data)
    np.testing.assert_allclose(np.asarray(tracking.camera(data).pos), expected + [1.5, -0.5, 0.0], atol=1e-5)


@pytest.fixture(scope="module")
def rollout():
    """Two humanoids, episodes of 3 steps, 4 random-action steps through brax's training wrappers."""
    env = envs.make("splits", episode_length=3)
    wrapped = training.wrap(env, episode_length=env.episode_length)
    state = jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), 2))
    step = jax.jit(wrapped.step)
    states, key = [state], jax.random.PRNGKey(1)
    for _ in range(4):
        key, sub = jax.random.split(key)
        states.append(step(states[-1], jax.random.uniform(sub, (2, env.action_size), minval=-0.4, maxval=0.4)))
    return env, states


def test_time_limit_truncates_and_never_terminates(rollout):
    _, states = rollout
    done = np.array([s.done for s in states[1:]])
    truncation = np.array([s.info["truncation"] for s in states[1:]])
    np.testing.assert_array_equal(done, [[0, 0], [0, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(truncation, done)  # every episode end is a truncation...
    assert not np.any(done * (1 - truncation))  # ...and none is a termination
    np.testing.assert_array_equal(np.array([s.info["steps"] for s in states[1:]])[:, 0], [1, 2, 3, 1])


def test_observation_is_brax_proprioception(rollout):
    env, states = rollout
    state = states[2]
    data = state.pipeline_state
    assert state.obs.shape == (2, env.observation_size) == (2, 22 + 23 + 13 * 10 + 13 * 6 + 23)
    np.testing.assert_array_equal(state.obs[:, :22], data.qpos[:, 2:])
    np.testing.assert_array_equal(state.obs[:, 22:45], data.qvel)
    assert np.all(np.isfinite(state.obs))
    assert not np.allclose(states[1].obs, states[2].obs), "the physics should move the body"


def test_every_tasks_oracle_runs_on_mjx_data(rollout):
    _, states = rollout
    data = states[-1].pipeline_state
    for name, task in envs.TASKS.items():
        verdict = jax.jit(jax.vmap(task.success))(data)
        assert verdict.shape == (2,) and verdict.dtype == jnp.bool_, name
    assert states[-1].metrics["success"].shape == (2,)


def test_env_renders_its_task_camera(rollout):
    env, states = rollout
    render = jax.jit(env.renderer(32, 32))
    frame = render(states[-1].pipeline_state)
    assert frame.rgb.shape == (2, 32, 32, 3) and frame.rgb.dtype == jnp.uint8
    seen = set(np.unique(np.asarray(frame.segmentation)))
    assert {-1, 0} <= seen and len(seen) > 5, "sky, floor and several body parts should be in view"


def test_the_humanoid_state_path_runs_from_standing_to_the_task_pose():
    env = envs.make("kneeling")
    t, label, data = env.state_path(5)
    success = np.asarray(env.task.success(data))
    assert label == "standing → kneeling pose" and list(np.asarray(t)) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert not success[0] and success[-1], success
    np.testing.assert_allclose(np.asarray(data.qpos[-1]), np.asarray(env.task.pose), atol=1e-5)
