"""Flax NNX vision-language models and their checkpoint loaders: CLIP (`load_clip`) and InternVL (`load_vlm`)."""

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
from rewardax.models.internvl import InternVL, InternVLSpec
from rewardax.models.internvl_checkpoints import INTERNVL3_SHAPES, internvl3_config_dict, load_vlm, write_random_vlm
from rewardax.models.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, preprocess_frames, resize_images
from rewardax.models.vlm_processor import VLMProcessor

__all__ = [
    "CLIP", "CLIPSpec", "TowerSpec", "l2_normalize", "OPEN_CLIP_ARCHS", "CheckpointError", "CheckpointNotFoundError",
    "load_clip", "load_tokenizer", "tokenize", "write_random_clip", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD",
    "preprocess_frames", "resize_images", "InternVL", "InternVLSpec", "VLMProcessor", "load_vlm", "write_random_vlm",
    "INTERNVL3_SHAPES", "internvl3_config_dict",
]
