"""Flax NNX vision-language models and their checkpoint loaders."""

from rewardax.models.clip import CLIP, CLIPSpec, TowerSpec, l2_normalize
from rewardax.models.clip_checkpoints import (
    OPEN_CLIP_ARCHS,
    CheckpointError,
    CheckpointNotFoundError,
    load_clip,
    load_tokenizer,
    tokenize,
    write_random_clip,
)
from rewardax.models.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, preprocess_frames

__all__ = [
    "CLIP", "CLIPSpec", "TowerSpec", "l2_normalize", "OPEN_CLIP_ARCHS", "CheckpointError", "CheckpointNotFoundError",
    "load_clip", "load_tokenizer", "tokenize", "write_random_clip", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD",
    "preprocess_frames",
]
