"""Reward models: rendered frames (or the physics state) to one scalar per env, behind one interface
(`rewardax.rewards.base`), each built by name from its config (`rewardax.rewards.config`)."""

from rewardax.rewards.base import EnvReward, Reward, check_reward
from rewardax.rewards.clip import ClipReward, clip_reward, goal_baseline_reward
from rewardax.rewards.config import (REWARD_CONFIGS, ClipRewardConfig, DenseRewardConfig, OracleRewardConfig,
                                     RewardConfig, YesTokenRewardConfig, reward_from_spec)
from rewardax.rewards.oracle import DenseReward, OracleReward
from rewardax.rewards.yes_token import YesTokenReward

__all__ = ["REWARD_CONFIGS", "ClipReward", "ClipRewardConfig", "DenseReward", "DenseRewardConfig", "EnvReward",
           "OracleReward", "OracleRewardConfig", "Reward", "RewardConfig", "YesTokenReward", "YesTokenRewardConfig",
           "check_reward", "clip_reward", "goal_baseline_reward", "reward_from_spec"]
