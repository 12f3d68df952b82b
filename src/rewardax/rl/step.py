"""The shared training step: physics → render → reward → GAE → PPO in one compiled, data-parallel program.

    state, envs = init(env, key, config, num_envs, total_updates, reward=reward)
    train_step = make_train_step(env, config, num_envs, total_updates)
    state, envs, metrics = train_step(state, envs, reward.split()[0])

``train_step`` is `jax.jit` of `jax.shard_map` over a one-axis mesh of every device (of every host after
`jax.distributed.initialize()`): the envs are split along the mesh axis, the agent and the reward model are
replicated, and gradients and statistics are summed over devices in device order (`rewardax.stats.device_sum`).
Frames never leave the device.
Randomness is per env (keyed by global env index) and minibatches are shuffled time steps, so a run takes
the same steps on one device as on many.

The reward model's frozen part is an argument, not part of the state: it can be large (CLIP bigG is 2.5 B
parameters), so checkpoints hold only what training changes. Its trainable parameters, if it has any, live in
``TrainState`` with their optimiser state (`rewardax.rewards.base`); the step merges the two.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from brax.envs.base import State
from flax import struct
from jax.sharding import Mesh, PartitionSpec as P

from rewardax.envs.base import TaskEnv, check_env
from rewardax.models.preprocess import resize_images
from rewardax.stats import roc_auc
from rewardax.rewards.base import Reward, check_reward
from rewardax.rl.networks import ActorCritic, Params, init_actor_critic
from rewardax.rl.normalize import RewardScaler, RunningMeanStd, scale_rewards
from rewardax.rl.ppo import PPOConfig, make_batch, make_optimizer, update
from rewardax.stats import device_sum
from rewardax.rl.rollout import RolloutCarry, finite_envs, init_carry, rollout

AXIS = "envs"


@struct.dataclass
class TrainState:
    """Everything training changes that is the same on every device (replicated)."""

    params: Params
    opt_state: optax.OptState
    obs_stats: RunningMeanStd
    return_stats: RunningMeanStd
    """Moments of discounted returns, for reward scaling."""
    key: jax.Array
    """Shuffles minibatches (the same on every device)."""
    iteration: jax.Array
    reward_params: Any = None
    """A trainable reward model's parameters (None while the reward model is frozen)."""
    reward_opt_state: Any = None
    reward_reference: Any = None
    """The image an adaptive reward model compares frames with: the best frame seen so far (None for others)."""


@struct.dataclass
class EnvBatch:
    """Per-env state, split over devices along the env axis."""

    state: State
    steps: jax.Array
    """[B] steps taken in the current episode."""
    keys: jax.Array
    """[B] per-env random keys."""
    returns: jax.Array
    """[B] discounted reward sums of the current episodes, for reward scaling."""


def make_mesh(devices=None) -> Mesh:
    """A one-axis mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS,))


def check_num_envs(num_envs: int, mesh: Mesh) -> int:
    """Envs per device; one clear error if ``num_envs`` does not split evenly."""
    devices = mesh.devices.size
    if num_envs < 1 or num_envs % devices:
        raise ValueError(f"num_envs={num_envs} must be a positive multiple of the {devices} devices; use e.g. "
                         f"num_envs={max(1, num_envs // devices) * devices} or {(num_envs // devices + 1) * devices}")
    return num_envs // devices


def agent_for(env: TaskEnv, config: PPOConfig, key: jax.Array) -> tuple[ActorCritic, Params]:
    return init_actor_critic(key, env.observation_size, env.action_size, config.hidden_sizes, config.activation,
                             config.init_log_std)


def init(env: TaskEnv, key: jax.Array, config: PPOConfig, num_envs: int, total_updates: int,
         mesh: Mesh | None = None, reward: Reward | None = None) -> tuple[TrainState, EnvBatch]:
    """Fresh agent and optimiser, ``num_envs`` reset envs spread over the mesh, and the trainable parameters of
    ``reward`` (if it has any) with their optimiser state."""
    mesh = make_mesh() if mesh is None else mesh
    check_env(env)
    reward_params = None if reward is None else check_reward(reward).split()[1]
    per_device = check_num_envs(num_envs, mesh)
    agent_key, env_key, update_key = jax.random.split(key, 3)
    _, params = agent_for(env, config, agent_key)
    opt_state = make_optimizer(config, total_updates).init(params)

    def init_envs(env_key):
        carry = init_carry(env, env_key, per_device, axis_name=AXIS)
        envs = EnvBatch(carry.env_state, carry.steps, carry.keys, jnp.zeros(per_device))
        return envs, carry.obs_stats

    envs, obs_stats = jax.jit(jax.shard_map(init_envs, mesh=mesh, in_specs=P(), out_specs=(P(AXIS), P()),
                                            check_vma=False))(env_key)
    state = TrainState(params=params, opt_state=opt_state, obs_stats=obs_stats, return_stats=RunningMeanStd.create(),
                       key=update_key, iteration=jnp.zeros((), jnp.int32), reward_params=reward_params,
                       reward_opt_state=None if reward_params is None else reward.optimizer.init(reward_params),
                       reward_reference=None if reward is None else reward.initial_reference())
    return jax.device_put(state, jax.sharding.NamedSharding(mesh, P())), envs


@struct.dataclass
class ScoreMemory:
    """What the scorer (`scorer`) carries from one step of a rollout to the next."""

    t: jax.Array
    """Steps of this rollout scored or held so far."""
    reward: jax.Array
    """[B] the reward model's last rewards (held between the steps it scores)."""
    metrics: dict[str, jax.Array]
    """The reward model's last metrics, {name: [B]}."""
    best_value: jax.Array
    """Highest reward of this rollout on this device (−inf before any; only tracked for an adaptive reference)."""
    best_frame: jax.Array | None
    """The frame that scored it, uint8 [H, W, 3] (None unless the reward model's reference adapts)."""


def check_reward_every(reward_every: int) -> int:
    if not isinstance(reward_every, int) or isinstance(reward_every, bool) or reward_every < 1:
        raise ValueError(f"reward_every must be a positive integer (1: score every step), got {reward_every!r}")
    return reward_every


def scorer(env: TaskEnv, reward: Reward, frame_size: int, reward_every: int = 1):
    """``(start, score)``: ``score(state, new_episode, memory) -> (reward, metrics, memory)``, the rollout's reward
    function (`rewardax.rl.rollout.RewardFn`), and ``start(states)``, the memory it begins a rollout with
    (``states``: the batch the rollout starts from).

    ``score`` renders the frames the reward model looks at (if any) and scores them on the first step of the
    rollout, every ``reward_every``-th step after it, and every step where some env begins a new episode; on
    the steps between, the model is skipped (frames are not even drawn) and each env keeps its last reward and
    model metrics — a 1 B VLM costs about a hundred times CLIP B/32 per frame. So a held reward never outlives
    the episode it was scored in; envs whose episodes have one length end together, so this costs nothing
    extra when the rollout length divides the episode length. The env's oracle (``oracle/success``,
    ``oracle/dense``) is read on every step.
    When the model's reference adapts (`Reward.initial_reference`), the best-scoring valid frame is remembered.
    """
    check_reward_every(reward_every)
    render = env.renderer(frame_size, frame_size) if reward.needs_frames else None
    if reward.needs_frames and render is None:
        raise ValueError(f"{type(reward).__name__} scores rendered frames, but {type(env).__name__} draws none: "
                         f"use a reward model that reads the state (needs_frames = False)")
    adaptive = reward.initial_reference() is not None

    def model(reached: State, memory: ScoreMemory):
        frames = render(reached.pipeline_state).rgb if render else None
        value, metrics = reward(frames, reached)
        best_value, best_frame = memory.best_value, memory.best_frame
        if adaptive:
            candidates = jnp.where(finite_envs(reached) & jnp.isfinite(value), value, -jnp.inf)
            i = jnp.argmax(candidates)
            better = candidates[i] > best_value
            best_value = jnp.where(better, candidates[i], best_value)
            best_frame = jnp.where(better, frames[i], best_frame)
        return memory.replace(reward=value, metrics=metrics, best_value=best_value, best_frame=best_frame)

    def start(states: State) -> ScoreMemory:
        shapes = jax.eval_shape(lambda s: reward(jnp.zeros((s.obs.shape[0], frame_size, frame_size, 3), jnp.uint8)
                                                 if render else None, s), states)
        value, metrics = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
        best_frame = jnp.zeros((frame_size, frame_size, 3), jnp.uint8) if adaptive else None
        return ScoreMemory(jnp.zeros((), jnp.int32), value, metrics, jnp.full((), -jnp.inf), best_frame)

    def score(reached: State, new_episode: jax.Array, memory: ScoreMemory):
        if reward_every == 1:
            memory = model(reached, memory)
        else:
            due = (memory.t % reward_every == 0) | new_episode.any()
            memory = jax.lax.cond(due, model, lambda _, m: m, reached, memory)
        oracle = {f"oracle/{k}": reached.metrics[k] for k in ("success", "dense") if k in reached.metrics}
        return memory.reward, {**memory.metrics, **oracle}, memory.replace(t=memory.t + 1)

    return start, score


def current_reward(frozen: Reward, state: TrainState) -> Reward:
    """The reward model as ``state`` has it: the frozen part with the trainable parameters and the adaptive
    reference (if any) put back."""
    reward = frozen.merge(state.reward_params)
    return reward if state.reward_reference is None else reward.with_reference(state.reward_reference)


def best_over_devices(value: jax.Array, frame: jax.Array, axis_name: str) -> tuple[jax.Array, jax.Array]:
    """Every device's best (value, frame) -> the best over all devices (the lowest device index on a tie)."""
    best = jax.lax.pmax(value, axis_name)
    owner = jax.lax.pmin(jnp.where(value == best, jax.lax.axis_index(axis_name), jnp.iinfo(jnp.int32).max),
                         axis_name)
    mine = jax.lax.axis_index(axis_name) == owner
    return best, jax.lax.psum(jnp.where(mine, frame.astype(jnp.int32), 0), axis_name).astype(frame.dtype)


MAY_BE_UNDEFINED = frozenset({"reward_model/pearson_dense", "reward_model/auc_success"})
"""The step's metrics that are NaN where they are undefined (`reward_agreement`: a constant reward, no success
yet), not because anything diverged; every other metric is finite in a healthy run."""


def reward_agreement(reward: jax.Array, dense: jax.Array, success: jax.Array, valid: jax.Array,
                     axis_name: str | None = None) -> dict[str, jax.Array]:
    """How well the reward model's rewards agree with the ground truth over a rollout (all devices).

    ``reward_model/pearson_dense``: Pearson correlation with the dense ground truth. ``reward_model/auc_success``:
    ROC-AUC of the reward as a detector of oracle success, the probability that a successful step scores
    higher than an unsuccessful one (ties count half). NaN where undefined (a constant signal; no successes).
    Near 0 (Pearson) or 0.5 (AUC) is a reward model that cannot see the task: VLM-RM users' "it learns nothing".
    """
    x, y, w = reward.ravel(), dense.ravel(), valid.ravel()

    def total(values):
        sums = jnp.stack([v.sum() for v in values])
        return device_sum(sums, axis_name)

    n, sx, sy = total([w, w * x, w * y])
    dx, dy = x - sx / n, y - sy / n  # centred first: CLIP rewards differ by ~0.01 around ~0.25 (float32)
    sxx, syy, sxy = total([w * dx * dx, w * dy * dy, w * dx * dy])
    pearson = sxy / jnp.sqrt(sxx * syy)

    positive = success.ravel() > 0.5
    if axis_name is not None:  # ranks need every device's samples
        x, positive, w = (jax.lax.all_gather(a, axis_name, tiled=True) for a in (x, positive, w))
    auc = roc_auc(x, positive, w)
    return {"reward_model/pearson_dense": pearson, "reward_model/auc_success": auc}


def make_train_step(env: TaskEnv, config: PPOConfig, num_envs: int, total_updates: int, frame_size: int = 224,
                    mesh: Mesh | None = None, reward_every: int = 1):
    """``train_step(state, envs, frozen) -> (state, envs, metrics)``: ``frozen`` is the reward model's frozen
    part (``reward.split()[0]``; its trainable parameters are ``state.reward_params``, and stay unchanged here:
    nothing trains them yet). ``state`` and ``envs`` are donated. The model scores every ``reward_every``-th
    step of a rollout (`scorer`). A model with an adaptive reference (``state.reward_reference``) takes the
    rollout's best frame as its new reference when that frame beats the old one (`Reward.beats_reference`)."""
    mesh = make_mesh() if mesh is None else mesh
    check_num_envs(num_envs, mesh)
    check_env(env)
    check_reward_every(reward_every)
    agent, _ = agent_for(env, config, jax.random.key(0))  # the graph definitions (tiny MLPs)
    optimizer = make_optimizer(config, total_updates)

    def step_on_one_device(state: TrainState, envs: EnvBatch, frozen: Reward):
        reward = current_reward(frozen, state)
        start, score = scorer(env, reward, frame_size, reward_every)
        carry = RolloutCarry(envs.state, envs.steps, envs.keys, state.obs_stats, start(envs.state))
        carry, transitions = rollout(
            env, partial(agent.act, state.params), partial(agent.value, state.params), score, carry,
            config.num_steps, env.episode_length, axis_name=AXIS)
        reference = state.reward_reference
        if reference is not None:
            value, frame = best_over_devices(carry.reward_memory.best_value, carry.reward_memory.best_frame, AXIS)
            replaced = reward.beats_reference(value)
            resized = resize_images(frame, *reference.shape[:2], method="bilinear").astype(jnp.uint8)
            reference = jnp.where(replaced, resized, reference)
        scaler = RewardScaler(envs.returns, state.return_stats)
        if config.scale_reward:
            scaler, rewards = scale_rewards(scaler, transitions.reward, transitions.episode_end, config.gamma, AXIS,
                                            transitions.valid)
        else:
            rewards = transitions.reward
        key, update_key = jax.random.split(state.key)
        params, opt_state, losses = update(agent, optimizer, state.params, state.opt_state,
                                           make_batch(transitions, rewards, config), update_key, config, AXIS)
        valid = transitions.valid
        step_means = {"reward": transitions.reward, "scaled_reward": rewards, "episode_end": transitions.episode_end,
                      **transitions.metrics}
        sums = device_sum({"valid": valid.sum(), **{k: (v * valid).sum() for k, v in step_means.items()}}, AXIS)
        metrics = {k: sums[k] / jnp.maximum(sums["valid"], 1.0) for k in step_means}
        metrics["env/non_finite_resets"] = jax.lax.psum(valid.size, AXIS) - sums["valid"]
        if {"oracle/dense", "oracle/success"} <= transitions.metrics.keys():
            metrics.update(reward_agreement(transitions.reward, transitions.metrics["oracle/dense"],
                                            transitions.metrics["oracle/success"], valid, AXIS))
        # The norms are NaN/inf as soon as any parameter is: the trainer's divergence check reads them.
        metrics = {**metrics, **losses, "param_norm": optax.tree.norm(params)}
        if state.reward_params is not None:
            metrics["reward_model/param_norm"] = optax.tree.norm(state.reward_params)
        if reference is not None:
            metrics.update({"reward_model/reference_replaced": replaced.astype(jnp.float32),
                            "reward_model/best_reward": value})
        state = state.replace(params=params, opt_state=opt_state, obs_stats=carry.obs_stats,
                              return_stats=scaler.stats, key=key, iteration=state.iteration + 1,
                              reward_reference=reference)
        envs = EnvBatch(carry.env_state, carry.steps, carry.keys, scaler.returns)
        return state, envs, metrics

    # check_vma=False: MJX's solver has `lax.cond`s whose branches JAX's replication typing cannot match
    # under shard_map; replication is kept by construction (pmean/psum of everything shared).
    sharded = jax.shard_map(step_on_one_device, mesh=mesh, in_specs=(P(), P(AXIS), P()),
                            out_specs=(P(), P(AXIS), P()), check_vma=False)
    return jax.jit(sharded, donate_argnums=(0, 1))
