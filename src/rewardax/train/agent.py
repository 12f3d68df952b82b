"""A trained agent, or the reward model a run trained, out of its run directory, for use elsewhere (labelled
datasets, videos, scoring frames)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np

import rewardax.envs as envs
from rewardax.rewards.config import REWARD_CONFIGS
from rewardax.rl import step as rl_step
from rewardax.rl.ppo import PPOConfig
from rewardax.rl.reward_update import RewardLearning
from rewardax.stats import RunningMeanStd
from rewardax.train.checkpoints import Checkpoints, named_leaves, unflatten_like
from rewardax.train.run_dir import upgraded


def load_agent(run_dir, which: str = "latest"):
    """``(env, act)`` of a run directory's latest checkpoint (``which="best"``: the state of its best evaluation,
    `rewardax.train.checkpoints.BestPolicy`), for rolling its policy out elsewhere (labelled datasets):
    ``act(obs [B, O], key, noise) -> action [B, A]`` is the policy's mean action plus Gaussian noise of std
    ``noise``, clipped to [-1, 1]. Reads config.json (task, look, PPO) and only the checkpoint's agent parameters
    and observation statistics."""
    saved, state = _saved_run(run_dir, which)
    env = envs.make(saved["task"], look=saved["look"])
    agent, params = rl_step.agent_for(env, _from_json(PPOConfig, saved["ppo"]), jax.random.key(0))
    restored = unflatten_like({"params": params, "obs_stats": RunningMeanStd.create((env.observation_size,))}, state)

    def act(obs, key, noise: float = 0.0):
        mean, _ = agent.distribution(restored["params"], restored["obs_stats"].normalize(obs))
        return jax.numpy.clip(mean + noise * jax.random.normal(key, mean.shape), -1.0, 1.0)

    return env, act


def load_reward_model(run_dir):
    """``(env, reward)``: the reward model a run trained (``train_reward``) with the weights of its latest
    checkpoint, and the env of its task, for scoring frames outside training (``python -m rewardax.eval --reward
    run:<run_dir>``). The model is built from config.json and made trainable as the trainer does, so that the
    checkpoint's trainable weights (all of them, or the LoRA adapters) fit it; an adaptive pairwise reference
    is the run's latest too."""
    saved, state = _saved_run(run_dir)
    used = _from_json(REWARD_CONFIGS[saved["reward"]["kind"]],
                      {k: v for k, v in saved["reward"].items() if k != "kind"})
    if not saved["train_reward"]:
        fix = (f"score the model it used directly, --reward {used.cli_name()}:{used.checkpoint}"
               if hasattr(used, "checkpoint") else f"its reward, {used.cli_name()}, is the task's ground truth")
        raise ValueError(f"{run_dir}: this run did not train its reward model (train_reward is off), so its "
                         f"checkpoint holds no reward weights: {fix}")
    env = envs.make(saved["task"], look=saved["look"])
    reward = _from_json(RewardLearning, saved["reward_learning"]).make_trainable(used.build(env))
    frozen, params = reward.split()
    template = {"reward_params": params}
    # `unflatten_like` keeps a template leaf it has no value for: an untrained weight must not pass for a trained one.
    wanted = {name: np.shape(leaf) for name, leaf in named_leaves(template).items()}
    found = {name: np.shape(state[name]) for name in wanted if name in state}
    stored = {name for name in state if name.startswith("reward_params/")}
    if found != wanted or stored != set(wanted):
        raise ValueError(f"{run_dir}: the checkpoint's reward weights do not fit the model config.json describes "
                         f"({len(stored)} stored, {len(wanted)} expected, {len(found)} found with their shapes): the "
                         f"run was given its reward model in Python (train(reward=...)) or written by another "
                         f"rewardax (git_revision in config.json); load it with that code")
    reward = frozen.merge(unflatten_like(template, state)["reward_params"])
    return env, reward.with_reference(state["reward_reference"]) if "reward_reference" in state else reward


CHECKPOINTS = {"latest": "checkpoints", "best": "best"}
"""Which of a run's checkpoints to read: the newest, or the best evaluation's."""


def _saved_run(run_dir, which: str = "latest") -> tuple[dict, dict]:
    """``(config, state)``: config.json's config under today's field names, and the ``state/`` leaves of the
    ``which`` checkpoint by name, without the prefix (the names `unflatten_like` takes for the train state's fields)."""
    run_dir = pathlib.Path(run_dir)
    if which not in CHECKPOINTS:
        raise ValueError(f"which must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
    store = Checkpoints(run_dir / CHECKPOINTS[which])
    try:
        if which == "best" and (run_dir / "config.json").is_file() and store.latest() is None:
            raise ValueError(f"{run_dir}: no evaluation has been kept as the best yet (best/ is empty); evaluate "
                             f"the run first (--eval-every, or let it reach its end), or load which='latest'")
        if not (run_dir / "config.json").is_file() or store.latest() is None:
            raise ValueError(f"{run_dir}: not a run directory with a checkpoint (config.json and checkpoints/); "
                             f"train one first, e.g. python experiments/train.py --run-dir {run_dir}")
        leaves = store.read()
    finally:
        store.close()
    saved = upgraded(json.loads((run_dir / "config.json").read_text())["config"])
    return saved, {name[len("state/"):]: v for name, v in leaves.items() if name.startswith("state/")}


def _from_json(cls, fields: dict):
    """The frozen config ``cls`` from its fields in config.json: JSON's lists back to tuples, nested configs
    (a `RewardLearning`'s teacher) rebuilt."""
    nested = {f.name: type(f.default) for f in dataclasses.fields(cls) if dataclasses.is_dataclass(f.default)}
    return cls(**{k: _from_json(nested[k], v) if k in nested else tuple(v) if isinstance(v, list) else v
                  for k, v in fields.items()})
