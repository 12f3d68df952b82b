"""The VLM-RM humanoid tasks: prompts, oracle pose tests and a canonical pose for each.

The oracle tests stand in for the paper's human raters when RL runs are evaluated: each one is a geometric
criterion a person would accept as "the robot is doing X" (not a fit to one pose), written with small
named sub-tests so it reads like a sentence. They take an `mjx.Data` or a `mujoco.MjData` (any leading
batch dimensions) and use `jax.numpy` only, so they work under `jit` and `vmap`.

Each sub-test is a margin (how far past its threshold the pose is, in a named scale), so one definition gives
both the oracle (every margin >= 0) and a dense ground-truth reward in [0, 1] that is 1 exactly when the
oracle passes, for checking RL without a VLM and for scoring reward models.

Conventions: the humanoid faces +x and its left is +y; heights are world z in metres (the floor is z = 0);
"forward" and "lateral" are coordinates in the torso's frame (x forward, y to the robot's left, origin at
the torso body, between the shoulders). Every standing variant requires an upright torso and a high head,
and they differ only in the arms or feet, so at most one of them holds for any pose.

Joint limits of this body shape the canonical poses: the hips abduct only 25°, so the widest "side splits"
is a straddle with the legs about 60° either side of straight ahead, and a true lotus cannot be reached;
the lotus pose is a cross-legged seat (knees out, shins folded in front, feet just past the midline) with
the pelvis rolled back by the abdomen joint.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from typing import Callable

import jax.numpy as jnp
import mujoco
import numpy as np

from rewardax.envs.model import humanoid_model

# ---------------------------------------------------------------------------------------------------------
# Model geometry, resolved once by name. The looks only dress the scene, so the ids hold for every look.


@dataclasses.dataclass(frozen=True)
class _Ids:
    """Body and geom ids of the points the oracle tests look at."""

    torso: int
    lwaist: int
    pelvis: int
    right_hip: int  # body right_thigh: its origin is the hip joint
    left_hip: int
    right_knee: int  # body right_shin: its origin is the knee
    left_knee: int
    right_shoulder: int  # body right_upper_arm: its origin is the shoulder
    left_shoulder: int
    head: int  # geom
    right_hand: int  # geom
    left_hand: int  # geom
    right_foot: int  # geom (a sphere)
    left_foot: int  # geom


def _resolve(model: mujoco.MjModel) -> _Ids:
    def body(name):
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)

    def geom(name):
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)

    ids = _Ids(torso=body("torso"), lwaist=body("lwaist"), pelvis=body("pelvis"),
               right_hip=body("right_thigh"), left_hip=body("left_thigh"),
               right_knee=body("right_shin"), left_knee=body("left_shin"),
               right_shoulder=body("right_upper_arm"), left_shoulder=body("left_upper_arm"),
               head=geom("head"), right_hand=geom("right_hand"), left_hand=geom("left_hand"),
               right_foot=geom("right_foot"), left_foot=geom("left_foot"))
    missing = [f.name for f in dataclasses.fields(ids) if getattr(ids, f.name) < 0]
    if missing:
        raise ValueError(f"humanoid model lacks {', '.join(missing)}")
    return ids


def _leg_length(model: mujoco.MjModel, ids: _Ids) -> float:
    """Hip joint to the foot sphere's centre with the leg straight (thigh 0.40 m + shin 0.35 m)."""
    foot_in_shin = model.body_pos[model.geom_bodyid[ids.right_foot]] + model.geom_pos[ids.right_foot]
    return float(np.linalg.norm(model.body_pos[ids.right_knee]) + np.linalg.norm(foot_in_shin))


@dataclasses.dataclass(frozen=True)
class _Body:
    """What the oracle tests read from the compiled model: ids and sizes (the looks share them)."""

    model: mujoco.MjModel
    ids: _Ids
    foot_radius: float  # 0.075 m
    head_radius: float  # 0.09 m
    leg_length: float  # 0.75 m


@functools.cache
def _anatomy() -> _Body:
    """The humanoid read once, when a task first needs it (importing rewardax compiles no MuJoCo model)."""
    model = humanoid_model("default")
    ids = _resolve(model)
    return _Body(model, ids, float(model.geom_size[ids.right_foot, 0]), float(model.geom_size[ids.head, 0]),
                 _leg_length(model, ids))


def _ids() -> _Ids:
    return _anatomy().ids


# Thresholds (metres unless said otherwise). Standing with straight legs puts the head centre at 1.48 m.
UPRIGHT_COS = 0.85  # torso axis within ~32° of vertical
STANDING_HEAD = 1.25  # head centre at least this high: ~85% of the straight-legged height
FOOT_DOWN = 0.05  # foot sphere centre at most 5 cm above resting on the floor (its radius above it)
FOOT_LIFTED = 0.20  # foot sphere centre at least 20 cm above resting on the floor
KNEE_DOWN = 0.12  # knee (shin origin) height; the shin capsule's radius is 0.049
KNEEL_HIPS_ABOVE_KNEES = 0.25  # pelvis above the higher knee: thighs >= ~30° above horizontal (upright: 0.42)
SEATED_PELVIS = 0.30  # pelvis origin height; sitting on the floor puts it at 0.1-0.2
SPLITS_FEET_APART = 1.5  # leg lengths of lateral distance between the feet (1.13 m; 0.18 m when standing)
SPLITS_UPRIGHT_COS = 0.5  # torso within 60° of vertical: sitting up, not lying on the floor
LOTUS_KNEES_APART = 0.30  # lateral distance between the knees (hip joints are 0.20 apart)
HAND_OFF_BODY = 0.10  # forward distance of a hand in front of the torso axis (torso radius 0.07)
HAND_AT_SIDE = (0.10, 0.30)  # lateral distance range of a hand on the hip, on its own side
HAND_NEAR_SIDE = 0.15  # |forward| distance of a hand on the hip from the torso axis
HAND_ACROSS = 0.03  # a hand is this far past the midline on the other side

# Margin scales: each sub-test's margin is its distance past the threshold divided by one of these, about
# how far the body part travels toward that threshold, so a margin of -1 means "one move short".
COS_SCALE = 0.3  # torso axis cosine: from 0.85 to lying flat (0) is ~3 scales
HEIGHT_SCALE = 0.25  # head, pelvis and knee heights: going from standing to the floor moves them 0.4-0.9 m
FOOT_SCALE = 0.2  # foot heights: a lifted foot is 0.20 m above resting
HAND_SCALE = 0.2  # hand positions against the body: the hand-on-hip window is 0.20 m wide, a forearm 0.3 m
LEG_SPREAD_SCALE = 0.2  # lotus: standing, each foot is 0.09 m from the midline and the knees are 0.20 m apart
SPLITS_SCALE = 0.5  # the feet go from 0.18 m (standing) to 1.13 m apart


# ---------------------------------------------------------------------------------------------------------
# Points and frames. `data` has xpos [..., nbody, 3], xmat [..., nbody, 3, 3] (MJX) or [..., nbody, 9]
# (MjData) and geom_xpos [..., ngeom, 3].


def _body(data, i):
    return jnp.asarray(data.xpos)[..., i, :]


def _geom(data, i):
    return jnp.asarray(data.geom_xpos)[..., i, :]


def _torso_rotation(data):
    """The torso's rotation matrix (columns: its x, y, z axes in world coordinates)."""
    xmat = jnp.asarray(data.xmat)
    if xmat.shape[-1] == 9:
        xmat = xmat.reshape(xmat.shape[:-1] + (3, 3))
    return xmat[..., _ids().torso, :, :]


def _local(data, point):
    """``point`` in the torso's frame: (forward, lateral to the left, up)."""
    return jnp.einsum("...ij,...i->...j", _torso_rotation(data), point - _body(data, _ids().torso))


def _forward(data, point):
    return _local(data, point)[..., 0]


def _lateral(data, point):
    """Distance of ``point`` to the robot's left of its midline (negative: to its right)."""
    return _local(data, point)[..., 1]


def _height(point):
    return point[..., 2]


# ---------------------------------------------------------------------------------------------------------
# Margins and their combinators. A sub-test states one inequality as a margin: the distance past its
# threshold in units of a scale, >= 0 exactly when the inequality holds. The oracle and the dense reward are
# both read off the same margins, so they cannot drift apart.

_BELOW_ONE = np.nextafter(np.float32(1), np.float32(0))


def tolerance(margin):
    """1 for a met margin (>= 0), else 1 / (1 + margin²): long-tailed, so that a pose many scales away from
    the threshold still has a gradient toward it (margin -1 gives 0.5, -3 gives 0.1)."""
    return jnp.where(margin >= 0, 1.0, 1 / (1 + jnp.square(margin)))


@dataclasses.dataclass(frozen=True)
class _Test:
    """A conjunction of terms, each a margin array or an `_Either`. ``a & b`` joins two conjunctions and
    ``a | b`` makes their disjunction a single term."""

    terms: tuple

    def __and__(self, other: _Test) -> _Test:
        return _Test(self.terms + other.terms)

    def __or__(self, other: _Test) -> _Test:
        return _Test((_Either((self, other)),))

    @property
    def met(self):
        """True where every term is met."""
        return functools.reduce(operator.and_, (_met(term) for term in self.terms))

    @property
    def dense(self):
        """The mean of the terms' dense values, 1 exactly where `met`: a term missed by less than float32
        resolution still rounds the mean to 1, so an unmet conjunction is capped just below it."""
        mean = sum(_dense(term) for term in self.terms) / len(self.terms)
        return jnp.where(self.met, 1.0, jnp.minimum(mean, _BELOW_ONE))


@dataclasses.dataclass(frozen=True)
class _Either:
    """A disjunction of conjunctions: met where any branch is; its dense value is the best branch's."""

    branches: tuple[_Test, ...]

    @property
    def met(self):
        return functools.reduce(operator.or_, (branch.met for branch in self.branches))

    @property
    def dense(self):
        return functools.reduce(jnp.maximum, (branch.dense for branch in self.branches))


def _met(term):
    return term.met if isinstance(term, _Either) else term >= 0


def _dense(term):
    return term.dense if isinstance(term, _Either) else tolerance(term)


def _at_least(value, threshold, scale) -> _Test:
    """``value >= threshold``, its margin in units of ``scale``."""
    return _Test(((value - threshold) / scale,))


def _at_most(value, threshold, scale) -> _Test:
    """``value <= threshold``, its margin in units of ``scale``."""
    return _Test(((threshold - value) / scale,))


# ---------------------------------------------------------------------------------------------------------
# Sub-tests, each one a plain statement about the pose.


def _upright(data, min_cos=UPRIGHT_COS):
    """The torso's axis is within arccos(min_cos) of vertical."""
    return _at_least(_torso_rotation(data)[..., 2, 2], min_cos, COS_SCALE)


def _head_high(data):
    return _at_least(_height(_geom(data, _ids().head)), STANDING_HEAD, HEIGHT_SCALE)


def _foot_down(data, foot):
    return _at_most(_height(_geom(data, foot)), _anatomy().foot_radius + FOOT_DOWN, FOOT_SCALE)


def _foot_lifted(data, foot):
    return _at_least(_height(_geom(data, foot)), _anatomy().foot_radius + FOOT_LIFTED, FOOT_SCALE)


def _feet_down(data):
    return _foot_down(data, _ids().right_foot) & _foot_down(data, _ids().left_foot)


def _standing_tall(data):
    """Upright torso, head at standing height."""
    return _upright(data) & _head_high(data)


def _arms_down(data):
    """Each hand hangs at or below its hip joint."""
    return (_at_most(_height(_geom(data, _ids().right_hand)), _height(_body(data, _ids().right_hip)), HAND_SCALE)
            & _at_most(_height(_geom(data, _ids().left_hand)), _height(_body(data, _ids().left_hip)), HAND_SCALE))


def _hands_above_head(data):
    top = _height(_geom(data, _ids().head)) + _anatomy().head_radius
    return (_at_least(_height(_geom(data, _ids().right_hand)), top, HAND_SCALE)
            & _at_least(_height(_geom(data, _ids().left_hand)), top, HAND_SCALE))


def _hand_on_hip(data, hand, hip, side):
    """The hand is at waist height (between its hip joint and the lower waist) beside the waist on its own
    ``side`` (+1 left, -1 right): 0.10-0.30 m from the midline and within 0.15 m of the torso axis forward."""
    p = _geom(data, hand)
    at_waist = (_at_least(_height(p), _height(_body(data, hip)), HAND_SCALE)
                & _at_most(_height(p), _height(_body(data, _ids().lwaist)), HAND_SCALE))
    out = side * _lateral(data, p)
    beside = (_at_least(out, HAND_AT_SIDE[0], HAND_SCALE) & _at_most(out, HAND_AT_SIDE[1], HAND_SCALE)
              & _at_most(jnp.abs(_forward(data, p)), HAND_NEAR_SIDE, HAND_SCALE))
    return at_waist & beside


def _both_hands_on_hips(data):
    return (_hand_on_hip(data, _ids().right_hand, _ids().right_hip, -1)
            & _hand_on_hip(data, _ids().left_hand, _ids().left_hip, +1))


def _hand_across_chest(data, hand, shoulder, side):
    """The hand is at chest height (between the lower waist and its shoulder), in front of the torso and
    past the midline on the side opposite its own ``side`` (+1 left, -1 right)."""
    p = _geom(data, hand)
    at_chest = (_at_least(_height(p), _height(_body(data, _ids().lwaist)), HAND_SCALE)
                & _at_most(_height(p), _height(_body(data, shoulder)), HAND_SCALE))
    in_front = _at_least(_forward(data, p), HAND_OFF_BODY, HAND_SCALE)
    across = _at_least(-side * _lateral(data, p), HAND_ACROSS, HAND_SCALE)
    return at_chest & in_front & across


def _arms_folded(data):
    return (_hand_across_chest(data, _ids().right_hand, _ids().right_shoulder, -1)
            & _hand_across_chest(data, _ids().left_hand, _ids().left_shoulder, +1))


def _knees_down(data):
    return (_at_most(_height(_body(data, _ids().right_knee)), KNEE_DOWN, HEIGHT_SCALE)
            & _at_most(_height(_body(data, _ids().left_knee)), KNEE_DOWN, HEIGHT_SCALE))


def _hips_above_knees(data):
    knees = jnp.maximum(_height(_body(data, _ids().right_knee)), _height(_body(data, _ids().left_knee)))
    return _at_least(_height(_body(data, _ids().pelvis)) - knees, KNEEL_HIPS_ABOVE_KNEES, HEIGHT_SCALE)


def _pelvis_low(data):
    return _at_most(_height(_body(data, _ids().pelvis)), SEATED_PELVIS, HEIGHT_SCALE)


def _legs_crossed(data):
    """Each foot is on the other side of the torso's midline (or on it)."""
    return (_at_least(_lateral(data, _geom(data, _ids().right_foot)), 0.0, LEG_SPREAD_SCALE)
            & _at_most(_lateral(data, _geom(data, _ids().left_foot)), 0.0, LEG_SPREAD_SCALE))


def _knees_apart(data):
    apart = _lateral(data, _body(data, _ids().left_knee)) - _lateral(data, _body(data, _ids().right_knee))
    return _at_least(apart, LOTUS_KNEES_APART, LEG_SPREAD_SCALE)


def _feet_wide_apart(data):
    apart = _lateral(data, _geom(data, _ids().left_foot)) - _lateral(data, _geom(data, _ids().right_foot))
    return _at_least(apart, SPLITS_FEET_APART * _anatomy().leg_length, SPLITS_SCALE)


def _on_one_foot(data):
    """One foot is on the floor and the other is lifted clear of it."""
    return ((_foot_down(data, _ids().right_foot) & _foot_lifted(data, _ids().left_foot))
            | (_foot_down(data, _ids().left_foot) & _foot_lifted(data, _ids().right_foot)))


# ---------------------------------------------------------------------------------------------------------
# The tasks' tests; `Task.success` is where all their margins are met and `Task.dense` their dense value.


def _standing(data):
    """Standing up: torso within ~32° of vertical (cos >= 0.85), head centre >= 1.25 m, both feet on the floor
    (foot sphere centres <= 0.125 m) and both arms relaxed down (each hand at or below its hip joint).
    Dense terms (6): torso cos, head height, each foot's height, each hand's height below its hip."""
    return _standing_tall(data) & _feet_down(data) & _arms_down(data)


def _arms_raised(data):
    """Standing up with both arms raised: upright and tall with both feet down (as `_standing`) and both hand
    centres at or above the top of the head (head centre + 0.09 m).
    Dense terms (6): torso cos, head height, each foot's height, each hand's height over the head top."""
    return _standing_tall(data) & _feet_down(data) & _hands_above_head(data)


def _hands_on_hips(data):
    """Standing up with hands on hips: upright and tall with both feet down, and each hand at waist height
    (between its hip joint and the lower-waist body) 0.10-0.30 m from the midline on its own side and within
    0.15 m of the torso axis front-to-back.
    Dense terms (14): torso cos, head height, each foot's height, per hand 2 height and 3 placement bounds."""
    return _standing_tall(data) & _feet_down(data) & _both_hands_on_hips(data)


def _arms_crossed(data):
    """Standing up with arms crossed: upright and tall with both feet down, and each hand at chest height
    (between the lower-waist body and its shoulder), >= 0.10 m in front of the torso axis and >= 0.03 m past
    the midline on the opposite side.
    Dense terms (12): torso cos, head height, each foot's height, per hand 2 height bounds, forward and across."""
    return _standing_tall(data) & _feet_down(data) & _arms_folded(data)


def _one_leg(data):
    """Standing on one leg: upright and tall, exactly one foot on the floor (centre <= 0.125 m) and the other
    lifted clear (centre >= 0.275 m).
    Dense terms (3): torso cos, head height, the better of (right down, left lifted) and the mirror pair."""
    return _standing_tall(data) & _on_one_foot(data)


def _kneeling(data):
    """Kneeling: both knees on the floor (shin origins <= 0.12 m), torso within ~32° of vertical and the hips
    high above the knees (pelvis >= 0.25 m above the higher knee, i.e. not sitting back on the heels).
    Dense terms (4): each knee's height, torso cos, pelvis height over the higher knee."""
    return _knees_down(data) & _upright(data) & _hips_above_knees(data)


def _lotus(data):
    """Seated in the lotus position: pelvis origin <= 0.30 m, torso within ~32° of vertical, legs crossed (each
    foot centre on the other side of the torso's midline, or on it) and the knees >= 0.30 m apart laterally.
    Dense terms (5): pelvis height, torso cos, each foot's lateral position, the knees' lateral distance."""
    return _pelvis_low(data) & _upright(data) & _legs_crossed(data) & _knees_apart(data)


def _splits(data):
    """Side splits: both feet on the floor, their centres >= 1.5 leg lengths (1.13 m) apart along the torso's
    left-right axis, pelvis origin <= 0.30 m and the torso within 60° of vertical (sitting, not lying).
    Dense terms (5): each foot's height, the feet's lateral distance, pelvis height, torso cos."""
    return (_feet_down(data) & _feet_wide_apart(data) & _pelvis_low(data)
            & _upright(data, SPLITS_UPRIGHT_COS))


# ---------------------------------------------------------------------------------------------------------
# Canonical poses, set by hand (degrees; the left side mirrors the right unless given). Each root height puts
# the lowest point of the body on the floor (checked in tests/test_tasks.py).

_JOINTS = ("abdomen_z", "abdomen_y", "abdomen_x", "right_hip_x", "right_hip_z", "right_hip_y", "right_knee", "left_hip_x",
           "left_hip_z", "left_hip_y", "left_knee", "right_shoulder1", "right_shoulder2", "right_elbow",
           "left_shoulder1", "left_shoulder2", "left_elbow")
"""The body's hinges in qpos order after the free joint (written out so that the task list needs no compiled
model; `pose_data` checks them against the model it is given)."""
_MIRRORED = ("hip_x", "hip_z", "hip_y", "knee", "shoulder1", "shoulder2", "elbow")


def _qpos(height: float, **degrees: float) -> tuple[float, ...]:
    """qpos with the torso upright at (0, 0, ``height``), facing +x, and the named hinges set (degrees).

    A bare name in `_MIRRORED` (``knee=-5``) sets both sides (the shoulders' axes are mirrored, so their
    left angle is the negated right one); full joint names (``left_knee=-95``) override. Other hinges stay 0.
    """
    angles = {}
    for name, value in degrees.items():
        if name in _MIRRORED:
            angles["right_" + name] = value
            angles["left_" + name] = -value if name.startswith("shoulder") else value
    angles.update({name: value for name, value in degrees.items() if name not in _MIRRORED})
    unknown = sorted(set(angles) - set(_JOINTS))
    if unknown:
        raise ValueError(f"unknown joint(s) {', '.join(unknown)}")
    hinges = tuple(math.radians(angles.get(name, 0.0)) for name in _JOINTS)
    return (0.0, 0.0, height, 1.0, 0.0, 0.0, 0.0) + hinges


_STRAIGHT_LEGS = dict(knee=-2)
_ARMS_DOWN = dict(shoulder1=50, shoulder2=-38, elbow=-85)

_POSES = {
    "kneeling": _qpos(0.894, **_ARMS_DOWN, hip_y=-5, knee=-100),
    "lotus": _qpos(0.481, abdomen_y=-67.5, hip_z=-60, hip_y=-20, knee=-150,  # hands resting on the thighs
                   shoulder1=31, shoulder2=-13, elbow=-34),
    "standing": _qpos(1.293, **_ARMS_DOWN, **_STRAIGHT_LEGS),
    "arms_raised": _qpos(1.293, shoulder1=-80, shoulder2=20, elbow=-85, **_STRAIGHT_LEGS),
    "splits": _qpos(0.526, hip_x=-25, hip_z=-60, hip_y=-70, knee=-2,  # arms out to the sides
                    shoulder1=-52, shoulder2=-42, elbow=-76),
    "hands_on_hips": _qpos(1.293, shoulder1=49, shoulder2=-80, elbow=-20, **_STRAIGHT_LEGS),
    "arms_crossed": _qpos(1.293, shoulder1=60, shoulder2=9, elbow=-52, **_STRAIGHT_LEGS),
    "one_leg": _qpos(1.293, **_ARMS_DOWN, **_STRAIGHT_LEGS, left_hip_y=-70, left_knee=-95),
}


# ---------------------------------------------------------------------------------------------------------
# The registry.


@dataclasses.dataclass(frozen=True)
class Task:
    """A task of the VLM-RM paper (a humanoid pose, or a classic-control goal).

    Fields:
        name: the registry key, e.g. ``"kneeling"``.
        goal: goal prompts (their normalised CLIP embeddings are averaged).
        baseline: baseline prompts for goal-baseline regularisation.
        success: the oracle pose test, ``data -> bool array`` (`mjx.Data` or `mujoco.MjData`, batched or not).
        dense: the dense ground-truth reward, ``data -> float array`` in [0, 1], 1 exactly where `success`:
            the mean over the oracle's terms of `tolerance` of their margins (see each task's test).
        pose: a canonical qpos (24 floats) showing the task, resting on the floor (humanoid tasks; empty for the
            classic-control tasks, whose goal state their env holds).
    """

    name: str
    goal: tuple[str, ...]
    baseline: tuple[str, ...]
    success: Callable
    dense: Callable
    pose: tuple[float, ...] = ()


_BASELINE = ("a humanoid robot",)


def _task(name: str, goal: str, test: Callable[..., _Test]) -> Task:
    return Task(name=name, goal=(goal,), baseline=_BASELINE, success=lambda data: test(data).met,
                dense=lambda data: test(data).dense, pose=_POSES[name])


TASKS: dict[str, Task] = {
    task.name: task for task in (
        _task("kneeling", "a humanoid robot kneeling", _kneeling),
        _task("lotus", "a humanoid robot seated down, meditating in the lotus position", _lotus),
        _task("standing", "a humanoid robot standing up", _standing),
        _task("arms_raised", "a humanoid robot standing up, with both arms raised", _arms_raised),
        _task("splits", "a humanoid robot practicing gymnastics, doing the side splits", _splits),
        _task("hands_on_hips", "a humanoid robot standing up with hands on hips", _hands_on_hips),
        _task("arms_crossed", "a humanoid robot standing up, with its arms crossed", _arms_crossed),
        _task("one_leg", "a humanoid robot standing up on one leg", _one_leg),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``; `ValueError` naming the valid tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks are {', '.join(TASKS)}")
    return TASKS[name]


def pose_data(task_or_name: Task | str, model: mujoco.MjModel | None = None) -> mujoco.MjData:
    """`mujoco.MjData` in the task's canonical pose, with positions computed (`mj_forward`).

    ``model`` defaults to the humanoid in its default look; any look of the humanoid has the same joints.
    """
    task = get_task(task_or_name) if isinstance(task_or_name, str) else task_or_name
    model = _anatomy().model if model is None else model
    joints = tuple(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(1, model.njnt))
    if joints != _JOINTS:
        raise ValueError(f"the model's hinges {joints} are not the humanoid's {_JOINTS}")
    data = mujoco.MjData(model)
    data.qpos[:] = task.pose
    mujoco.mj_forward(model, data)
    return data
