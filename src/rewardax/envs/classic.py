"""CartPole and continuous MountainCar in JAX, with the VLM-RM paper's changes, their tasks and 2-D renderers.

- CartPole: the classic cart-pole equations (Barto, Sutton & Anderson 1983, with Gym's constants: g 9.8, cart
  1 kg, pole 0.1 kg of half-length 0.5 m, 0.02 s Euler steps), pushed by a force of 10 N × the action in
  [-1, 1] (Gym's ±10 N, made continuous). As in the paper, nothing fails: the angle is wrapped to (−π, π]
  instead of ending the episode, and the cart stops at the ends of the track (|x| ≤ 2.4). Success: the pole
  within 12° of upright (Gym's failure threshold). Observation (x, ẋ, cos θ, sin θ, θ̇).
- MountainCar: Gym's ``MountainCarContinuous`` dynamics (power 0.0015, gravity term 0.0025·cos 3x, |v| ≤ 0.07,
  x in [−1.2, 0.6], the car stops at the left wall). As in the paper the goal is absorbing: once x ≥ 0.45
  the car stays where it is, at rest (a frozen velocity would shift the observation statistics the policy
  reads), and success is kept. Observation (x, v).

Both end episodes only by truncation (``done`` stays 0). ``metrics["success"]`` and ``metrics["dense"]`` are
the oracle and a dense ground truth in [0, 1], 1 exactly where the oracle passes (CartPole: the pole's height,
(1 + cos θ) / (1 + cos 12°), capped at 1; MountainCar: 0.5 × the car's mechanical energy between resting in the
valley and resting at the goal, 1 at the goal), for checking PPO without a VLM and as the evaluation's ground
truth. The renderers draw Gym's pictures procedurally (no images copied): CartPole's track, cart and pole;
MountainCar in two looks, ``default`` (plain, Gym's: a line for the hill) and ``paper`` (textured: sky, ground
texture under the hill ``sin(3x)``, a yellow flag at the peak, a red car along the slope), since the paper
found texture decisive for CLIP there.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from brax.envs.base import State
from flax import struct

from rewardax.envs.base import TaskEnv
from rewardax.envs.model import LOOKS
from rewardax.envs.tasks import Task
from rewardax.render import canvas
from rewardax.render.renderer import Frame

CARTPOLE = Task(name="cartpole", goal=("pole vertically upright on top of the cart",), baseline=("pole and cart",),
                success=lambda s: jnp.abs(s.theta) < math.radians(12.0), dense=lambda s: _pole_height(s.theta))
MOUNTAINCAR = Task(name="mountaincar", goal=("a car at the peak of the mountain, next to the yellow flag",),
                   baseline=("a car in the mountain",), success=lambda s: s.x >= 0.45,
                   dense=lambda s: jnp.where(s.x >= 0.45, 1.0, 0.5 * _energy(s.x, s.v)))


def _pole_height(theta):
    return jnp.minimum((1.0 + jnp.cos(theta)) / (1.0 + math.cos(math.radians(12.0))), 1.0)


def _potential(x):
    return 0.0025 / 3.0 * jnp.sin(3.0 * x)  # the gravity term −0.0025·cos 3x is −dU/dx


def _energy(x, v):
    """Mechanical energy, 0 resting in the valley, 1 resting at the goal (clipped to [0, 1])."""
    low, goal = -0.0025 / 3.0, _potential(0.45)
    return jnp.clip((_potential(x) + 0.5 * v**2 - low) / (goal - low), 0.0, 1.0)


@struct.dataclass
class CartPoleState:
    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array


@struct.dataclass
class MountainCarState:
    x: jax.Array
    v: jax.Array


class _Classic(TaskEnv):
    """What the two share: a truncation-only episode, the oracle in ``metrics``, the goal frame. ``look``:
    "paper" or "default" (the names the humanoid uses); only MountainCar draws them differently."""

    def __init__(self, look: str = "paper"):
        if look not in LOOKS:
            raise ValueError(f"unknown look {look!r} for {type(self).__name__}; valid looks are {', '.join(LOOKS)}")
        self.look = look

    def _state(self, physics) -> State:
        zero = jnp.zeros(())
        metrics = {"success": self.task.success(physics).astype(jnp.float32),
                   "dense": jnp.asarray(self.task.dense(physics), jnp.float32)}
        return State(physics, self.observation(physics), zero, zero, metrics, {})

    def goal_frame(self, height: int = 224, width: int = 224):
        """The goal state drawn by the renderer, uint8 ``[H, W, 3]``."""
        return self.draw(jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), self.goal_state), height, width)

    @property
    def action_size(self) -> int:
        return 1


class CartPole(_Classic):
    episode_length = 200
    dt = 0.02
    task = CARTPOLE
    goal_state = CartPoleState(0.0, 0.0, 0.0, 0.0)

    def state_path(self, n: int):
        """The pole at every angle in [−π, π], the cart centred and at rest."""
        theta = jnp.linspace(-jnp.pi, jnp.pi, n)
        zero = jnp.zeros(n)
        return theta, "pole angle (rad)", CartPoleState(zero, zero, theta, zero)

    @property
    def observation_size(self) -> int:
        return 5

    def observation(self, s: CartPoleState) -> jax.Array:
        return jnp.stack([s.x, s.x_dot, jnp.cos(s.theta), jnp.sin(s.theta), s.theta_dot])

    def reset(self, rng: jax.Array) -> State:
        """Gym's start: all four state variables uniform in [−0.05, 0.05] (the pole nearly upright)."""
        x, x_dot, theta, theta_dot = jax.random.uniform(rng, (4,), minval=-0.05, maxval=0.05)
        return self._state(CartPoleState(x, x_dot, theta, theta_dot))

    def step(self, state: State, action: jax.Array) -> State:
        s = state.pipeline_state
        force = 10.0 * jnp.clip(action[0], -1.0, 1.0)
        total_mass, pole_mass_length, half_length = 1.1, 0.05, 0.5
        cos, sin = jnp.cos(s.theta), jnp.sin(s.theta)
        temp = (force + pole_mass_length * s.theta_dot**2 * sin) / total_mass
        theta_acc = (9.8 * sin - cos * temp) / (half_length * (4.0 / 3.0 - 0.1 * cos**2 / total_mass))
        x_acc = temp - pole_mass_length * theta_acc * cos / total_mass
        x, x_dot = s.x + self.dt * s.x_dot, s.x_dot + self.dt * x_acc
        theta, theta_dot = s.theta + self.dt * s.theta_dot, s.theta_dot + self.dt * theta_acc
        at_wall = jnp.abs(x) >= 2.4
        x_dot = jnp.where(at_wall & (jnp.sign(x_dot) == jnp.sign(x)), 0.0, x_dot)
        theta = jnp.mod(theta + jnp.pi, 2.0 * jnp.pi) - jnp.pi
        return self._state(CartPoleState(jnp.clip(x, -2.4, 2.4), x_dot, theta, theta_dot))

    def renderer(self, height: int = 224, width: int = 224):
        """Gym's picture: a white background, the track, a dark cart, a brown pole on a blue axle."""
        aspect = height / width
        x_range = (-2.9, 2.9)
        y_low = -1.0
        px, py = canvas.grid(height, width, x_range, (y_low, y_low + aspect * (x_range[1] - x_range[0])))

        def draw(s: CartPoleState):
            image = canvas.fill(px, (1.0, 1.0, 1.0))
            image = canvas.paint(image, canvas.box(px, py, (0.0, -0.15), (2.9, 0.01)), (0.0, 0.0, 0.0))
            image = canvas.paint(image, canvas.box(px, py, (s.x, 0.0), (0.25, 0.15)), (0.0, 0.0, 0.0))
            middle = (s.x + 0.5 * jnp.sin(s.theta), 0.5 * jnp.cos(s.theta))  # θ > 0 leans right, as in Gym
            pole = canvas.box(px, py, middle, (0.05, 0.5), -s.theta)
            image = canvas.paint(image, pole, (0.79, 0.60, 0.40))
            image = canvas.paint(image, canvas.disk(px, py, (s.x, 0.0), 0.05), (0.51, 0.52, 0.80))
            return canvas.to_uint8(image)

        return lambda states: Frame(jax.vmap(draw)(states))


class MountainCar(_Classic):
    episode_length = 250
    dt = 1.0 / 30.0  # Gym renders it at 30 frames per second
    task = MOUNTAINCAR
    goal_state = MountainCarState(0.5, 0.0)

    def state_path(self, n: int):
        """The car at rest at every position of the track, [−1.2, 0.6]."""
        x = jnp.linspace(-1.2, 0.6, n)
        return x, "car position", MountainCarState(x, jnp.zeros(n))

    @property
    def observation_size(self) -> int:
        return 2

    def observation(self, s: MountainCarState) -> jax.Array:
        return jnp.stack([s.x, s.v])

    def reset(self, rng: jax.Array) -> State:
        """Gym's start: x uniform in [−0.6, −0.4], at rest."""
        return self._state(MountainCarState(jax.random.uniform(rng, minval=-0.6, maxval=-0.4), jnp.zeros(())))

    def step(self, state: State, action: jax.Array) -> State:
        s = state.pipeline_state
        force = jnp.clip(action[0], -1.0, 1.0)
        v = jnp.clip(s.v + 0.0015 * force - 0.0025 * jnp.cos(3.0 * s.x), -0.07, 0.07)
        x = jnp.clip(s.x + v, -1.2, 0.6)
        v = jnp.where((x <= -1.2) & (v < 0), 0.0, v)
        reached = s.x >= 0.45  # absorbing: a car at the goal stays there, at rest
        return self._state(MountainCarState(jnp.where(reached, s.x, x), jnp.where(reached, 0.0, v)))

    def renderer(self, height: int = 224, width: int = 224):
        """The hill y = 0.45·sin(3x) + 0.55 over x in [−1.2, 0.6], the flag at x = 0.45, the car on the slope."""
        x_range = (-1.2, 0.6)
        px, py = canvas.grid(height, width, x_range, (0.0, height / width * (x_range[1] - x_range[0])))
        hill = 0.45 * jnp.sin(3.0 * px) + 0.55
        textured = self.look == "paper"
        if textured:  # sky fading to white at the horizon, ground with a two-tone grass texture
            sky = jnp.stack([0.55 + 0.35 * (1 - py / py.max()), 0.75 + 0.2 * (1 - py / py.max()),
                             jnp.ones_like(py)], -1)
            grain = 0.5 + 0.5 * jnp.sin(60.0 * px + 7.0 * jnp.sin(40.0 * py)) * jnp.sin(45.0 * py)
            ground = jnp.stack([0.25 + 0.15 * grain, 0.5 + 0.2 * grain, 0.15 + 0.05 * grain], -1)
            background = jnp.where((py < hill)[..., None], ground, sky)
        else:  # Gym's: white, the hill as a black line
            background = canvas.paint(canvas.fill(px, (1.0, 1.0, 1.0)), jnp.abs(py - hill) < 0.006, (0.0, 0.0, 0.0))
        flag_y = 0.45 * math.sin(3.0 * 0.45) + 0.55
        background = canvas.paint(background, canvas.box(px, py, (0.45, flag_y + 0.075), (0.005, 0.075)),
                                  (0.0, 0.0, 0.0))  # Gym's flag: a 0.15 pole with a 0.075 × 0.03 flag at its top
        background = canvas.paint(background, canvas.box(px, py, (0.4875, flag_y + 0.135), (0.0375, 0.015)),
                                  (0.95, 0.8, 0.0))
        body = (0.85, 0.1, 0.1) if textured else (0.0, 0.0, 0.0)

        def draw(s: MountainCarState):
            angle = jnp.arctan(1.35 * jnp.cos(3.0 * s.x))  # the slope dy/dx of the hill
            y = 0.45 * jnp.sin(3.0 * s.x) + 0.55
            normal = (-jnp.sin(angle), jnp.cos(angle))
            lift = lambda h: (s.x + h * normal[0], y + h * normal[1])  # noqa: E731
            image = canvas.paint(background, canvas.box(px, py, lift(0.035), (0.05, 0.025), angle), body)
            for side in (-1.0, 1.0):
                along = (jnp.cos(angle) * 0.03 * side, jnp.sin(angle) * 0.03 * side)
                wheel = (lift(0.012)[0] + along[0], lift(0.012)[1] + along[1])
                image = canvas.paint(image, canvas.disk(px, py, wheel, 0.012), (0.3, 0.3, 0.3))
            return canvas.to_uint8(image)

        return lambda states: Frame(jax.vmap(draw)(states))
