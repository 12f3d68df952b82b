"""The shared training step: data-parallel equivalence, rewards from rendered frames, learning."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from flax import struct

import rewardax.envs as envs
from rewardax.envs import probes
from rewardax.rewards import EnvReward, Reward
from rewardax.rl import PPOConfig
from rewardax.rl import step as rl_step
from rewardax.rl.rollout import init_carry, rollout

SMALL = PPOConfig(learning_rate=3e-3, num_steps=8, minibatches=2, epochs=2, hidden_sizes=(16,), gamma=0.9)


def run(env, config, num_envs, iterations, mesh, reward=EnvReward(), seed=0, frame_size=16):
    state, batch, labels = rl_step.init(env, jax.random.PRNGKey(seed), config, num_envs, iterations, mesh)
    train_step = rl_step.make_train_step(env, config, num_envs, iterations, frame_size=frame_size, mesh=mesh)
    history = []
    for _ in range(iterations):
        state, batch, labels, metrics = train_step(state, batch, labels, reward)
        history.append(jax.device_get(metrics))
    return state, batch, history


def test_one_device_and_four_devices_take_the_same_steps():
    assert jax.device_count() == 4, "tests run with 4 virtual CPU devices (tests/conftest.py)"
    one, _, one_metrics = run(probes.Reach(), SMALL, 8, 3, rl_step.make_mesh(devices=jax.devices()[:1]))
    four, _, four_metrics = run(probes.Reach(), SMALL, 8, 3, rl_step.make_mesh())
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(one_metrics[-1]["reward"], four_metrics[-1]["reward"], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(one.obs_stats.mean), np.asarray(four.obs_stats.mean), rtol=1e-5)


def test_every_mesh_shape_takes_the_same_agent_steps():
    """Without a reward model to split, a mesh's shape changes nothing: the agent's sums are device-ordered
    over the same device order, so 2 × 2 and 1 × 4 give 4 × 1's parameters bit for bit."""
    reference, _, _ = run(probes.Reach(), SMALL, 8, 2, rl_step.make_mesh())
    for shape in [(2, 2), (1, 4)]:
        state, _, _ = run(probes.Reach(), SMALL, 8, 2, rl_step.make_mesh(shape), reward=EnvReward())
        for a, b in zip(jax.tree.leaves(reference.params), jax.tree.leaves(state.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_ppo_learns_reach_through_the_train_step():
    config = dataclasses.replace(SMALL, num_steps=20, minibatches=4, epochs=4, hidden_sizes=(32, 32))
    _, _, history = run(probes.Reach(), config, 32, 60, rl_step.make_mesh())
    first, last = history[0]["reward"], np.mean([m["reward"] for m in history[-5:]])
    assert first < -0.5, f"random actions should score about -0.7, got {first:.3f}"
    assert last > -0.25, f"after 60 iterations the policy should reach its targets: {first:.3f} -> {last:.3f}"


@struct.dataclass
class MeanPixel(Reward):
    """A reward model that is a known function of the frame: its mean pixel value in [0, 1]."""

    needs_frames = True

    def __call__(self, frames, state):
        value = frames.astype(jnp.float32).mean(axis=(1, 2, 3)) / 255.0
        return value, {"mean_pixel": value}


def test_the_reward_is_computed_from_the_frame_rendered_inside_the_step():
    """One step of 4 humanoids (one per device): the reward equals the known function of the frame of the
    state each env reached, rendered again outside the step."""
    env = envs.make("splits")
    config = dataclasses.replace(SMALL, num_steps=1, minibatches=1, epochs=1)
    _, batch, history = run(env, config, 4, 1, rl_step.make_mesh(), reward=MeanPixel(), frame_size=12)
    frames = jax.jit(env.renderer(12, 12))(batch.state.pipeline_state).rgb  # no env ended: these are the reached states
    assert int(batch.steps.min()) == 1
    expected = np.asarray(frames, np.float64).mean() / 255.0
    assert history[0]["reward"] == pytest.approx(expected, rel=1e-5)
    assert history[0]["mean_pixel"] == pytest.approx(expected, rel=1e-5)
    assert "oracle/success" in history[0]


class Counter(probes.Probe):
    """Observation = a count that starts at a random integer in [0, 100) and grows by 1 a step; its frame is a
    small image filled with the count (pipeline_state holds it); ``metrics["dense"]`` is the count too."""

    episode_length = 1000

    def reset(self, rng):
        return self._at(jax.random.randint(rng, (1,), 0, 100).astype(jnp.float32))

    def step(self, state, action):
        return self._at(state.obs + 1.0)

    def _at(self, count):
        return probes._state(count).replace(pipeline_state=count, metrics={"dense": count[0]})

    def renderer(self, height=224, width=224):
        return lambda count: types.SimpleNamespace(
            rgb=jnp.broadcast_to(count[:, None, None, :].astype(jnp.uint8), (count.shape[0], height, width, 3)))


@struct.dataclass
class Brighter(Reward):
    """A pairwise model with an adaptive reference: reward = mean pixel of the frame minus the reference's."""

    reference: jax.Array
    needs_frames = True

    def __call__(self, frames, state):
        value = frames.astype(jnp.float32).mean(axis=(1, 2, 3)) - self.reference.astype(jnp.float32).mean()
        return value, {"brighter": value}

    def initial_reference(self):
        return self.reference

    def with_reference(self, image):
        return self.replace(reference=image)

    def beats_reference(self, reward):
        return reward > 0


def test_reward_every_k_steps_holds_the_score_between_and_reads_the_oracle_every_step():
    calls = []
    config = dataclasses.replace(SMALL, num_steps=8, minibatches=1, epochs=1, scale_reward=False)
    env, mesh = Counter(), rl_step.make_mesh()

    @struct.dataclass
    class Count(Reward):
        needs_frames = True

        def __call__(self, frames, state):
            jax.debug.callback(lambda: calls.append(1))
            return frames[:, 0, 0, 0].astype(jnp.float32), {}

    state, batch, labels = rl_step.init(env, jax.random.key(0), config, 8, 2, mesh)
    start = np.asarray(batch.state.obs[:, 0])
    train_step = rl_step.make_train_step(env, config, 8, 2, frame_size=4, mesh=mesh, reward_every=3)
    for iteration in range(2):
        state, batch, labels, metrics = train_step(state, batch, labels, Count())
        counts = start[None] + 8 * iteration + np.arange(1, 9)[:, None]  # [T, B] after each step
        held = counts[[0, 0, 0, 3, 3, 3, 6, 6]]  # scored on the rollout's steps 0, 3 and 6
        assert float(metrics["reward"]) == pytest.approx(held.mean(), rel=1e-6)
        assert float(metrics["oracle/dense"]) == pytest.approx(counts.mean(), rel=1e-6)
    assert len(calls) == 2 * 3 * 4, "the model runs on 3 of 8 steps, on each of 4 devices, in 2 iterations"
    with pytest.raises(ValueError, match="reward_every must be a positive integer"):
        rl_step.make_train_step(env, config, 8, 2, mesh=mesh, reward_every=0)


def test_a_held_reward_never_outlives_its_episode():
    """Episodes of 5 steps, scored every 3rd step: a new episode is scored on its first step, so every held
    reward is the count of an earlier step of the same episode (count − reward = steps since scored < 3)."""

    class ShortCounter(Counter):
        episode_length = 5

    @struct.dataclass
    class Count(Reward):
        needs_frames = True

        def __call__(self, frames, state):
            return frames[:, 0, 0, 0].astype(jnp.float32), {}

    env = ShortCounter()
    start, score = rl_step.scorer(env, Count(), frame_size=4, reward_every=3)
    carry = init_carry(env, jax.random.key(0), 6)

    def still(obs, keys):
        action = jnp.zeros((obs.shape[0], 1))
        return action, jnp.zeros(obs.shape[0]), action

    collect = jax.jit(lambda carry: rollout(env, still, lambda obs: obs[:, 0], score, carry, 8, env.episode_length))
    lags = []
    for _ in range(2):  # each rollout starts its scorer afresh, as the training step does
        carry, transitions = collect(carry.replace(reward_memory=start(carry.env_state)))
        lags.append(np.asarray(transitions.metrics["oracle/dense"] - transitions.reward))
    # Rollout steps 0-7 then 8-15; episodes begin at steps 0, 5, 10, 15; scored on 0, 3, 5, 6 | 8, 10, 11, 14, 15.
    expected = np.array([0, 1, 2, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 2, 0, 0], np.float32)
    np.testing.assert_array_equal(np.concatenate(lags), np.broadcast_to(expected[:, None], (16, 6)))


def test_the_best_frame_so_far_replaces_an_adaptive_reference_across_devices():
    env, mesh = Counter(), rl_step.make_mesh()
    config = dataclasses.replace(SMALL, num_steps=4, minibatches=1, epochs=1)
    reward = Brighter(reference=jnp.full((3, 5, 3), 250, jnp.uint8))  # brighter than every frame at first
    state, batch, labels = rl_step.init(env, jax.random.key(1), config, 8, 3, mesh, reward=reward)
    train_step = rl_step.make_train_step(env, config, 8, 3, frame_size=6, mesh=mesh)
    frozen = reward.split()[0]
    state, batch, labels, metrics = train_step(state, batch, labels, frozen)
    assert metrics["reward_model/reference_replaced"] == 0 and (np.asarray(state.reward_reference) == 250).all()
    state, batch, labels, metrics = train_step(state, batch, labels, frozen)
    assert metrics["reward_model/reference_replaced"] == 0
    state = state.replace(reward_reference=jnp.zeros((3, 5, 3), jnp.uint8))  # now darker than every frame
    best = np.asarray(batch.state.obs).max() + config.num_steps  # the brightest frame of the next rollout
    state, batch, labels, metrics = train_step(state, batch, labels, frozen)
    assert metrics["reward_model/reference_replaced"] == 1 and float(metrics["reward_model/best_reward"]) == best
    assert state.reward_reference.shape == (3, 5, 3) and (np.asarray(state.reward_reference) == best).all()
    counts = np.asarray(batch.state.obs[:, 0])[None] + np.arange(1, 5)[:, None]  # the next rollout's frames
    state, batch, labels, metrics = train_step(state, batch, labels, frozen)
    assert float(metrics["brighter"]) == pytest.approx(counts.mean() - best, rel=1e-6)  # scored against it


def test_env_count_must_split_over_devices():
    with pytest.raises(ValueError, match="num_envs=6 must be a positive multiple of the 4 devices"):
        rl_step.make_train_step(probes.Reach(), SMALL, 6, 1)


def test_reward_agreement_pinned_to_hand_computed_values():
    x = jnp.asarray([[0.1, 0.4], [0.35, 0.8], [9.0, 0.8]])  # [T, B]; the 9.0 step is invalid
    dense = jnp.asarray([[0.0, 1.0], [1.0, 2.0], [-5.0, 2.0]])
    success = jnp.asarray([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    valid = jnp.asarray([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    out = rl_step.reward_agreement(x, dense, success, valid)
    kept_x, kept_dense = np.asarray([0.1, 0.4, 0.35, 0.8, 0.8]), np.asarray([0.0, 1.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(out["reward_model/pearson_dense"], np.corrcoef(kept_x, kept_dense)[0, 1], rtol=1e-5)
    # positives 0.35, 0.8, 0.8 against negatives 0.1, 0.4: 0.35 beats one of two, the 0.8s both: 5 of 6
    np.testing.assert_allclose(out["reward_model/auc_success"], 5 / 6, rtol=1e-6)
    ties = rl_step.reward_agreement(jnp.ones(4), jnp.arange(4.0), jnp.asarray([0.0, 1.0, 0.0, 1.0]), jnp.ones(4))
    assert ties["reward_model/auc_success"] == 0.5 and np.isnan(ties["reward_model/pearson_dense"])


def test_reward_agreement_over_devices_equals_one_device():
    keys = jax.random.split(jax.random.key(3), 3)
    x, dense = jax.random.normal(keys[0], (5, 8)), jax.random.normal(keys[1], (5, 8))
    success = (dense + 0.5 * x > 0).astype(jnp.float32)
    valid = jax.random.bernoulli(keys[2], 0.8, (5, 8)).astype(jnp.float32)
    one = rl_step.reward_agreement(x, dense, success, valid)
    mesh = rl_step.make_mesh()
    four = jax.jit(jax.shard_map(lambda *a: rl_step.reward_agreement(*a, axis_name=rl_step.AXIS), mesh=mesh,
                                 in_specs=P(None, rl_step.AXIS), out_specs=P(),
                                 check_vma=False))(x, dense, success, valid)
    for k in one:
        np.testing.assert_allclose(four[k], one[k], rtol=1e-5)


def test_a_reward_scored_in_chunks_equals_one_call():
    env = envs.make("cartpole")
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 6))
    states = states.replace(reward=jnp.arange(6.0))  # a reward read from the state: its leaves are cut too
    frames = jax.random.randint(jax.random.key(1), (6, 12, 12, 3), 0, 256).astype(jnp.uint8)
    for reward in (MeanPixel(), EnvReward()):
        whole = rl_step.score_in_chunks(reward, frames, states)
        for chunk in (1, 2, 3, 6):  # a mean over fewer frames at a time may round differently in the last bit
            np.testing.assert_allclose(rl_step.score_in_chunks(reward, frames, states, chunk)[0], whole[0],
                                       rtol=1e-6)
    np.testing.assert_array_equal(rl_step.score_in_chunks(EnvReward(), None, states, 2)[0], np.arange(6.0))
    with pytest.raises(ValueError, match="reward_chunk=4 must divide the 6 frames"):
        rl_step.score_in_chunks(MeanPixel(), frames, states, 4)
    with pytest.raises(ValueError, match="reward_chunk must be a non-negative integer"):
        rl_step.check_reward_chunk(-1, 8)
