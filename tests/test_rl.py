"""RL building blocks: GAE, running statistics, networks, rollout bookkeeping, PPO on probe envs, data parallelism."""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rewardax import rl
from rewardax.envs import probes

GAMMA = 0.9
PROBE_CONFIG = rl.PPOConfig(learning_rate=3e-3, gamma=GAMMA, epochs=4, minibatches=2, num_steps=8,
                            hidden_sizes=(16, 16))
"""Small and fast: 16 envs × 8 steps per rollout, 100 rollouts per probe."""


def _mesh():
    return jax.make_mesh((4,), ("d",))


# --- GAE ---------------------------------------------------------------------------------------------------

# Three steps of one env: an ordinary step, a truncation (time limit: the episode ends but the state it
# reached still has value 4), then a termination. gamma = lambda = 0.5.
HAND = dict(rewards=[1.0, 2.0, 3.0], values=[0.5, 1.0, 1.5], next_values=[1.0, 4.0, 2.0],
            terminated=[False, False, True], episode_end=[False, True, True])


def _hand_inputs(**overrides):
    return {k: jnp.asarray(v)[:, None] for k, v in {**HAND, **overrides}.items()}


def test_gae_by_hand_bootstraps_truncation_and_not_termination():
    # delta_2 = 3 - 1.5 = 1.5 (terminated: no bootstrap)           A_2 = 1.5
    # delta_1 = 2 + 0.5 * 4 - 1 = 3 (truncated: bootstraps)         A_1 = 3 (episode ended: no A_2)
    # delta_0 = 1 + 0.5 * 1 - 0.5 = 1                               A_0 = 1 + 0.25 * 3 = 1.75
    advantages, returns = rl.gae(**_hand_inputs(), gamma=0.5, lam=0.5)
    np.testing.assert_allclose(advantages[:, 0], [1.75, 3.0, 1.5])
    np.testing.assert_allclose(returns[:, 0], [2.25, 4.0, 3.0])


def test_truncation_as_terminal_reproduces_the_original_vlm_rm_targets():
    # delta_1 = 2 - 1 = 1 (the time limit now counts as terminal)   A_1 = 1,  A_0 = 1 + 0.25 * 1 = 1.25
    inputs = _hand_inputs()
    transitions = rl.Transition(obs=jnp.zeros((3, 1, 1)), action=jnp.zeros((3, 1, 1)), log_prob=jnp.zeros((3, 1)),
                                valid=jnp.ones((3, 1)),
                                value=inputs["values"], reward=inputs["rewards"], next_value=inputs["next_values"],
                                terminated=inputs["terminated"], episode_end=inputs["episode_end"], metrics={})
    config = rl.PPOConfig(gamma=0.5, gae_lambda=0.5)
    correct = rl.make_batch(transitions, transitions.reward, config)
    original = rl.make_batch(transitions, transitions.reward, dataclasses.replace(config, truncation_as_terminal=True))
    np.testing.assert_allclose(correct.advantage[:, 0], [1.75, 3.0, 1.5])
    np.testing.assert_allclose(original.advantage[:, 0], [1.25, 1.0, 1.5])
    np.testing.assert_allclose(original.target[:, 0], [1.75, 2.0, 3.0])


def _gae_loop(rewards, values, next_values, terminated, episode_end, gamma, lam):
    advantages = np.zeros_like(rewards)
    for b in range(rewards.shape[1]):
        next_advantage = 0.0
        for t in reversed(range(rewards.shape[0])):
            delta = rewards[t, b] + gamma * (1 - terminated[t, b]) * next_values[t, b] - values[t, b]
            next_advantage = delta + gamma * lam * (1 - episode_end[t, b]) * next_advantage
            advantages[t, b] = next_advantage
    return advantages, advantages + values


def test_gae_matches_a_python_loop_on_random_inputs():
    rng = np.random.default_rng(0)
    shape = (11, 5)
    rewards, values, next_values = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
    truncated = rng.random(shape) < 0.2
    terminated = rng.random(shape) < 0.2
    episode_end = terminated | truncated
    expected = _gae_loop(rewards, values, next_values, terminated, episode_end, 0.97, 0.9)
    actual = rl.gae(rewards, values, next_values, terminated, episode_end, 0.97, 0.9)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


# --- running statistics ------------------------------------------------------------------------------------

def test_running_mean_std_equals_numpy_on_the_concatenated_data():
    rng = np.random.default_rng(1)
    batches = [rng.normal(3.0, 2.0, size=(n, 4, 3)).astype(np.float32) for n in (5, 1, 17)]
    stats = rl.RunningMeanStd.create((3,))
    for batch in batches:
        stats = stats.update(batch)
    data = np.concatenate(batches).reshape(-1, 3)
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-5)
    assert stats.count == data.shape[0]
    np.testing.assert_allclose(stats.normalize(data), np.clip((data - data.mean(0)) / data.std(0), -10, 10),
                               rtol=1e-4, atol=1e-5)


def test_running_mean_std_across_devices_equals_one_device_on_the_full_batch():
    mesh = _mesh()
    rng = np.random.default_rng(2)
    batches = [rng.normal(-1.0, 0.5, size=(8, 3)).astype(np.float32) for _ in range(3)]

    def accumulate(batches, axis_name=None):
        stats = rl.RunningMeanStd.create((3,))
        for batch in batches:
            stats = stats.update(batch, axis_name)
        return stats

    sharded = [jax.device_put(b, NamedSharding(mesh, P("d"))) for b in batches]
    per_device = jax.jit(jax.shard_map(partial(accumulate, axis_name="d"), mesh=mesh, in_specs=P("d"),
                                       out_specs=P()))(sharded)
    single = accumulate(batches)
    for a, b in zip(jax.tree.leaves(per_device), jax.tree.leaves(single)):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_reward_scaler_by_hand():
    # gamma = 0.5; rewards 1, 2, 4 with the episode ending after the second step:
    # discounted returns 1, 0.5 * 1 + 2 = 2.5, then (restarted) 4: mean 2.5, variance (1.5² + 0 + 1.5²) / 3 = 1.5
    rewards = jnp.asarray([[1.0], [2.0], [4.0]])
    episode_end = jnp.asarray([[False], [True], [False]])
    scaler, scaled = rl.scale_rewards(rl.RewardScaler.create(1), rewards, episode_end, 0.5)
    np.testing.assert_allclose(scaler.stats.mean, 2.5, rtol=1e-6)
    np.testing.assert_allclose(scaler.stats.var, 1.5, rtol=1e-6)
    np.testing.assert_allclose(scaler.returns, [4.0])
    np.testing.assert_allclose(scaled[:, 0], np.asarray([1.0, 2.0, 4.0]) / np.sqrt(1.5), rtol=1e-6)


# --- networks ----------------------------------------------------------------------------------------------

def test_actions_and_log_probs():
    agent, params = rl.init_actor_critic(jax.random.key(0), 3, 2, (8,), "tanh", init_log_std=-0.5)
    obs = jax.random.normal(jax.random.key(1), (5, 3))
    action, log_prob, command = agent.act(params, obs, jax.random.split(jax.random.key(2), 5))
    mean, log_std = agent.distribution(params, obs)
    expected = jax.scipy.stats.norm.logpdf(action, mean, jnp.exp(log_std)).sum(-1)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5)
    np.testing.assert_array_equal(command, jnp.clip(action, -1, 1))
    np.testing.assert_allclose(rl.gaussian_entropy(log_std[0]), 2 * (-0.5 + 0.5 * np.log(2 * np.pi * np.e)),
                               rtol=1e-6)
    assert agent.value(params, obs).shape == (5,)


# --- rollout -----------------------------------------------------------------------------------------------

def _zero_policy(obs, keys):
    action = jnp.zeros((obs.shape[0], 1))
    return action, jnp.zeros(obs.shape[0]), action


def _probe_reward(state, new_episode, memory):
    return state.reward, {"raw": state.reward}, memory


def _collect(env, num_envs, num_steps, episode_length, value_fn=lambda obs: obs[:, 0]):
    carry = rl.init_carry(env, jax.random.key(0), num_envs)
    return jax.jit(rl.rollout, static_argnums=(0, 1, 2, 3, 5, 6))(
        env, _zero_policy, value_fn, _probe_reward, carry, num_steps, episode_length)


def test_rollout_truncates_at_the_time_limit_and_bootstraps_from_the_state_reached():
    # Observation = steps taken (mod 5); the rollout's time limit of 3 ends episodes at observation 3,
    # and the value (here the normalised observation itself) of that state is next_value, not the reset's.
    carry, transitions = _collect(probes.TimeLimit(5), num_envs=2, num_steps=7, episode_length=3)
    ends = np.asarray([False, False, True] * 2 + [False])
    np.testing.assert_array_equal(transitions.episode_end, np.repeat(ends[:, None], 2, 1))
    assert not transitions.terminated.any()
    np.testing.assert_array_equal(carry.steps, [1, 1])
    np.testing.assert_array_equal(transitions.metrics["raw"], transitions.reward)
    continuing = ~ends[:-1]
    np.testing.assert_allclose(transitions.next_value[:-1][continuing], transitions.value[1:][continuing])
    assert (transitions.next_value[:-1][~continuing] > transitions.value[1:][~continuing]).all()
    assert carry.obs_stats.count == 2 * 8


def test_rollout_resets_each_ended_env_with_a_fresh_key():
    _, transitions = _collect(probes.ObservedReward(), num_envs=4, num_steps=8, episode_length=1)
    assert transitions.terminated.all() and transitions.episode_end.all()
    signs = np.sign(transitions.obs[..., 0])
    assert ((signs > 0).any(0) & (signs < 0).any(0)).all(), "every env should see both observations"


def test_rollout_across_devices_shares_observation_statistics_but_not_keys():
    env, num_steps, envs_per_device = probes.ObservedReward(), 4, 4

    def collect(key):
        carry = rl.init_carry(env, key, envs_per_device, axis_name="d")
        return rl.rollout(env, _zero_policy, lambda obs: obs[:, 0], _probe_reward, carry, num_steps,
                          env.episode_length, axis_name="d")

    carry_specs = rl.RolloutCarry(env_state=P("d"), steps=P("d"), keys=P("d"), obs_stats=P())
    carry, transitions = jax.jit(jax.shard_map(collect, mesh=_mesh(), in_specs=P(),
                                               out_specs=(carry_specs, P(None, "d"))))(jax.random.key(0))
    observations = np.asarray(transitions.obs[..., 0]).reshape(num_steps, 4, envs_per_device)
    assert carry.obs_stats.count == 4 * envs_per_device * (num_steps + 1)
    assert len({observations[:, d].tobytes() for d in range(4)}) == 4, "each device should simulate its own envs"


class BreaksOnce(probes.Probe):
    """Observation = steps taken; an env whose reset drew a negative key bit turns NaN at its third step."""

    episode_length = 5

    def reset(self, rng):
        return probes._state(jnp.stack([jnp.zeros(()), jax.random.bernoulli(rng).astype(jnp.float32)]))

    @property
    def observation_size(self):
        return 2

    def step(self, state, action):
        count = state.obs[0] + 1
        broken = (count == 3) & (state.obs[1] == 1)
        return probes._state(jnp.stack([jnp.where(broken, jnp.nan, count), state.obs[1]]), reward=1.0)


def test_an_env_that_turns_non_finite_is_reset_and_left_out():
    carry, transitions = _collect(BreaksOnce(), num_envs=16, num_steps=5, episode_length=5,
                                  value_fn=lambda obs: jnp.nan_to_num(obs[:, 0]))
    breaks = np.asarray(transitions.valid == 0)
    assert breaks[2].sum() >= 3 and breaks.sum() == breaks[2].sum(), "only the third step breaks, in some envs"
    assert np.isfinite(np.asarray(carry.obs_stats.mean)).all() and np.isfinite(np.asarray(carry.env_state.obs)).all()
    assert transitions.episode_end[2][breaks[2]].all() and not transitions.terminated.any()
    np.testing.assert_array_equal(np.asarray(carry.steps)[breaks[2]], 2)  # reset at its third step, 2 since
    assert (np.asarray(transitions.reward)[breaks] == 0).all() and (np.asarray(transitions.next_value)[breaks] == 0).all()
    batch = rl.make_batch(transitions, transitions.reward, PROBE_CONFIG)
    assert np.isfinite(np.asarray(batch.advantage)).all()
    np.testing.assert_array_equal(np.asarray(batch.advantage)[breaks], 0)
    # the step before a break bootstraps from its own (finite) next state: a one-step advantage
    delta = 1.0 + PROBE_CONFIG.gamma * np.asarray(transitions.next_value[1]) - np.asarray(transitions.value[1])
    np.testing.assert_allclose(np.asarray(batch.advantage[1])[breaks[2]], delta[breaks[2]], rtol=1e-6)


def test_the_ppo_loss_ignores_invalid_steps():
    agent, params = rl.init_actor_critic(jax.random.key(0), 2, 1, (8,))
    batch = rl.Batch(obs=jax.random.normal(jax.random.key(1), (4, 2)), action=jnp.ones((4, 1)),
                     log_prob=-jnp.ones(4), value=jnp.zeros(4), advantage=jnp.asarray([1.0, -1.0, 0.5, 0.0]),
                     target=jnp.ones(4), valid=jnp.asarray([1.0, 1.0, 1.0, 0.0]))
    poisoned = batch.replace(obs=batch.obs.at[3].set(1e6), advantage=batch.advantage.at[3].set(1e6),
                             target=batch.target.at[3].set(-1e6))
    loss, metrics = rl.ppo_loss(params, agent, batch, PROBE_CONFIG)
    first3 = jax.tree.map(lambda x: x[:3], batch)
    loss3, metrics3 = rl.ppo_loss(params, agent, first3, PROBE_CONFIG)
    loss_p, _ = rl.ppo_loss(params, agent, poisoned, PROBE_CONFIG)
    np.testing.assert_allclose([loss, loss_p], [loss3, loss3], rtol=1e-5)
    np.testing.assert_allclose(metrics["value_loss"], metrics3["value_loss"], rtol=1e-5)


# --- PPO on probe envs -------------------------------------------------------------------------------------

def _train(env, config=PROBE_CONFIG, num_envs=16, iterations=100, seed=0):
    """rollout → GAE → update, ``iterations`` times; returns the agent, params, carry and the last rewards."""
    net_key, env_key, key = jax.random.split(jax.random.key(seed), 3)
    agent, params = rl.init_actor_critic(net_key, env.observation_size, env.action_size, config.hidden_sizes,
                                         config.activation, config.init_log_std)
    optimizer = rl.make_optimizer(config, iterations * config.epochs * config.minibatches)
    opt_state = optimizer.init(params)
    carry = rl.init_carry(env, env_key, num_envs)

    @jax.jit
    def iteration(params, opt_state, carry, key):
        carry, transitions = rl.rollout(env, partial(agent.act, params), partial(agent.value, params),
                                        _probe_reward, carry, config.num_steps, env.episode_length)
        batch = rl.make_batch(transitions, transitions.reward, config)
        params, opt_state, _ = rl.update(agent, optimizer, params, opt_state, batch, key, config)
        return params, opt_state, carry, transitions.reward

    for key in jax.random.split(key, iterations):
        params, opt_state, carry, rewards = iteration(params, opt_state, carry, key)
    return agent, params, carry, rewards


def _values(trained, observations):
    agent, params, carry, _ = trained
    obs = carry.obs_stats.normalize(jnp.asarray(observations, jnp.float32)[:, None])
    return np.asarray(agent.value(params, obs)), np.asarray(agent.distribution(params, obs)[0][:, 0])


def test_probe_constant_reward():
    values, _ = _values(_train(probes.ConstantReward()), [0.0])
    np.testing.assert_allclose(values, [1.0], atol=0.05)


def test_probe_observed_reward():
    values, _ = _values(_train(probes.ObservedReward()), [-1.0, 1.0])
    np.testing.assert_allclose(values, [-1.0, 1.0], atol=0.05)


def test_probe_action_sign():
    trained = _train(probes.ActionSign())
    values, means = _values(trained, [-1.0, 1.0])
    assert means[0] < -0.5 and means[1] > 0.5, means
    assert trained[3].mean() > 0.9
    np.testing.assert_allclose(values, [1.0, 1.0], atol=0.1)


def test_probe_two_step_discounting():
    values, _ = _values(_train(probes.TwoStep()), [0.0, 1.0])
    np.testing.assert_allclose(values, [GAMMA, 1.0], atol=0.05)


@pytest.fixture(scope="module")
def time_limit_values():
    """Learned V(t) on the truncation probe (limit 5), with correct bootstrapping and as the original code."""
    env, steps = probes.TimeLimit(5), [0.0, 2.0, 4.0]
    bootstrapped, _ = _values(_train(env), steps)
    as_terminal, _ = _values(_train(env, dataclasses.replace(PROBE_CONFIG, truncation_as_terminal=True)), steps)
    return bootstrapped, as_terminal


def test_probe_truncation_bootstraps_to_the_endless_return(time_limit_values):
    bootstrapped, _ = time_limit_values
    np.testing.assert_allclose(bootstrapped, 1 / (1 - GAMMA), atol=0.5)


def test_probe_truncation_as_terminal_learns_the_lower_time_dependent_values(time_limit_values):
    bootstrapped, as_terminal = time_limit_values
    expected = [(1 - GAMMA ** (5 - t)) / (1 - GAMMA) for t in (0, 2, 4)]  # 4.10, 2.71, 1
    np.testing.assert_allclose(as_terminal, expected, atol=0.3)
    assert as_terminal.max() + 4 < bootstrapped.min()


# --- data-parallel update ----------------------------------------------------------------------------------

def test_update_across_devices_equals_one_device_on_the_full_batch():
    """Shuffled minibatches (2 per epoch) included: the shuffle picks time steps, the same on every device.
    Some steps are invalid (non-finite states), unevenly spread over the devices."""
    config = rl.PPOConfig(epochs=2, minibatches=2, hidden_sizes=(8,), ent_coef=0.01, clip_value_loss=True)
    agent, params = rl.init_actor_critic(jax.random.key(0), 3, 2, config.hidden_sizes)
    optimizer = rl.make_optimizer(config, 10)
    opt_state = optimizer.init(params)
    keys = iter(jax.random.split(jax.random.key(1), 9))
    t, n = 4, 8
    batch = rl.Batch(obs=jax.random.normal(next(keys), (t, n, 3)), action=jax.random.normal(next(keys), (t, n, 2)),
                     log_prob=jax.random.normal(next(keys), (t, n)) - 2.0,
                     value=jax.random.normal(next(keys), (t, n)),
                     advantage=jax.random.normal(next(keys), (t, n)) + 0.5,
                     target=jax.random.normal(next(keys), (t, n)),
                     valid=jax.random.bernoulli(next(keys), 0.7, (t, n)).astype(jnp.float32))
    key = next(keys)

    def run(params, opt_state, batch, key, axis_name=None):
        return rl.update(agent, optimizer, params, opt_state, batch, key, config, axis_name)

    single = jax.jit(run)(params, opt_state, batch, key)
    mesh = _mesh()
    sharded_batch = jax.device_put(batch, NamedSharding(mesh, P(None, "d")))
    parallel = jax.jit(jax.shard_map(partial(run, axis_name="d"), mesh=mesh, in_specs=(P(), P(), P(None, "d"), P()),
                                     out_specs=P()))(params, opt_state, sharded_batch, key)
    for a, b in zip(jax.tree.leaves(parallel), jax.tree.leaves(single)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert all(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(single[0]), jax.tree.leaves(params)))


def test_update_names_a_batch_that_does_not_split_into_minibatches():
    with pytest.raises(ValueError, match=r"minibatches=3 must divide num_steps=8 .*learning_rate must be positive"):
        rl.PPOConfig(num_steps=8, minibatches=3, learning_rate=-1.0)
    config = rl.PPOConfig(minibatches=4)
    batch = rl.Batch(*(jnp.zeros((6, 1)),) * 7)
    with pytest.raises(ValueError, match="minibatches=4 must divide the 6 time steps"):
        rl.update(None, None, None, None, batch, jax.random.key(0), config)
