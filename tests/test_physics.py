"""The humanoid's physics under PPO's worst exploration, and against MuJoCo C (benchmarks/physics_check.py).

The full check (1,024 envs × 1,000 steps of the body every task shares) is `benchmarks/physics_check.py`; these
are small versions of its checks that keep the blow-up from coming back.
"""

import pathlib
import sys

import numpy as np
import pytest

import rewardax.envs as envs
import rewardax.envs.model as model_module

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))
import physics_check  # noqa: E402


@pytest.fixture(scope="module")
def env():
    return envs.make("kneeling")


@pytest.mark.timeout(900)
def test_saturated_exploration_never_turns_mjx_non_finite(env):
    result = physics_check.stress(env, num_envs=64, steps=200)
    assert result["non_finite_envs"] == 0, result


def test_in_mujoco_c_one_solver_iteration_blows_up_and_the_model_settings_do_not(monkeypatch):
    monkeypatch.setattr(model_module, "SOLVER_ITERATIONS", 1)
    monkeypatch.setattr(model_module, "LINE_SEARCH_ITERATIONS", 4)
    old = physics_check.stress_mujoco(envs.humanoid_model(), num_envs=48, steps=300)
    monkeypatch.undo()
    new = physics_check.stress_mujoco(envs.humanoid_model(), num_envs=96, steps=300)
    assert old["non_finite_envs"] >= 5, old  # 23 of 48 when measured
    assert new["non_finite_envs"] == 0, new


def test_mjx_follows_mujoco_c_over_an_episode(env):
    rng = np.random.default_rng(0)
    low, high = env.mj_model.actuator_ctrlrange.T
    ctrls = np.where(rng.random((env.episode_length, env.mj_model.nu)) < 0.5, low, high)
    gaps = physics_check.drift(env, ctrls)
    assert gaps["step_1"] < 1e-5 and gaps["step_100"] < 1e-2, gaps  # 1e-7 and 4e-4 when measured
