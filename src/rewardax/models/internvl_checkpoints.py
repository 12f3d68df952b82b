"""Loading InternVL checkpoints (``OpenGVLab/InternVL3-1B-hf``, ``-2B-hf``: transformers' layout) into
`rewardax.models.internvl.InternVL`, and writing tiny random ones for tests and smoke runs.

    model, processor = load_vlm("OpenGVLab/InternVL3-1B-hf", dtype_mm=jnp.bfloat16)

``name_or_path`` is a Hugging Face hub id (downloaded once into the standard cache, config, tokenizer, chat
template and safetensors only) or a local directory in the same layout (``config.json`` with ``model_type``
``internvl``, ``model.safetensors`` or an index with shards, the tokenizer files and chat template). The shared
machinery of `rewardax.models.weights` reads them: strict name and shape checks with one error listing every
problem, no pickle, no ``trust_remote_code`` (the original ``OpenGVLab/InternVL3-1B`` repos, which need it, are
refused with the name of their ``-hf`` twin).

The conversion, numpy only: `internvl_expected_shapes` (every tensor read, under transformers-5 ``state_dict``
names; `canonical_hf_key` maps the legacy names transformers 5 ``save_pretrained`` writes), `internvl_from_hf`
(the nested dict of NNX parameters) and `build_internvl` (a model holding them, without random initialisation).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from rewardax.models.internvl import InternVL, InternVLSpec, as_spec
from rewardax.models.tiny_bpe import bytes_to_unicode, tiny_bpe
from rewardax.models.vlm_processor import IMAGE_TOKENS, IMAGENET_MEAN, IMAGENET_STD, VLMProcessor
from rewardax.models.weights import (CheckpointError, PathLike, TensorSource, fill_module, hf_directory_source,
                                     locate, random_tensors, read_config_json, validate)


# ----------------------------------------------------------------------------------------------------------------
# Key layout and conversion: transformers state_dict -> NNX parameters (numpy)
# ----------------------------------------------------------------------------------------------------------------

_VIS = "model.vision_tower."
_PROJ = "model.multi_modal_projector."
_LM = "model.language_model."


def canonical_hf_key(key: str) -> str:
    """The transformers-5 ``state_dict`` name of a checkpoint key. ``save_pretrained`` writes the legacy llava
    names (``vision_tower.*``, ``multi_modal_projector.*``,
    ``language_model.model.*``, ``language_model.lm_head.weight``), which transformers renames on load
    (``conversion_mapping.py``, the ``llava`` rules); canonical names are returned unchanged."""
    for old, new in (("language_model.lm_head.", "lm_head."), ("language_model.model.", _LM),
                     ("language_model.", _LM), ("vision_tower.", _VIS), ("multi_modal_projector.", _PROJ)):
        if key.startswith(old):
            return new + key[len(old):]
    return key


def internvl_optional_keys(spec: Any) -> set[str]:
    """Keys a checkpoint may hold that the model does not read: ``lm_head.weight`` of a tied model (a duplicate of
    the embedding; transformers unties only if it differs, which a loader may check)."""
    return {"lm_head.weight"} if as_spec(spec).tie_word_embeddings else set()


def internvl_expected_shapes(spec: Any) -> dict[str, tuple[int, ...]]:
    """``{transformers state_dict key: shape}`` of every tensor `internvl_from_hf` reads (tied models: no
    ``lm_head.weight``, see `internvl_optional_keys`)."""
    spec = as_spec(spec)
    v, t = spec.vision, spec.text
    d, p, c = v.width, v.patch_size, v.num_channels
    shapes: dict[str, tuple[int, ...]] = {
        _VIS + "embeddings.cls_token": (1, 1, d),
        _VIS + "embeddings.patch_embeddings.projection.weight": (d, c, p, p),
        _VIS + "embeddings.patch_embeddings.projection.bias": (d,),
    }
    if v.abs_pos:
        shapes[_VIS + "embeddings.position_embeddings"] = (1, v.grid**2 + 1, d)
    for i in range(v.depth):
        pre = f"{_VIS}encoder.layer.{i}."
        shapes[pre + "lambda_1"] = (d,)
        shapes[pre + "lambda_2"] = (d,)
        for name in ("q_proj", "k_proj", "v_proj"):
            shapes[f"{pre}attention.{name}.weight"] = (d, d)
            if v.attention_bias:
                shapes[f"{pre}attention.{name}.bias"] = (d,)
        if v.qk_norm:
            shapes[pre + "attention.q_norm.weight"] = (d,)
            shapes[pre + "attention.k_norm.weight"] = (d,)
        shapes[pre + "attention.projection_layer.weight"] = (d, d)
        shapes[pre + "attention.projection_layer.bias"] = (d,)
        shapes[pre + "mlp.fc1.weight"] = (v.mlp_dim, d)
        shapes[pre + "mlp.fc1.bias"] = (v.mlp_dim,)
        shapes[pre + "mlp.fc2.weight"] = (d, v.mlp_dim)
        shapes[pre + "mlp.fc2.bias"] = (d,)
        for name in ("layernorm_before", "layernorm_after"):
            shapes[f"{pre}{name}.weight"] = (d,)
            if v.norm_type == "layer_norm":
                shapes[f"{pre}{name}.bias"] = (d,)
    if v.final_norm:
        shapes[_VIS + "layernorm.weight"] = (d,)
        shapes[_VIS + "layernorm.bias"] = (d,)
    dp = d * spec.shuffle**2
    shapes.update({
        _PROJ + "layer_norm.weight": (dp,), _PROJ + "layer_norm.bias": (dp,),
        _PROJ + "linear_1.weight": (t.width, dp), _PROJ + "linear_1.bias": (t.width,),
        _PROJ + "linear_2.weight": (t.width, t.width), _PROJ + "linear_2.bias": (t.width,),
        _LM + "embed_tokens.weight": (t.vocab_size, t.width),
        _LM + "norm.weight": (t.width,),
    })
    hq, hkv = t.heads * t.head_dim, t.kv_heads * t.head_dim
    for i in range(t.depth):
        pre = f"{_LM}layers.{i}."
        for name, dout in (("q_proj", hq), ("k_proj", hkv), ("v_proj", hkv)):
            shapes[f"{pre}self_attn.{name}.weight"] = (dout, t.width)
            shapes[f"{pre}self_attn.{name}.bias"] = (dout,)
        shapes[pre + "self_attn.o_proj.weight"] = (t.width, hq)
        shapes[pre + "mlp.gate_proj.weight"] = (t.mlp_dim, t.width)
        shapes[pre + "mlp.up_proj.weight"] = (t.mlp_dim, t.width)
        shapes[pre + "mlp.down_proj.weight"] = (t.width, t.mlp_dim)
        shapes[pre + "input_layernorm.weight"] = (t.width,)
        shapes[pre + "post_attention_layernorm.weight"] = (t.width,)
    if not spec.tie_word_embeddings:
        shapes["lm_head.weight"] = (t.vocab_size, t.width)
    return shapes


def internvl_from_hf(get: Callable[[str], np.ndarray], spec: Any) -> dict:
    """Nested dict of numpy float32 parameters for `InternVL` from ``get(transformers state_dict key)``
    (canonical names, see `canonical_hf_key`). Linear weights ``[out, in]`` become kernels ``[in, out]``; layer
    tensors are stacked on a leading depth axis. Reads exactly the keys of `internvl_expected_shapes`."""
    spec = as_spec(spec)
    v, t = spec.vision, spec.text

    def arr(key):
        return np.asarray(get(key), dtype=np.float32)

    def stack(fmt, depth, fn=lambda a: a):
        return np.stack([fn(arr(fmt.format(i))) for i in range(depth)])

    def dense(fmt, depth, bias=True):
        out = {"kernel": stack(fmt + ".weight", depth, lambda a: a.T)}
        if bias:
            out["bias"] = stack(fmt + ".bias", depth)
        return out

    def norm(fmt, depth, bias):
        out = {"scale": stack(fmt + ".weight", depth)}
        if bias:
            out["bias"] = stack(fmt + ".bias", depth)
        return out

    vl = _VIS + "encoder.layer.{}."
    ln = v.norm_type == "layer_norm"
    vlayers = {
        "norm1": norm(vl + "layernorm_before", v.depth, ln),
        "q": dense(vl + "attention.q_proj", v.depth, v.attention_bias),
        "k": dense(vl + "attention.k_proj", v.depth, v.attention_bias),
        "v": dense(vl + "attention.v_proj", v.depth, v.attention_bias),
        "proj": dense(vl + "attention.projection_layer", v.depth),
        "lambda_1": stack(vl + "lambda_1", v.depth),
        "norm2": norm(vl + "layernorm_after", v.depth, ln),
        "fc1": dense(vl + "mlp.fc1", v.depth),
        "fc2": dense(vl + "mlp.fc2", v.depth),
        "lambda_2": stack(vl + "lambda_2", v.depth),
    }
    if v.qk_norm:
        vlayers["q_norm"] = norm(vl + "attention.q_norm", v.depth, False)
        vlayers["k_norm"] = norm(vl + "attention.k_norm", v.depth, False)
    conv = arr(_VIS + "embeddings.patch_embeddings.projection.weight")  # [D, C, p, p]
    vision = {
        "patch_embed": {"kernel": conv.reshape(conv.shape[0], -1).T,
                        "bias": arr(_VIS + "embeddings.patch_embeddings.projection.bias")},
        "cls_token": arr(_VIS + "embeddings.cls_token").reshape(-1),
        "layers": vlayers,
    }
    if v.abs_pos:
        vision["pos_embed"] = arr(_VIS + "embeddings.position_embeddings")[0]
    if v.final_norm:
        vision["final_norm"] = {"scale": arr(_VIS + "layernorm.weight"), "bias": arr(_VIS + "layernorm.bias")}
    projector = {
        "norm": {"scale": arr(_PROJ + "layer_norm.weight"), "bias": arr(_PROJ + "layer_norm.bias")},
        "fc1": {"kernel": arr(_PROJ + "linear_1.weight").T, "bias": arr(_PROJ + "linear_1.bias")},
        "fc2": {"kernel": arr(_PROJ + "linear_2.weight").T, "bias": arr(_PROJ + "linear_2.bias")},
    }
    tl = _LM + "layers.{}."
    text = {
        "embed": arr(_LM + "embed_tokens.weight"),
        "layers": {
            "input_norm": norm(tl + "input_layernorm", t.depth, False),
            "q": dense(tl + "self_attn.q_proj", t.depth),
            "k": dense(tl + "self_attn.k_proj", t.depth),
            "v": dense(tl + "self_attn.v_proj", t.depth),
            "o": dense(tl + "self_attn.o_proj", t.depth, False),
            "post_norm": norm(tl + "post_attention_layernorm", t.depth, False),
            "gate": dense(tl + "mlp.gate_proj", t.depth, False),
            "up": dense(tl + "mlp.up_proj", t.depth, False),
            "down": dense(tl + "mlp.down_proj", t.depth, False),
        },
        "norm": {"scale": arr(_LM + "norm.weight")},
    }
    if not spec.tie_word_embeddings:
        text["lm_head"] = {"kernel": arr("lm_head.weight").T}
    return {"vision": vision, "projector": projector, "text": text}


def build_internvl(spec: Any, params: Mapping, *, dtype_mm=jnp.float32, param_dtype=jnp.float32,
                   remat: bool = False, scan_unroll: int | bool = 1) -> InternVL:
    """An `InternVL` for ``spec`` holding ``params`` (the nested dict of `internvl_from_hf`; leaves may also be
    zero-argument functions returning arrays), without random initialisation (`rewardax.models.weights.fill_module`)."""
    spec = as_spec(spec)
    return fill_module(nnx.eval_shape(lambda: InternVL(spec, dtype_mm=dtype_mm, param_dtype=param_dtype,
                                                       remat=remat, scan_unroll=scan_unroll, rngs=nnx.Rngs(0))),
                       params)


# ----------------------------------------------------------------------------------------------------------------
# Loading (load_vlm) and tiny random checkpoints (write_random_vlm)
# ----------------------------------------------------------------------------------------------------------------

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


def load_vlm(name_or_path: PathLike, dtype_mm=jnp.float32, *, remat: bool = False,
             revision: str | None = None):
    """Loads an InternVL checkpoint and its processor: ``(model, processor)`` (`rewardax.models.internvl.InternVL`,
    `rewardax.models.vlm_processor.VLMProcessor`).

    Args:
      name_or_path: a Hugging Face hub id (``OpenGVLab/InternVL3-1B-hf``) or a local directory in that layout.
      dtype_mm: matmul / attention input dtype of the model (``jnp.float32`` or ``jnp.bfloat16``: bfloat16
        matmuls, float32 norms and softmax); parameters are stored in float32.
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
    model = build_internvl(spec, internvl_from_hf(source.get, spec), dtype_mm=dtype_mm, remat=remat)
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


_INTERNVIT_300M = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                       image_size=[448, 448], patch_size=[14, 14], attention_bias=True, use_qk_norm=False,
                       norm_type="layer_norm", layer_norm_eps=1e-6, use_mean_pooling=True, layer_scale_init_value=0.1,
                       hidden_act="gelu")
_QWEN25 = dict(vocab_size=151674, rms_norm_eps=1e-6, max_position_embeddings=32768,
               hidden_act="silu", rope_parameters={"rope_type": "default", "rope_theta": 1e6})
INTERNVL3_SHAPES = {
    name: dict(vision_config=_INTERNVIT_300M, text_config={**_QWEN25, **text}, image_seq_length=256,
               downsample_ratio=0.5, projector_hidden_act="gelu", tie_word_embeddings=False)
    for name, text in {
        "internvl3-1b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                             intermediate_size=4864),
        "internvl3-2b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                             intermediate_size=8960),
        "internvl3-8b": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                             intermediate_size=18944),
    }.items()}
"""InternVL3-1B, -2B and -8B as overrides of `tiny_vlm_config_dict`, for sizing without weights (memory, FLOPs,
sharding): InternViT-300M (448 px, patch 14, 256 tokens per image after the 0.5 pixel shuffle; transformers'
InternVL config) with the decoders of Qwen2.5-0.5B, -1.5B and -7B (their config.json: widths 896 / 1536 / 3584,
24 / 28 / 28 layers, 14 / 12 / 28 query and 2 / 2 / 4 key-value heads, MLP 4864 / 8960 / 18944), InternVL3's
vocabulary of 151,674 and an untied head as in InternVL3-1B-hf (the 2B and 8B -hf configs were not reachable
from this machine: the same is assumed)."""


def internvl3_config_dict(name: str, image_token_id: int = InternVLSpec.image_token_id) -> dict:
    """The config dict of the named InternVL3 shape (`INTERNVL3_SHAPES`); ``image_token_id`` that of the
    tokenizer that will write its prompts."""
    if name not in INTERNVL3_SHAPES:
        raise ValueError(f"unknown InternVL3 shape {name!r}: choose from {', '.join(INTERNVL3_SHAPES)}")
    return tiny_vlm_config_dict(0, image_token_id, **INTERNVL3_SHAPES[name])


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
