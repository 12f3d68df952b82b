"""Evaluation on the host: videos and stills of evaluation episodes with their rewards."""

from rewardax.eval.video import compose_frames, episode_video, frame_strip

__all__ = ["compose_frames", "episode_video", "frame_strip"]
