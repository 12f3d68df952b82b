"""The humanoid task registry: prompts, oracle pose tests and canonical poses (plain MuJoCo on CPU, no physics
compiles)."""

import types

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from rewardax.envs import tasks
from rewardax.envs.model import humanoid_model
from rewardax.envs.tasks import TASKS, get_task, pose_data, tolerance

NAMES = tuple(TASKS)

PROMPTS = {
    "kneeling": "a humanoid robot kneeling",
    "lotus": "a humanoid robot seated down, meditating in the lotus position",
    "standing": "a humanoid robot standing up",
    "arms_raised": "a humanoid robot standing up, with both arms raised",
    "splits": "a humanoid robot practicing gymnastics, doing the side splits",
    "hands_on_hips": "a humanoid robot standing up with hands on hips",
    "arms_crossed": "a humanoid robot standing up, with its arms crossed",
    "one_leg": "a humanoid robot standing up on one leg",
}


@pytest.fixture(scope="module")
def model():
    return humanoid_model("default")


@pytest.fixture(scope="module")
def confusion():
    """confusion[i, j]: task i's oracle on task j's canonical pose."""
    poses = [pose_data(name) for name in NAMES]
    return np.array([[bool(TASKS[i].success(pose)) for pose in poses] for i in NAMES])


def _show(matrix):
    width = max(map(len, NAMES))
    head = " " * width + " | " + " ".join(f"{n[:6]:>6}" for n in NAMES)
    rows = [f"{i:>{width}} | " + " ".join(f"{'YES' if v else '.':>6}" for v in row) for i, row in zip(NAMES, matrix)]
    return "\n".join(["oracle (rows) on canonical pose (columns):", head, *rows])


def test_registry_prompts_are_the_papers():
    assert set(TASKS) == set(PROMPTS)
    for name, task in TASKS.items():
        assert task.name == name
        assert task.goal == (PROMPTS[name],)
        assert task.baseline == ("a humanoid robot",)
        assert len(task.pose) == 24


def test_unknown_task_names_the_valid_ones():
    with pytest.raises(ValueError, match="nope") as err:
        get_task("nope")
    for name in NAMES:
        assert name in str(err.value)
    assert get_task("lotus") is TASKS["lotus"]


@pytest.mark.parametrize("name", NAMES)
def test_oracle_accepts_only_its_own_pose(name, confusion):
    i = NAMES.index(name)
    expected = np.arange(len(NAMES)) == i
    assert (confusion[i] == expected).all(), _show(confusion)


def _lowest_point(model, data):
    """Height of the lowest point of any body geom (spheres and capsules)."""
    lowest = np.inf
    for g in range(model.ngeom):
        if model.geom_bodyid[g] == 0:
            continue  # the floor
        z, radius = data.geom_xpos[g, 2], model.geom_size[g, 0]
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE:
            z -= abs(data.geom_xmat[g, 8]) * model.geom_size[g, 1]  # half-length along the capsule's z axis
        lowest = min(lowest, z - radius)
    return lowest


@pytest.mark.parametrize("name", NAMES)
def test_pose_respects_joint_ranges_and_rests_on_the_floor(name, model):
    data = pose_data(name, model)
    for j in range(model.njnt):
        if model.jnt_limited[j]:
            lo, hi = model.jnt_range[j]
            angle = data.qpos[model.jnt_qposadr[j]]
            assert lo - 1e-6 <= angle <= hi + 1e-6, (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j), angle)
    assert np.linalg.norm(data.qpos[3:7]) == pytest.approx(1.0)
    assert -0.02 <= _lowest_point(model, data) <= 0.005


def test_oracles_agree_on_mjdata_mjx_and_vmap(model, confusion):
    datas = {name: pose_data(name, model) for name in NAMES}
    mjx_datas = {name: mjx.put_data(model, d) for name, d in datas.items()}
    for i, name in enumerate(NAMES):
        success = TASKS[name].success
        for j, other in enumerate(NAMES):
            on_mjx = success(mjx_datas[other])
            assert on_mjx.shape == () and on_mjx.dtype == jnp.bool_
            assert bool(on_mjx) == confusion[i, j], (name, other)
        # A stacked batch of two poses (its own and the next one), under vmap and jit.
        other = NAMES[(i + 1) % len(NAMES)]
        batch = jax.tree.map(lambda a, b: jnp.stack([a, b]), mjx_datas[name], mjx_datas[other])
        assert jax.jit(jax.vmap(success))(batch).tolist() == [True, False]


def test_oracles_resolve_ids_valid_in_every_look(model):
    paper = humanoid_model("paper")
    for obj, count in ((mujoco.mjtObj.mjOBJ_BODY, model.nbody), (mujoco.mjtObj.mjOBJ_GEOM, model.ngeom)):
        for i in range(count):
            name = mujoco.mj_id2name(model, obj, i)
            assert mujoco.mj_name2id(paper, obj, name) == i
    assert TASKS["splits"].success(pose_data("splits", paper))


def _random_rollouts(model, episodes, seed=0):
    """Frames of ``episodes`` 100-step episodes (frame_skip 5) under uniform random controls, stacked into
    [episodes, 100, ...] arrays of the fields the oracles read."""
    data = mujoco.MjData(model)
    rng = np.random.default_rng(seed)
    lo, hi = model.actuator_ctrlrange.T
    frames = {"xpos": [], "xmat": [], "geom_xpos": []}
    for _ in range(episodes):
        mujoco.mj_resetData(model, data)
        data.qpos[:] = model.qpos0 + rng.uniform(-0.01, 0.01, model.nq)
        data.qvel[:] = rng.uniform(-0.01, 0.01, model.nv)
        for _ in range(100):
            data.ctrl[:] = rng.uniform(lo, hi)
            mujoco.mj_step(model, data, nstep=5)
            for field, frame in frames.items():
                frame.append(getattr(data, field).copy())
    return types.SimpleNamespace(**{k: np.reshape(v, (episodes, 100) + v[0].shape) for k, v in frames.items()})


def test_random_actions_are_mostly_judged_failing():
    model = humanoid_model("default")
    # The model's one-iteration solver is tuned for MJX; CPU MuJoCo with it occasionally diverges (about one
    # random episode in 50-100 hits mjWARN_BADQACC and resets). More iterations keep the rollouts physical.
    model.opt.iterations, model.opt.ls_iterations = 8, 15
    frames = _random_rollouts(model, episodes=50)
    rates = {name: float(np.mean(task.success(frames))) for name, task in TASKS.items()}
    # Measured over 200 episodes (seed 0): kneeling 4.3%, one_leg 2.8% (10.8% of the first 20 steps),
    # hands_on_hips < 0.1%, all others 0. Both non-zero ones are real, brief poses a person would accept:
    # a falling body often lands on both knees with the torso upright, and in the first ~0.3 s it staggers
    # with one foot in the air. "standing" never fires: the start pose holds the arms forward, not down.
    # Hence 10% for the two transient poses and 1% for every other oracle.
    limits = {name: 0.10 if name in ("kneeling", "one_leg") else 0.01 for name in NAMES}
    too_often = {name: rate for name, rate in rates.items() if rate >= limits[name]}
    assert not too_often, f"oracles firing too often on random actions: {too_often} (all rates: {rates})"


# ---------------------------------------------------------------------------------------------------------
# The dense reward: margins, their tolerance and its agreement with the oracle.


def _random_poses(model, per_pose=125, uniform=1000, seed=0):
    """Positions (the oracles' fields, stacked) of ``per_pose`` jittered copies of each canonical pose (joint
    noise 0.08 rad, root turned ~0.16 rad, ±5 cm height) and ``uniform`` poses with every hinge uniform in its
    range and the root at 0.3-1.4 m, turned any way."""
    rng = np.random.default_rng(seed)
    hinge = [j for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    lo, hi = model.jnt_range[hinge].T
    adr = model.jnt_qposadr[hinge]
    data = mujoco.MjData(model)
    frames = {"xpos": [], "xmat": [], "geom_xpos": []}

    def add(qpos):
        data.qpos[:] = qpos
        mujoco.mj_forward(model, data)
        for field, frame in frames.items():
            frame.append(getattr(data, field).copy())

    for name in NAMES:
        for _ in range(per_pose):
            qpos = np.array(TASKS[name].pose)
            qpos[adr] = np.clip(qpos[adr] + rng.normal(0, 0.08, len(adr)), lo, hi)
            qpos[2] += rng.uniform(-0.05, 0.05)
            qpos[3:7] = _unit(np.concatenate([[1.0], rng.normal(0, 0.05, 3)]))
            add(qpos)
    for _ in range(uniform):
        qpos = np.array(model.qpos0)
        qpos[adr] = rng.uniform(lo, hi)
        qpos[2] = rng.uniform(0.3, 1.4)
        qpos[3:7] = _unit(rng.normal(size=4))
        add(qpos)
    return types.SimpleNamespace(**{k: np.stack(v) for k, v in frames.items()})


def _unit(v):
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def random_poses(model):
    return _random_poses(model)


def test_dense_is_one_exactly_where_the_oracle_passes(random_poses):
    for name, task in TASKS.items():
        success, dense = np.asarray(task.success(random_poses)), np.asarray(task.dense(random_poses))
        assert success.shape == dense.shape == (2000,)
        assert 20 <= success.sum() <= 1980, (name, success.sum())  # both verdicts are well represented
        np.testing.assert_array_equal(success, dense == 1, err_msg=name)
        assert ((dense > 0) & (dense <= 1)).all(), name


@pytest.mark.parametrize("name", NAMES)
def test_dense_is_one_on_its_own_pose_only(name):
    dense = np.array([float(TASKS[name].dense(pose_data(other))) for other in NAMES])
    own = NAMES.index(name)
    assert dense[own] == 1.0
    assert (np.delete(dense, own) < 1).all(), dict(zip(NAMES, dense))


def test_tolerance_is_one_when_met_and_long_tailed_below():
    margins = jnp.array([2.0, 0.0, -1.0, -3.0, -1e3])
    np.testing.assert_allclose(tolerance(margins), [1, 1, 0.5, 0.1, 1 / (1 + 1e6)], rtol=1e-6)


def test_head_height_margin_of_the_standing_pose():
    # The torso is upright at the root height 1.293 m and carries the head 0.19 m above its origin.
    (margin,) = tasks._head_high(pose_data("standing")).terms
    assert float(margin) == pytest.approx((1.293 + 0.19 - 1.25) / 0.25, abs=1e-6)  # 0.932


def test_dense_of_the_standing_pose_on_arms_raised_is_the_mean_of_its_terms():
    """Upright, tall and feet down are met (4 terms of 1); each hand misses the head top by (top - hand) m."""
    data = pose_data("standing")
    top = data.geom_xpos[tasks._ids().head, 2] + 0.09
    hands = data.geom_xpos[[tasks._ids().right_hand, tasks._ids().left_hand], 2]
    expected = (4 + np.sum(1 / (1 + ((hands - top) / 0.2) ** 2))) / 6
    assert float(TASKS["arms_raised"].dense(data)) == pytest.approx(expected, rel=1e-5)


def test_dense_rises_to_one_on_the_way_from_standing_to_kneeling(model):
    """Along the straight line in qpos from the standing to the kneeling pose, over its last 30%: the dense
    kneeling reward rises strictly until the oracle passes (near 82%), then stays at 1 (so it is only
    non-decreasing over the whole segment, with its maximum at the end)."""
    start, end = np.array(TASKS["standing"].pose), np.array(TASKS["kneeling"].pose)
    data = mujoco.MjData(model)
    dense, success = [], []
    for t in np.linspace(0.7, 1.0, 31):
        data.qpos[:] = (1 - t) * start + t * end
        mujoco.mj_forward(model, data)
        dense.append(float(TASKS["kneeling"].dense(data)))
        success.append(bool(TASKS["kneeling"].success(data)))
    dense, success = np.array(dense), np.array(success)
    assert not success[0] and success[-1] and dense[-1] == dense.max() == 1
    rising = dense[:-1] < 1
    assert (np.diff(dense)[rising] > 0).all() and (np.diff(dense)[~rising] == 0).all(), dense
    np.testing.assert_array_equal(success, dense == 1)


def test_dense_agrees_on_mjdata_mjx_and_vmap(model):
    datas = [pose_data(name, model) for name in NAMES]
    batch = jax.tree.map(lambda *x: jnp.stack(x), *(mjx.put_data(model, d) for d in datas))
    for name, task in TASKS.items():
        on_mjdata = [float(task.dense(d)) for d in datas]
        on_mjx = jax.jit(jax.vmap(task.dense))(batch)
        assert on_mjx.shape == (len(NAMES),) and on_mjx.dtype == jnp.float32
        np.testing.assert_allclose(on_mjx, on_mjdata, rtol=1e-5, err_msg=name)
        assert on_mjx[NAMES.index(name)] == 1
