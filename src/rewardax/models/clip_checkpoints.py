"""Loading CLIP weights into `rewardax.models.clip.CLIP`: Hugging Face checkpoints and open_clip files.

Entry points:

- `load_clip(name_or_path, dtype_mm)` -> ``(model, tokenizer)``, where ``name_or_path`` is
  (a) a Hugging Face hub id (``"openai/clip-vit-base-patch32"``, ``"laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"``;
      an ``hf-hub:`` prefix is accepted): downloaded once with ``huggingface_hub.snapshot_download`` into the
      standard cache, restricted to the config, tokenizer and (possibly sharded) safetensors files;
  (b) a local directory in the same Hugging Face format (``config.json`` + ``model.safetensors`` or
      ``model.safetensors.index.json`` + shards, tokenizer files);
  (c) an open_clip checkpoint file (``.safetensors``, or a ``.bin``/``.pt``/``.pth`` state dict read with
      ``torch.load(weights_only=True)`` if torch is installed) plus ``arch=`` one of `OPEN_CLIP_ARCHS`
      (or an open_clip-style architecture dict, e.g. for tiny test models).
- `write_random_clip(path)`: a tiny *random* CLIP in Hugging Face format (config, safetensors, tokenizer), for
  tests and smoke runs; needs neither torch nor the network.
- `tokenize(tokenizer, texts, context_length)`: fixed-length int32 ids for `CLIP.encode_text`.

Weights are converted with numpy only (no torch at run time for safetensors). Any mismatch between a file and
the architecture (missing keys, unexpected keys, wrong shapes, unreadable/truncated file) raises
`CheckpointError` naming the file and every problem; nothing is ever partially loaded. A hub id that is neither
cached nor downloadable raises `CheckpointNotFoundError` naming the id, the cache directory and the options.

Tokenizer for open_clip files. open_clip's tokenizer (``bpe_simple_vocab_16e6.txt.gz``) is the original OpenAI
CLIP BPE: 49408 tokens (256 byte symbols, their end-of-word forms, 48894 merges, start/end-of-text), the
vocabulary and merges Hugging Face ships as ``vocab.json`` / ``merges.txt`` in ``openai/clip-vit-base-patch32``
(the ``laion/CLIP-*`` repos ship the same files). Pass ``tokenizer=`` a directory holding those files (or a hub
id whose tokenizer is cached); by default the loader tries ``openai/clip-vit-base-patch32``'s tokenizer through the
Hugging Face cache. Known differences from open_clip's ``SimpleTokenizer``: open_clip runs ``ftfy.fix_text`` +
HTML unescaping before the BPE and pads with id 0, while the Hugging Face tokenizer applies NFC + whitespace
folding + lower-casing and pads with its pad token. For plain ASCII prompts (all of VLM-RM's) the ids up to the
end-of-text token should therefore be the same, and the padding value does not change the pooled text embedding
(the causal mask hides it). Not verified here against open_clip itself (it cannot be installed offline): the tests
check the Hugging Face tokenizer against the CLIP BPE algorithm written out, on a tiny vocabulary.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from rewardax.models.clip import CLIP, CLIPSpec, TowerSpec, as_spec
from rewardax.models.tiny_bpe import bytes_to_unicode, tiny_bpe
from rewardax.models.weights import (CheckpointError, CheckpointNotFoundError, PathLike, fill_module,
                                     hf_directory_source, locate, random_tensors, read_config_json, resolve_hub,
                                     safetensors_source, strip_prefix, torch_source, validate)

SMOKE_PRESET_HINT = (
    "use the smoke preset, which builds a tiny random CLIP with rewardax.models.clip_checkpoints.write_random_clip"
)

DEFAULT_OPEN_CLIP_TOKENIZER = "openai/clip-vit-base-patch32"
"""Hub id whose vocab.json/merges.txt are the CLIP BPE that open_clip uses (bpe_simple_vocab_16e6)."""


# ----------------------------------------------------------------------------------------------------------------
# open_clip architectures
# ----------------------------------------------------------------------------------------------------------------

# Hyper-parameters of open_clip's ViT CLIPs, copied from open_clip's model configs
# (src/open_clip/model_configs/<name>.json in github.com/mlfoundations/open_clip). Missing fields take open_clip's
# defaults: head_width 64, mlp_ratio 4.0, image_size 224, context_length 77, vocab_size 49408, and the activation is
# nn.GELU (exact erf) unless the name ends in "-quickgelu" (OpenAI-trained weights). ViT-H-14's text tower has 24
# layers (as in the released laion2b_s32b_b79k weights and their Hugging Face config).
OPEN_CLIP_ARCHS: dict[str, dict[str, Any]] = {
    "ViT-B-32": {"embed_dim": 512,
                 "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}},
    "ViT-B-16": {"embed_dim": 512,
                 "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}},
    "ViT-L-14": {"embed_dim": 768,
                 "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}},
    "ViT-H-14": {"embed_dim": 1024,
                 "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24}},
    "ViT-bigG-14": {"embed_dim": 1280,
                    "vision_cfg": {"image_size": 224, "layers": 48, "width": 1664, "head_width": 104,
                                   "mlp_ratio": 4.9231, "patch_size": 14},
                    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1280, "heads": 20,
                                 "layers": 32}},
}


def open_clip_spec(arch: str | Mapping[str, Any]) -> CLIPSpec:
    """`CLIPSpec` of an open_clip ViT CLIP: a name from `OPEN_CLIP_ARCHS` (optionally with ``-quickgelu``) or a
    dict in open_clip's model-config form (``embed_dim``, ``vision_cfg``, ``text_cfg``, optional ``quick_gelu``)."""
    if isinstance(arch, str):
        name = arch.removeprefix("hf-hub:")
        quick = name.endswith("-quickgelu")
        base = name.removesuffix("-quickgelu")
        if base not in OPEN_CLIP_ARCHS:
            raise ValueError(f"unknown open_clip architecture {arch!r}; known: "
                             f"{', '.join(OPEN_CLIP_ARCHS)} (optionally with '-quickgelu'), or pass a dict")
        cfg = dict(OPEN_CLIP_ARCHS[base], quick_gelu=quick)
    else:
        cfg = dict(arch)
    v, t = dict(cfg["vision_cfg"]), dict(cfg["text_cfg"])
    act = "quick_gelu" if cfg.get("quick_gelu", False) else "gelu"
    vw, tw = int(v["width"]), int(t["width"])
    vocab = int(t.get("vocab_size", 49408))
    return CLIPSpec(
        embed_dim=int(cfg["embed_dim"]),
        image_size=int(v.get("image_size", 224)),
        patch_size=int(v["patch_size"]),
        vision=TowerSpec(width=vw, depth=int(v["layers"]), heads=vw // int(v.get("head_width", 64)),
                         mlp_dim=int(vw * float(v.get("mlp_ratio", 4.0))), act=act),
        vocab_size=vocab,
        context_length=int(t.get("context_length", 77)),
        text=TowerSpec(width=tw, depth=int(t["layers"]), heads=int(t.get("heads", 8)),
                       mlp_dim=int(tw * float(t.get("mlp_ratio", 4.0))), act=act),
        # open_clip (and OpenAI) pool the text at argmax(token ids): end-of-text is the highest id.
        text_pool="argmax",
        eos_token_id=vocab - 1,
    )


# ----------------------------------------------------------------------------------------------------------------
# Tensor sources (lazy: shapes first, arrays on demand)
# ----------------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------------
# Key layouts
# ----------------------------------------------------------------------------------------------------------------


def _hf_layer_shapes(t: TowerSpec) -> dict[str, tuple[int, ...]]:
    d, m = t.width, t.mlp_dim
    return {
        "self_attn.q_proj.weight": (d, d), "self_attn.q_proj.bias": (d,),
        "self_attn.k_proj.weight": (d, d), "self_attn.k_proj.bias": (d,),
        "self_attn.v_proj.weight": (d, d), "self_attn.v_proj.bias": (d,),
        "self_attn.out_proj.weight": (d, d), "self_attn.out_proj.bias": (d,),
        "layer_norm1.weight": (d,), "layer_norm1.bias": (d,),
        "mlp.fc1.weight": (m, d), "mlp.fc1.bias": (m,),
        "mlp.fc2.weight": (d, m), "mlp.fc2.bias": (d,),
        "layer_norm2.weight": (d,), "layer_norm2.bias": (d,),
    }


def hf_expected_shapes(spec: CLIPSpec) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of a transformers ``CLIPModel`` state dict for ``spec``."""
    v, t, p = spec.vision, spec.text, spec.patch_size
    out: dict[str, tuple[int, ...]] = {
        "vision_model.embeddings.class_embedding": (v.width,),
        "vision_model.embeddings.patch_embedding.weight": (v.width, 3, p, p),
        "vision_model.embeddings.position_embedding.weight": (spec.num_patches + 1, v.width),
        "vision_model.pre_layrnorm.weight": (v.width,), "vision_model.pre_layrnorm.bias": (v.width,),
        "vision_model.post_layernorm.weight": (v.width,), "vision_model.post_layernorm.bias": (v.width,),
        "visual_projection.weight": (spec.embed_dim, v.width),
        "text_model.embeddings.token_embedding.weight": (spec.vocab_size, t.width),
        "text_model.embeddings.position_embedding.weight": (spec.context_length, t.width),
        "text_model.final_layer_norm.weight": (t.width,), "text_model.final_layer_norm.bias": (t.width,),
        "text_projection.weight": (spec.embed_dim, t.width),
        "logit_scale": (),
    }
    for tower, ts in (("vision_model", v), ("text_model", t)):
        for i in range(ts.depth):
            for name, shape in _hf_layer_shapes(ts).items():
                out[f"{tower}.encoder.layers.{i}.{name}"] = shape
    return out


def _hf_ignorable(key: str) -> bool:
    return key.endswith("position_ids")  # non-persistent buffer saved by old transformers versions


def _oc_layer_shapes(t: TowerSpec) -> dict[str, tuple[int, ...]]:
    d, m = t.width, t.mlp_dim
    return {
        "ln_1.weight": (d,), "ln_1.bias": (d,),
        "attn.in_proj_weight": (3 * d, d), "attn.in_proj_bias": (3 * d,),
        "attn.out_proj.weight": (d, d), "attn.out_proj.bias": (d,),
        "ln_2.weight": (d,), "ln_2.bias": (d,),
        "mlp.c_fc.weight": (m, d), "mlp.c_fc.bias": (m,),
        "mlp.c_proj.weight": (d, m), "mlp.c_proj.bias": (d,),
    }


def open_clip_expected_shapes(spec: CLIPSpec) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of an open_clip ``CLIP`` state dict for ``spec``."""
    v, t, p = spec.vision, spec.text, spec.patch_size
    out: dict[str, tuple[int, ...]] = {
        "visual.class_embedding": (v.width,),
        "visual.positional_embedding": (spec.num_patches + 1, v.width),
        "visual.conv1.weight": (v.width, 3, p, p),
        "visual.ln_pre.weight": (v.width,), "visual.ln_pre.bias": (v.width,),
        "visual.ln_post.weight": (v.width,), "visual.ln_post.bias": (v.width,),
        "visual.proj": (v.width, spec.embed_dim),
        "token_embedding.weight": (spec.vocab_size, t.width),
        "positional_embedding": (spec.context_length, t.width),
        "ln_final.weight": (t.width,), "ln_final.bias": (t.width,),
        "text_projection": (t.width, spec.embed_dim),
        "logit_scale": (),
    }
    for prefix, ts in (("visual.transformer", v), ("transformer", t)):
        for i in range(ts.depth):
            for name, shape in _oc_layer_shapes(ts).items():
                out[f"{prefix}.resblocks.{i}.{name}"] = shape
    return out


_OC_IGNORABLE = {"attn_mask", "input_resolution", "context_length", "vocab_size", "logit_bias"}


def _oc_ignorable(key: str) -> bool:
    return key in _OC_IGNORABLE or key.endswith(".attn_mask")


# ----------------------------------------------------------------------------------------------------------------
# Conversion to the NNX parameter tree (numpy)
# ----------------------------------------------------------------------------------------------------------------


def _patch_kernel(w: np.ndarray) -> np.ndarray:
    """Conv weight ``[D, C, p, p]`` -> matmul kernel ``[p*p*C, D]`` for ``(ph, pw, c)``-flattened patches."""
    d = w.shape[0]
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)).reshape(-1, d))


def _ln(get, prefix):
    return {"scale": functools.partial(get, prefix + ".weight"), "bias": functools.partial(get, prefix + ".bias")}


def _stack(fn, depth):
    return lambda: np.stack([fn(i) for i in range(depth)])


def _hf_blocks(get, prefix: str, depth: int) -> dict:
    def w(i, name):
        return get(f"{prefix}.encoder.layers.{i}.{name}")

    return {
        "ln_1": {"scale": _stack(lambda i: w(i, "layer_norm1.weight"), depth),
                 "bias": _stack(lambda i: w(i, "layer_norm1.bias"), depth)},
        "qkv": {"kernel": _stack(lambda i: np.concatenate(
                    [w(i, f"self_attn.{n}_proj.weight").T for n in "qkv"], axis=1), depth),
                "bias": _stack(lambda i: np.concatenate([w(i, f"self_attn.{n}_proj.bias") for n in "qkv"]), depth)},
        "out": {"kernel": _stack(lambda i: w(i, "self_attn.out_proj.weight").T, depth),
                "bias": _stack(lambda i: w(i, "self_attn.out_proj.bias"), depth)},
        "ln_2": {"scale": _stack(lambda i: w(i, "layer_norm2.weight"), depth),
                 "bias": _stack(lambda i: w(i, "layer_norm2.bias"), depth)},
        "fc1": {"kernel": _stack(lambda i: w(i, "mlp.fc1.weight").T, depth),
                "bias": _stack(lambda i: w(i, "mlp.fc1.bias"), depth)},
        "fc2": {"kernel": _stack(lambda i: w(i, "mlp.fc2.weight").T, depth),
                "bias": _stack(lambda i: w(i, "mlp.fc2.bias"), depth)},
    }


def hf_to_params(get: Callable[[str], np.ndarray], spec: CLIPSpec) -> dict:
    """Transformers ``CLIPModel`` tensors (``get(key)``) -> the pure-dict state of `CLIP`, each leaf a
    zero-argument function producing the numpy array (so `build_clip` converts one tensor at a time)."""
    vm, tm = "vision_model", "text_model"
    return {
        "vision": {
            "patch_embed": {"kernel": lambda: _patch_kernel(get(f"{vm}.embeddings.patch_embedding.weight"))},
            "class_embedding": functools.partial(get, f"{vm}.embeddings.class_embedding"),
            "pos_embedding": functools.partial(get, f"{vm}.embeddings.position_embedding.weight"),
            "ln_pre": _ln(get, f"{vm}.pre_layrnorm"),
            "encoder": {"blocks": _hf_blocks(get, vm, spec.vision.depth)},
            "ln_post": _ln(get, f"{vm}.post_layernorm"),
            "proj": {"kernel": lambda: get("visual_projection.weight").T},
        },
        "text": {
            "token_embedding": functools.partial(get, f"{tm}.embeddings.token_embedding.weight"),
            "pos_embedding": functools.partial(get, f"{tm}.embeddings.position_embedding.weight"),
            "encoder": {"blocks": _hf_blocks(get, tm, spec.text.depth)},
            "ln_final": _ln(get, f"{tm}.final_layer_norm"),
            "proj": {"kernel": lambda: get("text_projection.weight").T},
        },
        "logit_scale": lambda: np.asarray(get("logit_scale")).reshape(()),
    }


def _oc_blocks(get, prefix: str, depth: int) -> dict:
    def w(i, name):
        return get(f"{prefix}.resblocks.{i}.{name}")

    return {
        "ln_1": {"scale": _stack(lambda i: w(i, "ln_1.weight"), depth),
                 "bias": _stack(lambda i: w(i, "ln_1.bias"), depth)},
        "qkv": {"kernel": _stack(lambda i: w(i, "attn.in_proj_weight").T, depth),  # rows are q, k, v
                "bias": _stack(lambda i: w(i, "attn.in_proj_bias"), depth)},
        "out": {"kernel": _stack(lambda i: w(i, "attn.out_proj.weight").T, depth),
                "bias": _stack(lambda i: w(i, "attn.out_proj.bias"), depth)},
        "ln_2": {"scale": _stack(lambda i: w(i, "ln_2.weight"), depth),
                 "bias": _stack(lambda i: w(i, "ln_2.bias"), depth)},
        "fc1": {"kernel": _stack(lambda i: w(i, "mlp.c_fc.weight").T, depth),
                "bias": _stack(lambda i: w(i, "mlp.c_fc.bias"), depth)},
        "fc2": {"kernel": _stack(lambda i: w(i, "mlp.c_proj.weight").T, depth),
                "bias": _stack(lambda i: w(i, "mlp.c_proj.bias"), depth)},
    }


def open_clip_to_params(get: Callable[[str], np.ndarray], spec: CLIPSpec) -> dict:
    """open_clip ``CLIP`` tensors (``get(key)``) -> the pure-dict state of `CLIP` (lazy leaves, as
    `hf_to_params`)."""
    return {
        "vision": {
            "patch_embed": {"kernel": lambda: _patch_kernel(get("visual.conv1.weight"))},
            "class_embedding": functools.partial(get, "visual.class_embedding"),
            "pos_embedding": functools.partial(get, "visual.positional_embedding"),
            "ln_pre": _ln(get, "visual.ln_pre"),
            "encoder": {"blocks": _oc_blocks(get, "visual.transformer", spec.vision.depth)},
            "ln_post": _ln(get, "visual.ln_post"),
            "proj": {"kernel": functools.partial(get, "visual.proj")},  # stored [width, embed]
        },
        "text": {
            "token_embedding": functools.partial(get, "token_embedding.weight"),
            "pos_embedding": functools.partial(get, "positional_embedding"),
            "encoder": {"blocks": _oc_blocks(get, "transformer", spec.text.depth)},
            "ln_final": _ln(get, "ln_final"),
            "proj": {"kernel": functools.partial(get, "text_projection")},  # stored [width, embed]
        },
        "logit_scale": lambda: np.asarray(get("logit_scale")).reshape(()),
    }


def build_clip(spec: Any, params: Mapping, *, dtype_mm=jnp.float32, param_dtype=jnp.float32,
               remat: bool = False, scan_unroll: int | bool = 1) -> CLIP:
    """A `CLIP` for ``spec`` holding ``params`` (as from `hf_to_params`; see `rewardax.models.weights.fill_module`),
    without random initialisation."""
    spec = as_spec(spec)
    return fill_module(nnx.eval_shape(lambda: CLIP(spec, dtype_mm=dtype_mm, param_dtype=param_dtype, remat=remat,
                                                   scan_unroll=scan_unroll, rngs=nnx.Rngs(0))), params)


# ----------------------------------------------------------------------------------------------------------------
# Hugging Face directories and the hub
# ----------------------------------------------------------------------------------------------------------------

CLIP_OPTIONS = ("pass a local directory in Hugging Face format (config.json, model.safetensors, tokenizer files) or "
                "an open_clip file with arch=...; point HF_HOME (or HF_HUB_CACHE) at a cache that holds it; or "
                f"{SMOKE_PRESET_HINT}")


def load_hf_config(directory: PathLike):
    """transformers ``CLIPConfig`` from ``directory/config.json`` (model_type must be ``clip``)."""
    from transformers import CLIPConfig

    read_config_json(pathlib.Path(directory), ("clip",), "CLIP")
    return CLIPConfig.from_pretrained(str(directory))


def load_tokenizer(name_or_path: PathLike, *, context_length: int = 77):
    """transformers ``CLIPTokenizer`` from a directory (tokenizer.json or vocab.json + merges.txt) or a hub id
    (tokenizer files only; offline it must be cached)."""
    from transformers import CLIPTokenizer

    p = pathlib.Path(name_or_path)
    try:
        if p.is_dir():
            tok = CLIPTokenizer.from_pretrained(str(p))
        else:
            src = resolve_hub(str(name_or_path), allow_patterns=(
                "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"),
                what="CLIP tokenizer", options=(
                    "pass tokenizer= a directory holding vocab.json and merges.txt (the CLIP BPE, e.g. from "
                    "openai/clip-vit-base-patch32; open_clip's bpe_simple_vocab_16e6 is the same), point HF_HOME "
                    f"at a cache that holds {str(name_or_path)!r}, or pass tokenizer=False to load without one"))
            tok = CLIPTokenizer.from_pretrained(str(src))
    except CheckpointNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{name_or_path}: cannot load a CLIP tokenizer ({type(e).__name__}: {e}); it needs "
                              "tokenizer.json or vocab.json + merges.txt") from e
    tok.model_max_length = context_length
    return tok


def tokenize(tokenizer, texts: str | Iterable[str], context_length: int = 77) -> np.ndarray:
    """``[B, context_length]`` int32 token ids (start/end-of-text added, truncated keeping end-of-text, padded
    with the tokenizer's pad id), ready for `CLIP.encode_text`. Always the same length, so one compile."""
    if isinstance(texts, str):
        texts = [texts]
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=context_length,
                    return_tensors="np")
    return np.asarray(enc["input_ids"], dtype=np.int32)


# ----------------------------------------------------------------------------------------------------------------
# load_clip
# ----------------------------------------------------------------------------------------------------------------


def load_clip(name_or_path: PathLike, dtype_mm=jnp.float32, *, arch: str | Mapping[str, Any] | None = None,
              tokenizer: PathLike | None | bool = None, param_dtype=jnp.float32, remat: bool = False,
              revision: str | None = None):
    """Loads a CLIP and its tokenizer: ``(model, tokenizer)``.

    Args:
      name_or_path: a Hugging Face hub id, a local Hugging Face directory, or an open_clip checkpoint file.
      dtype_mm: matmul / attention input dtype of the model (``jnp.float32`` or ``jnp.bfloat16``).
      arch: open_clip files only: a name from `OPEN_CLIP_ARCHS` (``-quickgelu`` suffix for OpenAI-trained
        weights) or an open_clip-style architecture dict. If None, a known name in the file name is used.
      tokenizer: a tokenizer directory or hub id to use instead of the checkpoint's own; ``False`` for none.
        For open_clip files the default is `DEFAULT_OPEN_CLIP_TOKENIZER` (must be cached when offline).
      param_dtype: storage dtype of the parameters.
      remat: ``jax.checkpoint`` each transformer layer.
      revision: hub revision (branch, tag or commit).
    """
    path = locate(name_or_path, what="CLIP checkpoint", options=CLIP_OPTIONS, revision=revision)
    if path.is_file():
        return _load_open_clip(path, dtype_mm=dtype_mm, arch=arch, tokenizer=tokenizer, param_dtype=param_dtype,
                               remat=remat)
    directory = path
    config = load_hf_config(directory)
    spec = CLIPSpec.from_hf_config(config)
    source = hf_directory_source(directory)
    validate(source, hf_expected_shapes(spec), _hf_ignorable, "Hugging Face CLIPModel (config.json)")
    if tokenizer is False:  # the tokenizer before the (slow) weight conversion: fail fast
        tok = None
    else:
        tok = load_tokenizer(tokenizer if tokenizer is not None else directory, context_length=spec.context_length)
    model = build_clip(spec, hf_to_params(source.get, spec), dtype_mm=dtype_mm, param_dtype=param_dtype,
                       remat=remat)
    return model, tok


def _load_open_clip(path: pathlib.Path, *, dtype_mm, arch, tokenizer, param_dtype, remat):
    if arch is None:
        found = [n for n in OPEN_CLIP_ARCHS if n.lower() in path.name.lower()]
        if len(found) != 1:
            raise ValueError(f"{path}: pass arch= one of {', '.join(OPEN_CLIP_ARCHS)} (add '-quickgelu' for "
                             "OpenAI-trained weights) or an open_clip architecture dict")
        arch = found[0] + ("-quickgelu" if "quickgelu" in path.name.lower() or "openai" in path.name.lower() else "")
    spec = open_clip_spec(arch)
    if path.suffix == ".safetensors":
        source = safetensors_source([path])
    elif path.suffix in (".bin", ".pt", ".pth"):
        source = torch_source(path)
    else:
        raise CheckpointError(f"{path}: unknown checkpoint type {path.suffix!r} (expected .safetensors, .bin, .pt "
                              "or .pth)")
    source = strip_prefix(source, "module.")
    if any(k.startswith(("vision_model.", "text_model.")) for k in source.shapes):
        raise CheckpointError(f"{path}: this is a Hugging Face CLIPModel file, not an open_clip one: pass the "
                              "directory holding it and its config.json instead")
    validate(source, open_clip_expected_shapes(spec), _oc_ignorable,
              f"open_clip {arch if isinstance(arch, str) else 'custom'}")
    if tokenizer is False:
        tok = None
    else:
        tok = load_tokenizer(tokenizer if tokenizer is not None else DEFAULT_OPEN_CLIP_TOKENIZER,
                             context_length=spec.context_length)
    model = build_clip(spec, open_clip_to_params(source.get, spec), dtype_mm=dtype_mm, param_dtype=param_dtype,
                       remat=remat)
    return model, tok


# ----------------------------------------------------------------------------------------------------------------
# Tiny random checkpoints
# ----------------------------------------------------------------------------------------------------------------

_TINY_WORDS = (
    "a humanoid robot kneeling seated down meditating in the lotus position standing up with both arms raised "
    "practicing gymnastics doing side splits hands on hips its crossed one leg pole vertically upright top of cart "
    "and car at peak mountain next to yellow flag photo cat dog"
).split()


def tiny_clip_vocab(words: Iterable[str] = _TINY_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A tiny but valid CLIP BPE: the 256 byte symbols, their end-of-word forms, merges that build each of
    ``words`` left to right, then ``<|startoftext|>`` and ``<|endoftext|>`` (last, so it has the highest id, as in
    the real vocabulary). Returns ``(vocab, merges)``."""
    symbols = list(bytes_to_unicode().values())
    spelled = (list(word[:-1]) + [word[-1] + "</w>"] for word in dict.fromkeys(w.lower() for w in words))
    tokens, merges = tiny_bpe(symbols + [s + "</w>" for s in symbols], spelled)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_tokenizer(path: PathLike, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]],
                         context_length: int = 77) -> None:
    """Writes vocab.json, merges.txt and tokenizer.json / tokenizer_config.json for a CLIP BPE."""
    from transformers import CLIPTokenizer

    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(dict(vocab), ensure_ascii=False))
    (path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                     encoding="utf-8")
    tok = CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m) for m in merges], model_max_length=context_length)
    tok.save_pretrained(str(path))


def tiny_clip_config_dict(vocab_size: int, **overrides) -> dict:
    """A tiny CLIP config (as a ``CLIPConfig`` dict): 224 px, patch 32, width 64, 2 layers per tower."""
    eos = vocab_size - 1
    cfg = {
        "model_type": "clip",
        "architectures": ["CLIPModel"],
        "projection_dim": 64,
        "logit_scale_init_value": 2.6592,
        "vision_config": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "image_size": 224, "patch_size": 32, "projection_dim": 64,
                          "hidden_act": "quick_gelu"},
        "text_config": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                        "num_attention_heads": 4, "max_position_embeddings": 77, "vocab_size": vocab_size,
                        "projection_dim": 64, "hidden_act": "quick_gelu", "bos_token_id": eos - 1,
                        "eos_token_id": eos, "pad_token_id": eos},
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def random_hf_tensors(spec: CLIPSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights in transformers ``CLIPModel`` layout (`rewardax.models.weights.random_tensors`)."""
    return random_tensors(hf_expected_shapes(spec), seed, fixed={"logit_scale": math.log(1 / 0.07)})


def write_random_clip(path: PathLike, config: Any = None, seed: int = 0) -> pathlib.Path:
    """Writes a tiny **random** CLIP checkpoint in Hugging Face format into ``path``: config.json,
    model.safetensors (float32, random weights: it scores nothing meaningfully), a tiny CLIP BPE tokenizer
    (vocab.json, merges.txt, tokenizer.json) and a README saying it is random. Needs neither torch nor network.

    ``config``: a ``CLIPConfig`` or dict; default `tiny_clip_config_dict`. Its text ``vocab_size`` must be at least
    the tokenizer's (`tiny_clip_vocab`: end-of-text is its last id). Returns ``path``.
    """
    from safetensors.numpy import save_file
    from transformers import CLIPConfig

    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_clip_vocab()
    if config is None:
        config = tiny_clip_config_dict(len(vocab))
    if isinstance(config, dict):
        config = CLIPConfig.from_dict(config)
    config.architectures = ["CLIPModel"]
    spec = CLIPSpec.from_hf_config(config)
    if spec.vocab_size < len(vocab):
        raise ValueError(f"config text vocab_size {spec.vocab_size} < tiny tokenizer vocabulary {len(vocab)}")
    config.save_pretrained(str(path))
    save_file(random_hf_tensors(spec, seed), str(path / "model.safetensors"), metadata={"format": "pt"})
    write_clip_tokenizer(path, vocab, merges, context_length=spec.context_length)
    (path / "README.md").write_text(
        f"# RANDOM tiny CLIP (seed {seed})\n\nWritten by rewardax.models.clip_checkpoints.write_random_clip for tests "
        "and smoke runs. The weights are random: its scores mean nothing.\n")
    return path
