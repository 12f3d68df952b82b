"""Reinforcement learning: networks, running normalisation, rollout, GAE and PPO, as pure JAX functions.

The pieces of one iteration (`rewardax.rl.step` assembles them into the data-parallel training step, and
`rewardax.train` runs that step with checkpoints and logs):

    agent, params = init_actor_critic(key, obs_size, action_size, config.hidden_sizes, config.activation)
    optimizer = make_optimizer(config, total_updates)
    carry = init_carry(env, key, num_envs)          # per-env keys, reset envs, observation statistics
    ...
    carry, transitions = rollout(env, partial(agent.act, params), partial(agent.value, params), reward_fn,
                                 carry, config.num_steps, env.episode_length)
    batch = make_batch(transitions, transitions.reward, config)
    params, opt_state, metrics = update(agent, optimizer, params, opt_state, batch, key, config)
"""

from rewardax.rl.gae import gae
from rewardax.rl.networks import ActorCritic, Policy, Value, gaussian_entropy, gaussian_log_prob, init_actor_critic
from rewardax.rl.normalize import RewardScaler, RunningMeanStd, scale_rewards
from rewardax.rl.ppo import Batch, PPOConfig, make_batch, make_optimizer, ppo_loss, update
from rewardax.rl.rollout import RolloutCarry, Transition, init_carry, rollout

__all__ = ["ActorCritic", "Batch", "PPOConfig", "Policy", "RewardScaler", "RolloutCarry", "RunningMeanStd",
           "Transition", "Value", "gae", "gaussian_entropy", "gaussian_log_prob", "init_actor_critic",
           "init_carry", "make_batch", "make_optimizer", "ppo_loss", "rollout", "scale_rewards",
           "update"]
