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
import pathlib

import jax.numpy as jnp

from rewardax.models.internvl import (InternVLSpec, build_internvl, canonical_hf_key, internvl_expected_shapes,
                                      internvl_from_hf, internvl_optional_keys)
from rewardax.models.tiny_bpe import bytes_to_unicode, tiny_bpe
from rewardax.models.vlm_processor import IMAGE_TOKENS, IMAGENET_MEAN, IMAGENET_STD, VLMProcessor
from rewardax.models.weights import (CheckpointError, PathLike, TensorSource, hf_directory_source, locate,
                                     random_tensors, read_config_json, validate)

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


def _renamed(source: TensorSource) -> TensorSource:
    """The source under transformers-5 ``state_dict`` names (`canonical_hf_key`): ``save_pretrained`` writes
    the older llava names, the -hf repos on the hub hold either."""
    names = {canonical_hf_key(k): k for k in source.shapes}
    return TensorSource({k: source.shapes[old] for k, old in names.items()}, lambda k: source.get(names[k]),
                        source.files)


def load_vlm(name_or_path: PathLike, dtype=jnp.float32, *, remat: bool = False, revision: str | None = None):
    """Loads an InternVL checkpoint and its processor: ``(model, processor)`` (`rewardax.models.internvl.InternVL`,
    `rewardax.models.vlm_processor.VLMProcessor`).

    Args:
      name_or_path: a Hugging Face hub id (``OpenGVLab/InternVL3-1B-hf``) or a local directory in that layout.
      dtype: the matmul dtype (``jnp.bfloat16``: bfloat16 matmuls, float32 norms and softmax).
      remat: ``jax.checkpoint`` each layer (for training the model).
      revision: hub revision (branch, tag or commit).
    """
    directory = locate(name_or_path, what="InternVL checkpoint", options=VLM_OPTIONS, revision=revision)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: an InternVL checkpoint is a directory (config.json, model.safetensors, "
                              "tokenizer files), not a single file")
    raw = read_config_json(directory, ("internvl", "internvl_chat"), "InternVL")
    if raw.get("model_type") == "internvl_chat":
        raise CheckpointError(f"{directory}: an original InternVL repo (model_type internvl_chat, which needs "
                              "trust_remote_code); use its transformers twin, the same name with -hf "
                              "(e.g. OpenGVLab/InternVL3-1B-hf)")
    from transformers import InternVLConfig

    spec = InternVLSpec.from_hf_config(InternVLConfig.from_pretrained(str(directory)))
    source = _renamed(hf_directory_source(directory))
    optional = internvl_optional_keys(spec)
    validate(source, internvl_expected_shapes(spec), optional.__contains__, "transformers InternVL (config.json)")
    # The processor before the (slow) weight conversion: a bad tokenizer fails fast.
    processor = VLMProcessor.from_directory(directory, spec.vision.image_size, spec.tokens_per_image)
    if processor.image_token_id != spec.image_token_id:
        raise CheckpointError(f"{directory}: the tokenizer's image token has id {processor.image_token_id}, the "
                              f"config's image_token_id is {spec.image_token_id}")
    model = build_internvl(spec, internvl_from_hf(source.get, spec), dtype_mm=dtype, remat=remat)
    return model, processor


def tiny_vlm_config_dict(vocab_size: int, image_token_id: int, **overrides) -> dict:
    """A tiny InternVL config (an ``InternVLConfig`` dict): 56 px images (a 4 × 4 patch grid, 4 image tokens),
    InternViT width 32 with 2 layers, a Qwen2 decoder of width 32 with 2 layers and 2 kv heads of 4."""
    config = {
        "model_type": "internvl", "architectures": ["InternVLForConditionalGeneration"],
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "image_size": [56, 56], "patch_size": [14, 14],
                          "attention_bias": True},
        "text_config": {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": vocab_size,
                        "max_position_embeddings": 512},
        "image_token_id": image_token_id, "image_seq_length": 4, "downsample_ratio": 0.5,
        "tie_word_embeddings": False,
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and isinstance(config.get(key), dict) \
            else value
    return config


def write_random_vlm(path: PathLike, config: dict | None = None, seed: int = 0) -> pathlib.Path:
    """Writes a tiny **random** InternVL checkpoint in transformers' layout into ``path``: config.json,
    model.safetensors (random float32 weights: it answers nothing meaningfully), a tiny Qwen2 tokenizer made here
    with InternVL's special tokens and chat template, preprocessor_config.json, and a README saying it is random.
    Needs neither torch nor the network; transformers loads it too. ``config`` overrides `tiny_vlm_config_dict`.
    Returns ``path``."""
    from safetensors.numpy import save_file
    from transformers import InternVLConfig

    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab_size = write_qwen2_tokenizer(path)
    processor_tokens = VLMProcessor.from_directory(path, 56, 4).image_token_id  # the tokenizer reads back
    config = InternVLConfig.from_dict(tiny_vlm_config_dict(vocab_size, processor_tokens, **(config or {})))
    spec = InternVLSpec.from_hf_config(config)
    if spec.text.vocab_size < vocab_size:
        raise ValueError(f"text vocab_size {spec.text.vocab_size} < the tiny tokenizer's {vocab_size} tokens")
    config.save_pretrained(str(path))
    save_file(random_tensors(internvl_expected_shapes(spec), seed), str(path / "model.safetensors"),
              metadata={"format": "pt"})
    image = spec.vision.image_size
    (path / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "GotOcr2ImageProcessor", "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD), "size": {"height": image, "width": image}, "crop_to_patches": False,
        "do_normalize": True, "do_rescale": True, "rescale_factor": 1 / 255}, indent=2))
    (path / "README.md").write_text(
        f"# RANDOM tiny InternVL (seed {seed})\n\nWritten by rewardax.models.write_random_vlm for tests and smoke "
        "runs. The weights are random: its answers mean nothing.\n")
    return path
