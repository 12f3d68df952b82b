"""A trained agent out of its run directory, for rolling its policy out elsewhere (labelled datasets, videos)."""

from __future__ import annotations

import json
import pathlib

import jax

import rewardax.envs as envs
from rewardax.rl import step as rl_step
from rewardax.rl.ppo import PPOConfig
from rewardax.stats import RunningMeanStd
from rewardax.train.checkpoints import Checkpoints, unflatten_like
from rewardax.train.run_dir import upgraded


def load_agent(run_dir):
    """``(env, act)`` of a run directory's latest checkpoint, for rolling its policy out elsewhere (labelled
    datasets): ``act(obs [B, O], key, noise) -> action [B, A]`` is the policy's mean action plus Gaussian noise
    of std ``noise``, clipped to [-1, 1]. Reads config.json (task, look, PPO) and only the checkpoint's agent
    parameters and observation statistics."""
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "config.json").is_file() or Checkpoints(run_dir / "checkpoints").latest() is None:
        raise ValueError(f"{run_dir}: not a run directory with a checkpoint (config.json and checkpoints/); "
                         f"train one first, e.g. python experiments/train.py --run-dir {run_dir}")
    saved = upgraded(json.loads((run_dir / "config.json").read_text())["config"])
    ppo = PPOConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["ppo"].items()})
    env = envs.make(saved["task"], look=saved["look"])
    agent, params = rl_step.agent_for(env, ppo, jax.random.key(0))
    leaves = Checkpoints(run_dir / "checkpoints").read()
    template = {"params": params, "obs_stats": RunningMeanStd.create((env.observation_size,))}
    restored = unflatten_like(template, {name[len("state/"):]: v for name, v in leaves.items()
                                         if name.startswith("state/")})

    def act(obs, key, noise: float = 0.0):
        mean, _ = agent.distribution(restored["params"], restored["obs_stats"].normalize(obs))
        return jax.numpy.clip(mean + noise * jax.random.normal(key, mean.shape), -1.0, 1.0)

    return env, act
