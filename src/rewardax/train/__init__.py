"""Training runs: the configuration and presets, the host loop around the shared step, checkpoints, the watchdog.

The composition root that the experiments call (`rewardax.rl` holds the pure JAX pieces it assembles):

    from rewardax.train import presets, train
    summary = train(presets()["smoke"])
"""

from rewardax.train.checkpoints import CheckpointCorrupt, CheckpointMismatch
from rewardax.train.config import HUMANOID_PPO, TrainConfig, default_preset, presets
from rewardax.train.trainer import ProcessLost, TrainingDiverged, TrainingStalled, load_agent, train

__all__ = ["CheckpointCorrupt", "CheckpointMismatch", "HUMANOID_PPO", "ProcessLost", "TrainConfig", "TrainingDiverged",
           "TrainingStalled", "default_preset", "load_agent", "presets", "train"]
