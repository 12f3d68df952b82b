"""The MJX humanoid of the VLM-RM paper as a brax `Env`.

Physics only: the env's own reward is zero, because the reward comes from a model looking at the rendered
frame (`rewardax.rewards`). Each step applies the action for ``frame_skip`` MJX steps of 0.003 s. There is
no early termination: ``done`` stays 0 and episodes end only by truncation at ``episode_length`` steps,
which brax's `EpisodeWrapper` records in ``info["truncation"]`` apart from termination. The task's oracle
pose test is reported in ``metrics["success"]`` and its dense ground truth in ``metrics["dense"]`` (for evaluation
and for judging reward models; the training reward comes from a reward model).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax.envs.base import State
from mujoco import mjx

from rewardax import cpu_cholesky
from rewardax.envs.base import TaskEnv
from rewardax.envs.model import LOOKS, humanoid_model
from rewardax.envs.tasks import TASKS, get_task, pose_data
from rewardax.render import Camera, FreeCamera, Frame, Renderer


@dataclasses.dataclass(frozen=True)
class HumanoidConfig:
    """Settings of the humanoid env (defaults: the VLM-RM paper)."""

    task: str = "splits"
    """Task name: one of `rewardax.envs.TASKS` (prompts and oracle success test)."""
    look: str = "paper"
    """Scene look: "paper" (sky, tiled floor, light-grey body, light from above) or "default" (the MJCF's own)."""
    frame_skip: int = 5
    """MJX steps of 0.003 s per env step."""
    episode_length: int = 100
    """Env steps per episode; reaching it truncates the episode (it is never terminated)."""
    reset_noise: float = 0.01
    """Half-width of the uniform noise added to the initial joint positions and velocities."""
    camera: FreeCamera = FreeCamera()
    """The task camera: MuJoCo free camera (paper: distance 3.5, look-at (0, 0, 1), elevation −10°, azimuth 180°)."""

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; valid tasks are {', '.join(TASKS)}")
        if self.look not in LOOKS:
            raise ValueError(f"unknown look {self.look!r}; valid looks are {', '.join(LOOKS)}")
        for name in ("frame_skip", "episode_length"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.reset_noise < 0:
            raise ValueError(f"reset_noise must be >= 0, got {self.reset_noise!r}")
        if not isinstance(self.camera, FreeCamera):
            raise ValueError(f"camera must be a rewardax.render.FreeCamera, got {type(self.camera).__name__}")


class Humanoid(TaskEnv):
    """MJX humanoid with 17 actuators (actions in [-1, 1], see `control`); observations in Brax's layout (see
    `observation`)."""

    def __init__(self, config: HumanoidConfig = HumanoidConfig()):
        cpu_cholesky.install()  # MJX's batched Cholesky deadlocks jaxlib 0.10's CPU backend (a no-op elsewhere)
        self.config = config
        self.task = get_task(config.task)
        self.mj_model: mujoco.MjModel = humanoid_model(config.look)
        # On this process's first device: MJX's default, jax.devices()[0], belongs to process 0 of a multi-process
        # job, so the other processes could not use the model.
        self.sys: mjx.Model = mjx.put_model(self.mj_model, device=jax.local_devices()[0])
        self._torso = mujoco.mj_name2id(self.mj_model, mujoco.mjtObj.mjOBJ_BODY, "torso")
        self._ctrl_range = jnp.asarray(self.mj_model.actuator_ctrlrange, jnp.float32)

    @property
    def episode_length(self) -> int:
        return self.config.episode_length

    @property
    def dt(self) -> float:
        """Simulated seconds per env step."""
        return self.config.frame_skip * float(self.mj_model.opt.timestep)

    @functools.cached_property
    def observation_size(self) -> int:
        return int(self.observation(mjx.make_data(self.mj_model)).shape[-1])  # built once: a full mjx.Data

    @property
    def action_size(self) -> int:
        return int(self.mj_model.nu)

    @property
    def backend(self) -> str:
        return "mjx"

    def reset(self, rng: jax.Array) -> State:
        """Standing pose of the model with uniform noise on positions and velocities."""
        k_pos, k_vel = jax.random.split(rng)
        noise = self.config.reset_noise
        qpos = self.sys.qpos0 + jax.random.uniform(k_pos, (self.sys.nq,), minval=-noise, maxval=noise)
        qvel = jax.random.uniform(k_vel, (self.sys.nv,), minval=-noise, maxval=noise)
        data = mjx.forward(self.sys, mjx.make_data(self.sys).replace(qpos=qpos, qvel=qvel))
        zero = jnp.zeros(())
        return State(data, self.observation(data), zero, zero, self._oracle(data), {})

    def control(self, action: jax.Array) -> jax.Array:
        """The actuator controls of a unit ``action``: clipped to [-1, 1], then mapped linearly onto each
        actuator's range (-1 to its low end, 1 to its high end). The one place actions are scaled."""
        low, high = self._ctrl_range[:, 0], self._ctrl_range[:, 1]
        return low + (jnp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)

    def physics_step(self, data: mjx.Data, ctrl: jax.Array) -> mjx.Data:
        """One env step of physics alone: ``frame_skip`` MJX steps under the actuator controls ``ctrl`` (in the
        actuators' own units, not unit actions: see `control`)."""
        data = data.replace(ctrl=ctrl)
        return jax.lax.fori_loop(0, self.config.frame_skip, lambda _, d: mjx.step(self.sys, d), data)

    def step(self, state: State, action: jax.Array) -> State:
        """Apply the unit ``action`` (`control`) for ``frame_skip`` physics steps."""
        data = self.physics_step(state.pipeline_state, self.control(action))
        metrics = {**state.metrics, **self._oracle(data)}
        return state.replace(pipeline_state=data, obs=self.observation(data), reward=jnp.zeros(()),
                             metrics=metrics)

    def observation(self, data: mjx.Data) -> jax.Array:
        """Brax's humanoid observation: qpos without x, y; qvel; body inertias; body velocities; actuator forces.

        (Gymnasium's Humanoid-v4 vector also has contact forces, which MJX does not compute cheaply.)
        """
        cinert = data._impl.cinert  # MJX keeps body inertias with its JAX implementation's fields
        return jnp.concatenate([data.qpos[2:], data.qvel, cinert[1:].ravel(), data.cvel[1:].ravel(),
                                data.qfrc_actuator])

    def camera(self, data: mjx.Data) -> Camera:
        """The task camera for this frame (its look-at follows the torso when ``camera.track``)."""
        cam = self.config.camera
        if not cam.track:
            return cam.at()
        torso = data.xpos[self._torso]
        return cam.at(jnp.stack([torso[0], torso[1], jnp.float32(cam.lookat[2])]))

    def renderer(self, height: int = 224, width: int = 224, shadows: bool = True):
        """A jittable ``data [B] -> Frame [B]`` drawing a batch of this env's states from the task camera."""
        draw = Renderer(self.mj_model, height, width, shadows)

        def render(data: mjx.Data) -> Frame:
            return draw.batch(data, jax.vmap(self.camera)(data))

        return render

    def goal_frame(self, height: int = 224, width: int = 224) -> np.ndarray:
        """The task's canonical pose (`rewardax.envs.tasks.pose_data`) from the task camera, uint8 ``[H, W, 3]``."""
        data = mjx.put_data(self.mj_model, pose_data(self.task, self.mj_model), device=jax.local_devices()[0])
        return self.draw(data, height, width)

    def state_path(self, n: int):
        """Poses from standing (the model's qpos0) to the task's canonical pose, qpos interpolated linearly (the
        root quaternion renormalised), at rest."""
        t = jnp.linspace(0.0, 1.0, n)
        qpos = (1.0 - t[:, None]) * self.sys.qpos0 + t[:, None] * jnp.asarray(self.task.pose, jnp.float32)
        qpos = qpos.at[:, 3:7].set(qpos[:, 3:7] / jnp.linalg.norm(qpos[:, 3:7], axis=-1, keepdims=True))
        forward = jax.jit(jax.vmap(lambda q: mjx.forward(self.sys, mjx.make_data(self.sys).replace(qpos=q))))
        return t, f"standing → {self.task.name} pose", forward(qpos)

    def _oracle(self, data: mjx.Data) -> dict[str, jax.Array]:
        return {"success": self.task.success(data).astype(jnp.float32), "dense": self.task.dense(data)}
