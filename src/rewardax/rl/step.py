"""The shared training step: physics → render → reward → GAE → PPO in one compiled, data-parallel program.

    state, envs, labels = init(env, key, config, num_envs, total_updates, reward=reward)
    train_step = make_train_step(env, config, num_envs, total_updates)
    state, envs, labels, metrics = train_step(state, envs, labels, reward.split()[0])

``train_step`` is `jax.jit` of `jax.shard_map` over the mesh of every device (of every host after
`jax.distributed.initialize()`; `rewardax.mesh`: ``envs`` × ``model``): the envs are split over all devices, the
agent is replicated, the reward model's weights are replicated or, on a model axis of M > 1, split over each group
of M devices and gathered layer by layer where they are used (`rewardax.models.sharding`). The agent's gradients
and the statistics are summed over devices in device order (`rewardax.stats.device_sum`). Frames never leave the
device.
Randomness is per env (keyed by global env index) and minibatches are shuffled time steps, so a run takes
the same steps on one device as on many.

The reward model's frozen part is an argument, not part of the state: it can be large (CLIP bigG is 2.5 B
parameters), so checkpoints hold only what training changes. Its trainable parameters, if it has any, live in
``TrainState`` with their optimiser state (`rewardax.rewards.base`); the step merges the two.

A reward model that learns (``learning``, `rewardax.rl.reward_update.RewardLearning`) trains in the same program:
each env's state at one random step of the rollout is kept, drawn once after it, paired with another env's, and a
simulated teacher (`rewardax.rewards.teacher`) answers the chosen pairs from the oracle; the answers go to
``labels``, a ring of labelled frames split over devices along the env axis like the envs
(`rewardax.rl.label_buffer`), and after the PPO update the reward model takes ``learning.updates`` steps on them
(`update_reward_model`), its prefix cache rebuilt from the new weights when the next step merges them. Labelling
is per device (each pairs its own envs), so unlike the rest of the step a learning run's labels depend on the
device count. ``labels`` is None when the reward model does not learn.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from brax.envs.base import State
from flax import struct
from jax.sharding import Mesh, PartitionSpec as P

from rewardax.envs.base import TaskEnv, check_env
from rewardax.mesh import AXIS, MODEL, check_num_envs, make_mesh, model_size
from rewardax.models.sharding import model_axis, model_norm, specs
from rewardax.models.preprocess import resize_images
from rewardax.stats import roc_auc
from rewardax.rewards.base import Reward, check_reward
from rewardax.rl.networks import ActorCritic, Params, init_actor_critic
from rewardax.rl.normalize import RewardScaler, RunningMeanStd, scale_rewards
from rewardax.rl.label_buffer import LabelBuffer
from rewardax.rl.ppo import PPOConfig, make_batch, make_optimizer, update
from rewardax.rl.reward_update import RewardLearning, ask_teacher, held_out_agreement, update_reward_model
from rewardax.stats import device_sum
from rewardax.rl.rollout import RolloutCarry, finite_envs, init_carry, rollout, select_envs

@struct.dataclass
class TrainState:
    """Everything training changes that is the same on every device: replicated, but for a reward model's
    weights split over the model axis (and their optimiser state), which each model group holds once."""

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


def agent_for(env: TaskEnv, config: PPOConfig, key: jax.Array) -> tuple[ActorCritic, Params]:
    return init_actor_critic(key, env.observation_size, env.action_size, config.hidden_sizes, config.activation,
                             config.init_log_std)


def init(env: TaskEnv, key: jax.Array, config: PPOConfig, num_envs: int, total_updates: int,
         mesh: Mesh | None = None, reward: Reward | None = None, learning: RewardLearning | None = None,
         frame_size: int = 224) -> tuple[TrainState, EnvBatch, LabelBuffer | None]:
    """Fresh agent and optimiser, ``num_envs`` reset envs spread over the mesh, the trainable parameters of
    ``reward`` (if it has any) with their optimiser state, and with ``learning`` an empty ring of labelled
    ``frame_size`` frames split over the mesh (else None)."""
    mesh = make_mesh() if mesh is None else mesh
    check_env(env)
    # The state is donated to every step, so it owns copies: the model's own arrays (its trainable weights, the
    # reference it starts from) stay usable, e.g. the frozen part's reference, which a trainable model re-encodes.
    owned = partial(jax.tree.map, jnp.copy)
    reward_params = None if reward is None else owned(check_reward(reward).split()[1])
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
                       reward_reference=None if reward is None else owned(reward.initial_reference()))
    labels = None
    if learning is not None:
        capacity = learning.per_device(mesh.devices.size)[1]
        labels = jax.jit(jax.shard_map(lambda: LabelBuffer.create(capacity, 2, (frame_size, frame_size, 3)),
                                       mesh=mesh, in_specs=(), out_specs=P(AXIS), check_vma=False))()
    return jax.device_put(state, shardings(state, mesh)), envs, labels


def shardings(tree, mesh: Mesh):
    """Where each leaf of ``tree`` lives on ``mesh``: the reward model's weights (and their optimiser state) as
    `rewardax.models.sharding.specs` splits them, everything else replicated."""
    return jax.tree.map(lambda spec: jax.sharding.NamedSharding(mesh, spec), specs(tree),
                        is_leaf=lambda x: isinstance(x, P))


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
    candidate: Candidates | None = None
    """Each env's state at one step of the rollout, for the teacher (None unless the reward model learns)."""


@struct.dataclass
class Candidates:
    """Each env's state at one chosen step of a rollout: what the teacher may be asked about."""

    at: jax.Array
    """[B] the step of the rollout each env's state is taken at."""
    physics: Any
    """The batched physics state reached at that step (before any reset)."""
    success: jax.Array
    """[B] the oracle's verdict on it."""
    dense: jax.Array
    """[B] its dense ground truth."""
    valid: jax.Array
    """[B] whether the state is finite (a broken simulation's frames are never labelled)."""


def check_reward_every(reward_every: int) -> int:
    if not isinstance(reward_every, int) or isinstance(reward_every, bool) or reward_every < 1:
        raise ValueError(f"reward_every must be a positive integer (1: score every step), got {reward_every!r}")
    return reward_every


def check_reward_chunk(reward_chunk: int, *batches: int) -> int:
    """``reward_chunk`` itself; one clear error unless it is 0 or divides every batch of frames it will cut."""
    if not isinstance(reward_chunk, int) or isinstance(reward_chunk, bool) or reward_chunk < 0:
        raise ValueError(f"reward_chunk must be a non-negative integer (0: every frame in one call), got "
                         f"{reward_chunk!r}")
    for batch in batches:
        if reward_chunk and batch % reward_chunk:
            raise ValueError(f"reward_chunk={reward_chunk} must divide the {batch} frames scored together (the envs "
                             f"per device, and the evaluation's episodes): use a divisor of {batch}, or 0")
    return reward_chunk


def score_in_chunks(reward: Reward, frames: jax.Array | None, state: State, chunk: int = 0):
    """``reward(frames, state)`` computed ``chunk`` frames at a time (``lax.map``), so that only one chunk's
    activations exist at once: a 1 B VLM's attention over 512 frames alone is tens of GB. ``0`` (or a chunk of
    at least every frame): one call. The state's per-env leaves are sliced with the frames."""
    n = state.obs.shape[0]
    if not chunk or chunk >= n:
        return reward(frames, state)
    check_reward_chunk(chunk, n)

    def one(i):
        cut = lambda x: jax.lax.dynamic_slice_in_dim(x, i * chunk, chunk)  # noqa: E731
        part = jax.tree.map(lambda x: cut(x) if jnp.ndim(x) and x.shape[0] == n else x, state)
        return reward(None if frames is None else cut(frames), part)

    out = jax.lax.map(one, jnp.arange(n // chunk))
    return jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), out)


def scorer(env: TaskEnv, reward: Reward, frame_size: int, reward_every: int = 1, reward_chunk: int = 0):
    """``(start, score)``: ``score(state, new_episode, memory) -> (reward, metrics, memory)``, the rollout's reward
    function (`rewardax.rl.rollout.RewardFn`), and ``start(states)``, the memory it begins a rollout with
    (``states``: the batch the rollout starts from).

    ``score`` renders the frames the reward model looks at (if any) and scores them on the first step of the
    rollout, every ``reward_every``-th step after it, and every step where some env begins a new episode; on
    the steps between, the model is skipped (frames are not even drawn) and each env keeps its last reward and
    model metrics — a 1 B VLM costs about a hundred times CLIP B/32 per frame. So a held reward never outlives
    the episode it was scored in; envs whose episodes have one length end together, so this costs nothing
    extra when the rollout length divides the episode length. The model sees ``reward_chunk`` frames per call
    (`score_in_chunks`; 0: all of them). The env's oracle (``oracle/success``,
    ``oracle/dense``) is read on every step.
    When the model's reference adapts (`Reward.initial_reference`), the best-scoring valid frame is remembered.
    ``start(states, capture_at)`` with ``capture_at [B]`` keeps each env's state reached at that step of the
    rollout (`Candidates`, for the teacher: nothing is drawn until the rollout is over).
    """
    check_reward_every(reward_every)
    render = env.renderer(frame_size, frame_size) if reward.needs_frames else None
    if reward.needs_frames and render is None:
        raise ValueError(f"{type(reward).__name__} scores rendered frames, but {type(env).__name__} draws none: "
                         f"use a reward model that reads the state (needs_frames = False)")
    adaptive = reward.initial_reference() is not None

    def model(reached: State, memory: ScoreMemory):
        frames = render(reached.pipeline_state).rgb if render else None
        value, metrics = score_in_chunks(reward, frames, reached, reward_chunk)
        best_value, best_frame = memory.best_value, memory.best_frame
        if adaptive:
            candidates = jnp.where(finite_envs(reached) & jnp.isfinite(value), value, -jnp.inf)
            i = jnp.argmax(candidates)
            better = candidates[i] > best_value
            best_value = jnp.where(better, candidates[i], best_value)
            best_frame = jnp.where(better, frames[i], best_frame)
        return memory.replace(reward=value, metrics=metrics, best_value=best_value, best_frame=best_frame)

    def start(states: State, capture_at: jax.Array | None = None) -> ScoreMemory:
        shapes = jax.eval_shape(lambda s: reward(jnp.zeros((s.obs.shape[0], frame_size, frame_size, 3), jnp.uint8)
                                                 if render else None, s), states)
        value, metrics = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
        best_frame = jnp.zeros((frame_size, frame_size, 3), jnp.uint8) if adaptive else None
        candidate = None
        if capture_at is not None:
            zero = jnp.zeros(states.obs.shape[0])
            candidate = Candidates(capture_at, states.pipeline_state, zero, zero, zero.astype(bool))
        return ScoreMemory(jnp.zeros((), jnp.int32), value, metrics, jnp.full((), -jnp.inf), best_frame, candidate)

    def capture(reached: State, memory: ScoreMemory) -> Candidates:
        kept = memory.candidate
        now = Candidates(kept.at, reached.pipeline_state, reached.metrics["success"], reached.metrics["dense"],
                         finite_envs(reached))
        return select_envs(kept.at == memory.t, now, kept)

    def score(reached: State, new_episode: jax.Array, memory: ScoreMemory):
        if reward_every == 1:
            memory = model(reached, memory)
        else:
            due = (memory.t % reward_every == 0) | new_episode.any()
            memory = jax.lax.cond(due, model, lambda _, m: m, reached, memory)
        oracle = {f"oracle/{k}": reached.metrics[k] for k in ("success", "dense") if k in reached.metrics}
        if memory.candidate is not None:
            memory = memory.replace(candidate=capture(reached, memory))
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


MAY_BE_UNDEFINED = frozenset({"reward_model/pearson_dense", "reward_model/auc_success", "reward_model/accuracy",
                              "reward_model/held_out_auc"})
"""The step's metrics that are NaN where they are undefined (`reward_agreement`: a constant reward, no success
yet; a learning model's accuracy on an iteration whose frames all tie), not because anything diverged; every
other metric is finite in a healthy run."""


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
                    mesh: Mesh | None = None, reward_every: int = 1, learning: RewardLearning | None = None,
                    reward_chunk: int = 0):
    """``train_step(state, envs, labels, frozen) -> (state, envs, labels, metrics)``: ``frozen`` is the reward
    model's frozen part (``reward.split()[0]``; its trainable parameters are ``state.reward_params``), ``labels``
    the ring of labelled frames (`init`; None unless ``learning``). ``state``, ``envs`` and ``labels`` are donated.
    The model scores every ``reward_every``-th step of a rollout, ``reward_chunk`` frames per call (`scorer`). A
    model with an adaptive reference (``state.reward_reference``) takes the rollout's best frame as its new
    reference when that frame beats the old one (`Reward.beats_reference`). With ``learning`` the reward model
    learns from the simulated teacher (see the module docstring) and is tested on ``learning.held_out`` frames
    along the env's state path."""
    mesh = make_mesh() if mesh is None else mesh
    check_env(env)
    check_reward_every(reward_every)
    check_reward_chunk(reward_chunk, check_num_envs(num_envs, mesh))
    agent, _ = agent_for(env, config, jax.random.key(0))  # the graph definitions (tiny MLPs)
    optimizer = make_optimizer(config, total_updates)
    if learning is not None:
        render = env.renderer(frame_size, frame_size)
        queries = check_learning(env, render, learning, num_envs, mesh)
        held_out = held_out_frames(env, render, learning.held_out)

    def learn(state: TrainState, reward: Reward, frozen: Reward, labels: LabelBuffer, candidate: Candidates,
              key: jax.Array):
        """The teacher's answers about this rollout's candidates into the ring, then the reward model's updates."""
        query_key, update_key = jax.random.split(key)
        frames = render(candidate.physics).rgb
        examples, (correct, counted) = ask_teacher(
            reward, frames, candidate.success, candidate.dense, candidate.valid,
            jax.random.fold_in(query_key, jax.lax.axis_index(AXIS)), queries, learning)
        spent = jax.lax.psum(labels.labelled[0], AXIS)
        labels = jax.lax.cond(spent + learning.labels_per_iteration <= learning.label_budget,
                              lambda: labels.add(*examples), lambda: labels)
        correct, counted = device_sum(jnp.stack([correct, counted]), AXIS)
        metrics = {"reward_model/labels": jax.lax.psum(labels.labelled[0], AXIS).astype(jnp.float32),
                   "reward_model/accuracy": jnp.where(counted > 0, correct / jnp.maximum(counted, 1.0), jnp.nan)}
        params, opt_state = state.reward_params, state.reward_opt_state
        if params is None:
            raise ValueError(f"{type(frozen).__name__} has no trainable weights to learn from the teacher: make it "
                             f"trainable first (RewardLearning.make_trainable)")
        if learning.updates:
            params, opt_state, losses = update_reward_model(frozen, params, opt_state, labels, update_key, learning,
                                                            AXIS)
            metrics.update(losses)
        state = state.replace(reward_params=params, reward_opt_state=opt_state)
        if held_out is not None:  # the model as the next rollout will score with it
            metrics.update(held_out_agreement(current_reward(frozen, state), *held_out))
        return state, labels, metrics

    def step_on_one_device(state: TrainState, envs: EnvBatch, labels: LabelBuffer | None, frozen: Reward):
        reward = current_reward(frozen, state)
        start, score = scorer(env, reward, frame_size, reward_every, reward_chunk)
        if learning is None:
            key, update_key = jax.random.split(state.key)
            capture_at = None
        else:
            key, update_key, learn_key, capture_key = jax.random.split(state.key, 4)
            capture_at = jax.random.randint(jax.random.fold_in(capture_key, jax.lax.axis_index(AXIS)),
                                            envs.steps.shape, 0, config.num_steps)
        carry = RolloutCarry(envs.state, envs.steps, envs.keys, state.obs_stats, start(envs.state, capture_at))
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
        params, opt_state, losses = update(agent, optimizer, state.params, state.opt_state,
                                           make_batch(transitions, rewards, config), update_key, config, AXIS)
        valid = transitions.valid
        step_means = {"reward": transitions.reward, "scaled_reward": rewards, "episode_end": transitions.episode_end,
                      **transitions.metrics}
        sums = device_sum({"valid": valid.sum(), **{k: (v * valid).sum() for k, v in step_means.items()}}, AXIS)
        count = jnp.maximum(sums["valid"], 1.0)
        metrics = {k: sums[k] / count for k in step_means}
        # RewardDance's sign of reward hacking is this variance collapsing (`rewardax.train.monitor`).
        metrics["reward_variance"] = device_sum((valid * (transitions.reward - metrics["reward"]) ** 2).sum(),
                                                AXIS) / count
        metrics["env/non_finite_resets"] = jax.lax.psum(valid.size, AXIS) - sums["valid"]
        if {"oracle/dense", "oracle/success"} <= transitions.metrics.keys():
            metrics.update(reward_agreement(transitions.reward, transitions.metrics["oracle/dense"],
                                            transitions.metrics["oracle/success"], valid, AXIS))
        # The norms are NaN/inf as soon as any parameter is: the trainer's divergence check reads them.
        metrics = {**metrics, **losses, "param_norm": optax.tree.norm(params)}
        if reference is not None:
            metrics.update({"reward_model/reference_replaced": replaced.astype(jnp.float32),
                            "reward_model/best_reward": value})
        state = state.replace(params=params, opt_state=opt_state, obs_stats=carry.obs_stats,
                              return_stats=scaler.stats, key=key, iteration=state.iteration + 1,
                              reward_reference=reference)
        if learning is not None:
            state, labels, learned = learn(state, reward, frozen, labels, carry.reward_memory.candidate, learn_key)
            metrics.update(learned)
        if state.reward_params is not None:
            metrics["reward_model/param_norm"] = model_norm(state.reward_params, MODEL)
        envs = EnvBatch(carry.env_state, carry.steps, carry.keys, scaler.returns)
        return state, envs, labels, metrics

    def train_step(state: TrainState, envs: EnvBatch, labels: LabelBuffer | None, frozen: Reward):
        # The reward model's weights keep their split over the model axis (read from their metadata while
        # tracing); check_vma=False: MJX's solver has `lax.cond`s whose branches JAX's replication typing cannot
        # match under shard_map; replication is kept by construction (pmean/psum of everything shared).
        layout = specs(state)
        sharded = jax.shard_map(step_on_one_device, mesh=mesh, in_specs=(layout, P(AXIS), P(AXIS), specs(frozen)),
                                out_specs=(layout, P(AXIS), P(AXIS), P()), check_vma=False)
        with model_axis(MODEL, model_size(mesh)):  # the models gather their split weights layer by layer
            return sharded(state, envs, labels, frozen)

    return jax.jit(train_step, donate_argnums=(0, 1, 2))


def check_learning(env: TaskEnv, render, learning: RewardLearning, num_envs: int, mesh: Mesh) -> int:
    """Queries per device per iteration; one clear error for a setting the step cannot run."""
    if env.task is None or render is None:
        raise ValueError(f"a reward model learns from a teacher that reads the task's oracle on rendered frames; "
                         f"{type(env).__name__} has no task or draws nothing")
    queries, _ = learning.per_device(mesh.devices.size)
    pairs = num_envs // mesh.devices.size // 2
    if queries > pairs:
        raise ValueError(f"reward learning asks {queries} queries per device per iteration, but each device's "
                         f"{num_envs // mesh.devices.size} envs offer {pairs} pairs of frames: lower "
                         f"labels_per_iteration to at most {pairs * mesh.devices.size} or raise num_envs")
    return queries


def held_out_frames(env: TaskEnv, render, count: int):
    """``(frames, success, dense)`` of ``count`` states along the env's state path (`TaskEnv.state_path`), the
    fixed set a learning reward model is tested on; None for ``count`` 0 or an env without a path."""
    path = env.state_path(count) if count else None
    if path is None:
        return None
    physics = path[2]
    frames = jax.jit(render)(physics).rgb
    return frames, jnp.asarray(env.task.success(physics), jnp.float32), jnp.asarray(env.task.dense(physics),
                                                                                     jnp.float32)
