"""Evaluation on the host: reward-model metrics against ground truth (`rewardax.eval.metrics`), and videos and
stills of evaluation episodes with their rewards."""

from rewardax.eval.metrics import (canonicalise, epic_distance, epic_distance_transitions, pearson, roc_auc,
                                   success_rate_at_threshold)
from rewardax.eval.video import compose_frames, episode_video, frame_strip

__all__ = ["canonicalise", "compose_frames", "epic_distance", "epic_distance_transitions", "episode_video",
           "frame_strip", "pearson", "roc_auc", "success_rate_at_threshold"]
