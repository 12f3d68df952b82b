"""Loading InternVL checkpoints (``OpenGVLab/InternVL3-1B-hf``, ``-2B-hf``: transformers' layout) into
`rewardax.models.internvl.InternVL`, and writing tiny random ones for tests and smoke runs.

    model, processor = load_vlm("OpenGVLab/InternVL3-1B-hf", dtype=jnp.bfloat16)

``name_or_path`` is a Hugging Face hub id (downloaded once into the standard cache, config, tokenizer, chat
template and safetensors only) or a local directory in the same layout (``config.json`` with ``model_type``
``internvl``, ``model.safetensors`` or an index with shards, the tokenizer files and chat template). The shared
machinery of `rewardax.models.weights` reads them: strict name and shape checks with one error listing every
problem, no pickle, no ``trust_remote_code`` (the original ``OpenGVLab/InternVL3-1B`` repos, which need it, are
refused with the name of their ``-hf`` twin).
"""

from __future__ import annotations

import json
import math
import pathlib
import re

import jax.numpy as jnp
import numpy as np

from rewardax.models.tiny_bpe import bytes_to_unicode, tiny_bpe
from rewardax.models.vlm_processor import IMAGE_TOKENS, VLMProcessor
from rewardax.models.weights import (CheckpointError, PathLike, hf_directory_source, locate, read_config_json,
                                     validate)

VLM_OPTIONS = ("pass a local directory in Hugging Face format (config.json with model_type internvl, "
               "model.safetensors, tokenizer and chat template files; e.g. OpenGVLab/InternVL3-1B-hf downloaded on "
               "a machine with internet); point HF_HOME (or HF_HUB_CACHE) at a cache that holds it; or use a tiny "
               "random model from rewardax.models.write_random_vlm (offline, scores nothing meaningfully)")

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""The chat form the InternVL -hf checkpoints use (ChatML; an image is an ``<IMG_CONTEXT>`` line before the
text), for the tiny tokenizers written here."""

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *IMAGE_TOKENS.values())

_TINY_WORDS = (
    "Does this figure show Is image better than at showing Please answer yes or no Yes No YES NO a humanoid robot "
    "kneeling seated down meditating in the lotus position standing up with both arms raised practicing "
    "gymnastics doing side splits hands on hips user assistant"
).split()


def write_qwen2_tokenizer(path: PathLike, words=_TINY_WORDS, chat_template: str = CHAT_TEMPLATE) -> int:
    """A tiny byte-level BPE tokenizer in Qwen2's form (words are single tokens with and without the leading
    space ``Ġ``), InternVL's special tokens and ``chat_template``, saved with transformers. Returns its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = list(bytes_to_unicode().values())
    spelled = [list(w) for w in dict.fromkeys(words)] + [["Ġ", *w] for w in dict.fromkeys(words)]
    tokens, merges = tiny_bpe(symbols, spelled)
    backend = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                        additional_special_tokens=list(SPECIAL_TOKENS[1:]))
    tokenizer.chat_template = chat_template
    path = pathlib.Path(path)
    tokenizer.save_pretrained(str(path))
    config_path = path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.update(tokenizer_class="Qwen2Tokenizer", extra_special_tokens=dict(IMAGE_TOKENS))
    config_path.write_text(json.dumps(config, indent=2))
    return len(tokenizer)
