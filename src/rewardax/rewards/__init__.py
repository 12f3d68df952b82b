"""Reward models: rendered frames (or the physics state) to one scalar per env, behind one interface."""

from rewardax.rewards.base import EnvReward, RewardModel
from rewardax.rewards.clip import ClipReward, clip_reward, goal_baseline_reward
from rewardax.rewards.oracle import DenseReward, OracleReward

__all__ = ["ClipReward", "DenseReward", "EnvReward", "OracleReward", "RewardModel", "clip_reward",
           "goal_baseline_reward"]
