"""Evaluation: a batch of deterministic episodes (the policy's mean action), scored by the oracle.

    evaluate = make_evaluator(env, ppo_config, frame_size, episodes=16)
    metrics, film = evaluate(state.params, state.obs_stats, reward, key)

``metrics``: ``eval/success`` (oracle success on the last frame, the paper's criterion, averaged over episodes),
``eval/dense`` (dense ground truth on the last frame), ``eval/reward`` (mean reward-model reward over every
step). ``film``: the first episode's frames, rewards and oracle success, for the video. One compiled program;
in a multi-process run every process runs it on the same replicated inputs and gets the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rewardax.envs.base import TaskEnv, check_env
from rewardax.rl.ppo import PPOConfig
from rewardax.rl import step as rl_step


def can_evaluate(env: TaskEnv) -> bool:
    """Evaluation needs the env's oracle (what it measures) and its renderer (what it films)."""
    return env.task is not None and env.renderer(1, 1) is not None


def make_evaluator(env: TaskEnv, config: PPOConfig, frame_size: int, episodes: int, reward_every: int = 1,
                   reward_chunk: int = 0):
    """The reward model scores as in training (`rewardax.rl.step.scorer`: every ``reward_every``-th step,
    ``reward_chunk`` frames per call)."""
    if not can_evaluate(check_env(env)):
        raise ValueError(f"{type(env).__name__} has no task oracle or no renderer: it cannot be evaluated")
    agent, _ = rl_step.agent_for(env, config, jax.random.key(0))
    render = env.renderer(frame_size, frame_size)

    rl_step.check_reward_every(reward_every)
    rl_step.check_reward_chunk(reward_chunk, episodes)

    @jax.jit
    def run(params, obs_stats, reward, key):
        start, score = rl_step.scorer(env, reward, frame_size, reward_every, reward_chunk)

        def one_step(carry, _):
            states, memory = carry
            mean, _ = agent.distribution(params, obs_stats.normalize(states.obs))
            states = jax.vmap(env.step)(states, jnp.clip(mean, -1.0, 1.0))
            value, _, memory = score(states, jnp.zeros(episodes, bool), memory)  # all began together
            first_frame = render(jax.tree.map(lambda x: x[:1], states.pipeline_state)).rgb[0]  # the film
            return (states, memory), (first_frame, value, states.metrics["success"], states.metrics["dense"])

        states = jax.vmap(env.reset)(jax.random.split(key, episodes))
        _, (frames, rewards, success, dense) = jax.lax.scan(one_step, (states, start(states)),
                                                           length=env.episode_length)
        metrics = {"eval/success": success[-1].mean(), "eval/dense": dense[-1].mean(), "eval/reward": rewards.mean()}
        return metrics, (frames, rewards[:, 0], success[:, 0])

    def evaluate(params, obs_stats, reward, key):
        metrics, film = jax.device_get(run(params, obs_stats, reward, key))
        return {k: float(v) for k, v in metrics.items()}, tuple(np.asarray(x) for x in film)

    return evaluate
