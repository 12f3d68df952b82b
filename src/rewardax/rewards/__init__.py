"""Reward models: rendered frames (or the physics state) to one scalar per env, behind one interface."""

from rewardax.rewards.base import EnvReward, Reward, check_reward
from rewardax.rewards.clip import ClipReward, clip_reward, goal_baseline_reward
from rewardax.rewards.oracle import DenseReward, OracleReward
from rewardax.rewards.yes_token import YesTokenReward

__all__ = ["ClipReward", "DenseReward", "EnvReward", "OracleReward", "Reward", "check_reward", "clip_reward",
           "goal_baseline_reward", "YesTokenReward"]
