"""Training runs: the configuration and presets, the host loop around the shared step, checkpoints, the watchdog.

The composition root that the experiments call (`rewardax.rl` holds the pure JAX pieces it assembles):

    from rewardax.train import presets, train
    summary = train(presets("kneeling")["smoke"])
    env, act = load_agent(summary["run_dir"])     # the trained policy, to roll out elsewhere
    env, reward = load_reward_model(run_dir)      # a reward model the run trained (--train-reward)
"""

from rewardax.train.agent import load_agent, load_reward_model
from rewardax.train.checkpoints import CheckpointCorrupt, CheckpointMismatch
from rewardax.train.config import CLASSIC_PPO, HUMANOID_PPO, TrainConfig, default_preset, ppo_for, presets
from rewardax.train.trainer import ProcessLost, TrainingDiverged, TrainingStalled, train

__all__ = ["CLASSIC_PPO", "CheckpointCorrupt", "CheckpointMismatch", "HUMANOID_PPO", "ProcessLost", "TrainConfig",
           "TrainingDiverged", "TrainingStalled", "default_preset", "load_agent",
           "load_reward_model", "ppo_for", "presets", "train"]
