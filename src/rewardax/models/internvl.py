"""InternVL (InternViT + pixel shuffle + MLP projector + Qwen2 decoder) in Flax NNX, numerically matching
transformers' ``InternVLForConditionalGeneration`` (the ``OpenGVLab/InternVL3-*-hf`` checkpoints) for the one
thing a yes-token reward needs: the next-token logits at the last position.

Written in the big_vision manner, like `rewardax.models.clip`:

- ``dtype_mm`` is the dtype of matmul / attention *inputs* (float32 or bfloat16), accumulated in float32. The
  residual streams, LayerNorm / RMSNorm, softmax, rotary embeddings and every output stay float32; parameters are
  stored in ``param_dtype`` (float32).
- the layers of each tower are one module with stacked parameters, run by ``jax.lax.scan`` (one compiled layer
  body), optionally under ``jax.checkpoint`` (``remat=True``).

What is computed, each step as transformers 5 does it (``models/internvl/modeling_internvl.py``,
``models/qwen2/modeling_qwen2.py``):

- vision tower (``InternVLVisionModel``): patch embedding (the stride-``p`` convolution, with bias, as a matmul on
  flattened ``(c, ph, pw)`` patches; tokens in row-major grid order), CLS token, absolute position embeddings
  (HF interpolates them only for an input size other than the configured one or a non-square input; here the
  input must have the configured square size), ``depth`` pre-norm layers ``h + lambda_1 * attn(norm(h))``,
  ``h + lambda_2 * mlp(norm(h))`` with ``norm_type`` LayerNorm or RMSNorm (``layer_norm_eps``), q/k/v bias per
  ``attention_bias``, optional ``use_qk_norm`` (an RMSNorm over the whole width, eps 1e-6, before the head split),
  an output projection with bias, the ``hidden_act`` MLP. No final norm when ``use_mean_pooling`` (the config
  default); otherwise a LayerNorm (always a LayerNorm, whatever ``norm_type``) on the last layer's
  output, applied only when ``vision_feature_layer == -1`` (HF takes ``last_hidden_state`` then, and the
  pre-norm ``hidden_states[i]`` for any other index, where ``hidden_states[0]`` is the embeddings).
- ``vision_feature_select_strategy == "default"`` drops the CLS token (the only supported strategy: keeping it
  makes HF's square reshape fail or mix tokens);
- pixel shuffle (``InternVLModel.pixel_shuffle``) with ``r = 1 / downsample_ratio``: the same views and
  transposes as HF, so channel ``c`` of output token ``(i, j)`` is bit-for-bit the same input element;
- projector: LayerNorm (eps 1e-5, torch's default) -> Linear -> ``projector_hidden_act`` -> Linear;
- image features replace the embeddings of the ``image_token_id`` tokens in row-major order of ``input_ids``
  (``masked_scatter``): the ``tokens_per_image`` features of image 0 fill the first image tokens of the batch,
  then image 1, ...; so with ``k`` images per row, row ``b`` holds images ``b*k .. b*k+k-1`` (any other layout
  follows the same flat order, exactly as HF);
- Qwen2 decoder (``Qwen2Model``): token embedding, ``depth`` layers of RMSNorm -> grouped-query attention
  (q/k/v bias, no o bias, rotary on q and k) -> residual, RMSNorm -> SiLU-gated MLP -> residual; final RMSNorm;
  ``lm_head`` tied to the token embedding iff the *top-level* ``InternVLConfig.tie_word_embeddings`` (that is the
  flag transformers reads for ``InternVLForConditionalGeneration``; the text config's flag is ignored).
- positions: HF ``forward`` without ``position_ids`` uses ``arange(T)`` (plus the cache length) for every row,
  padding or not; `last_token_logits` does the same. ``generate`` instead uses ``cumsum(attention_mask) - 1``
  (0 on pads): pass ``position_ids=generate_position_ids(attention_mask)`` to get that. With contiguous padding
  (left or right) the two differ per row by a constant, to which rotary attention is invariant: the last logits
  agree to float32 rounding.
- attention mask: causal, and keys where ``attention_mask == 0`` are never attended to.
- the "last position" of a row is the last index where ``attention_mask == 1`` (``T - 1`` with left padding or
  no mask; the last real token with right padding).

Pieces for a shared-prefix KV cache: `InternVL.embed_images`, `InternVL.embed_tokens`, `InternVL.splice_images`
and `InternVL.decode` (input embeddings + positions + optional prefix `KVCache` -> last-position logits and, if
asked, the `KVCache` of the tokens it processed).

Weights are loaded with ``rewardax.models.internvl_checkpoints.load_vlm`` (the transformers ``state_dict`` ->
NNX parameter mapping lives there too, as CLIP's does in ``rewardax.models.clip_checkpoints``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from rewardax.models.layers import (ACTIVATIONS, Dense, LayerNorm, RMSNorm, attention, normal, scan_layers,
                                     square_size, unroll_count)
from rewardax.models.sharding import full

Array = jax.Array

_ACT = {**ACTIVATIONS, "silu": jax.nn.silu, "swish": jax.nn.silu}
_ROPE_TYPES = ("default", "linear", "dynamic")
"""``dynamic`` (NTK) rope is the default rope up to ``max_position_embeddings`` tokens (transformers rescales the
base only beyond it), so it is read as ``default`` with that limit (`Qwen2Spec.max_positions`)."""


# ----------------------------------------------------------------------------------------------------------------
# Architecture description
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InternViTSpec:
    """The InternViT image tower (HF ``InternVLVisionConfig``)."""

    image_size: int
    """Input resolution (square); no position-embedding interpolation."""
    patch_size: int
    """Patch size of the stride-``patch_size`` convolution."""
    width: int
    """Residual width (``hidden_size``)."""
    depth: int
    """Number of layers (``num_hidden_layers``)."""
    heads: int
    """Attention heads (``num_attention_heads``)."""
    mlp_dim: int
    """MLP hidden width (``intermediate_size``)."""
    act: str = "gelu"
    """MLP activation (``hidden_act``; ``gelu`` = exact erf GELU)."""
    norm_type: str = "layer_norm"
    """``layer_norm`` or ``rms_norm`` for the two norms of each layer."""
    eps: float = 1e-6
    """Epsilon of the per-layer norms and of the final LayerNorm (``layer_norm_eps``)."""
    attention_bias: bool = False
    """Bias on the q / k / v projections (the output projection always has one)."""
    qk_norm: bool = False
    """RMSNorm (eps 1e-6, over the whole width) on q and k (``use_qk_norm``)."""
    abs_pos: bool = True
    """Absolute position embeddings (``use_absolute_position_embeddings``)."""
    final_norm: bool = False
    """A LayerNorm on the last layer's output (``not use_mean_pooling``)."""
    num_channels: int = 3
    """Input channels."""
    layer_scale_init: float = 0.1
    """Initial ``lambda_1`` / ``lambda_2`` for randomly initialised models."""

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"vision hidden_size {self.width} is not divisible by num_attention_heads {self.heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if self.act not in _ACT:
            raise ValueError(f"unsupported vision hidden_act {self.act!r}; supported: {sorted(_ACT)}")
        if self.norm_type not in ("layer_norm", "rms_norm"):
            raise ValueError(f"unsupported vision norm_type {self.norm_type!r}; supported: layer_norm, rms_norm")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class Qwen2Spec:
    """The Qwen2 decoder (HF ``Qwen2Config``)."""

    vocab_size: int
    width: int
    """``hidden_size``."""
    depth: int
    """``num_hidden_layers``."""
    heads: int
    """``num_attention_heads``."""
    kv_heads: int
    """``num_key_value_heads`` (grouped-query attention; divides ``heads``)."""
    head_dim: int
    """``head_dim`` if the config has one, else ``hidden_size // num_attention_heads``."""
    mlp_dim: int
    """``intermediate_size``."""
    act: str = "silu"
    """Activation of the gate (``hidden_act``)."""
    eps: float = 1e-6
    """``rms_norm_eps``."""
    rope_theta: float = 10000.0
    """Rotary base (``rope_parameters['rope_theta']``)."""
    rope_type: str = "default"
    """``default`` or ``linear`` (inverse frequencies divided by ``rope_factor``)."""
    rope_factor: float = 1.0
    """``rope_parameters['factor']`` of ``linear`` rope."""
    max_positions: int = 32768
    """``max_position_embeddings``: the longest sequence the rotary positions are defined for here."""

    def __post_init__(self):
        if self.heads % self.kv_heads:
            raise ValueError(f"num_attention_heads {self.heads} is not divisible by num_key_value_heads "
                             f"{self.kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")
        if self.act not in _ACT:
            raise ValueError(f"unsupported text hidden_act {self.act!r}; supported: {sorted(_ACT)}")
        if self.rope_type not in _ROPE_TYPES:
            raise NotImplementedError(f"rope_type {self.rope_type!r} is not implemented; supported: "
                                      f"{', '.join(_ROPE_TYPES)}")

    def inv_freq(self) -> np.ndarray:
        """Rotary inverse frequencies ``[head_dim // 2]`` (float32, as transformers computes them)."""
        exponent = np.arange(0, self.head_dim, 2, dtype=np.float32) / np.float32(self.head_dim)
        inv = np.float32(1.0) / np.power(np.float32(self.rope_theta), exponent, dtype=np.float32)
        if self.rope_type == "linear":
            inv = inv / np.float32(self.rope_factor)
        return inv.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class InternVLSpec:
    """Everything needed to build an `InternVL` (a flat, hashable view of a transformers ``InternVLConfig``)."""

    vision: InternViTSpec
    text: Qwen2Spec
    image_token_id: int = 151667
    """Id of the image placeholder token (``<IMG_CONTEXT>``)."""
    downsample_ratio: float = 0.5
    """Pixel-shuffle ratio; ``1 / downsample_ratio`` must be an integer dividing the patch grid."""
    projector_act: str = "gelu"
    """Activation between the projector's two Linears (``projector_hidden_act``)."""
    vision_feature_layer: int = -1
    """Which vision hidden state feeds the projector: -1 = last layer (+ final norm if any); ``i`` >= 0 = after
    ``i`` layers (0 = the embeddings); other negative values count from ``depth + 1``."""
    tie_word_embeddings: bool = True
    """``lm_head`` is the token embedding (top-level ``InternVLConfig.tie_word_embeddings``)."""
    image_seq_length: int = 256
    """Image tokens per image the processor writes (informational; must equal `tokens_per_image` for HF too)."""

    def __post_init__(self):
        r = 1.0 / self.downsample_ratio
        if abs(r - round(r)) > 1e-9 or round(r) < 1:
            raise ValueError(f"downsample_ratio {self.downsample_ratio} is not 1/integer; only such ratios are "
                             "supported (InternVL uses 0.5)")
        if self.vision.grid % self.shuffle:
            raise ValueError(f"the {self.vision.grid}x{self.vision.grid} patch grid is not divisible by "
                             f"1/downsample_ratio = {self.shuffle}")
        if self.projector_act not in _ACT:
            raise ValueError(f"unsupported projector_hidden_act {self.projector_act!r}; supported: {sorted(_ACT)}")
        d = self.vision.depth
        if not -(d + 1) <= self.vision_feature_layer <= d:
            raise ValueError(f"vision_feature_layer {self.vision_feature_layer} is out of range for a {d}-layer "
                             "vision tower")

    @property
    def shuffle(self) -> int:
        """``1 / downsample_ratio``."""
        return int(round(1.0 / self.downsample_ratio))

    @property
    def tokens_per_image(self) -> int:
        return (self.vision.grid // self.shuffle) ** 2

    @property
    def vision_layers_run(self) -> int:
        """How many vision layers the selected feature needs."""
        d = self.vision.depth
        return d if self.vision_feature_layer == -1 else self.vision_feature_layer % (d + 1)

    @classmethod
    def from_hf_config(cls, config: Any) -> "InternVLSpec":
        """Reads a transformers ``InternVLConfig`` (object, or ``to_dict()`` / config.json dict). Raises
        ValueError (NotImplementedError for rope types) for settings this port does not implement."""
        if isinstance(config, Mapping):
            from transformers import InternVLConfig  # configuration classes need no torch

            config = InternVLConfig.from_dict(dict(config))
        v, t = config.vision_config, config.text_config
        if getattr(t, "model_type", None) != "qwen2":
            raise ValueError(f"only a Qwen2 text model is supported (the InternVL3 -hf checkpoints), got "
                             f"text_config.model_type={getattr(t, 'model_type', None)!r}")

        layer = config.vision_feature_layer
        if not isinstance(layer, int):
            raise ValueError(f"vision_feature_layer must be one int (HF indexes hidden_states with it), got {layer!r}")
        if config.vision_feature_select_strategy != "default":
            raise ValueError(f"vision_feature_select_strategy {config.vision_feature_select_strategy!r} is not "
                             "supported; only 'default' (drop the CLS token before the pixel shuffle)")
        types = set(getattr(t, "layer_types", None) or ["full_attention"])
        if types != {"full_attention"} or getattr(t, "use_sliding_window", False):
            raise ValueError(f"sliding-window attention is not supported (layer_types {sorted(types)}, "
                             f"use_sliding_window={getattr(t, 'use_sliding_window', False)})")

        rope = dict(getattr(t, "rope_parameters", None) or {})
        if rope and all(isinstance(x, Mapping) for x in rope.values()):
            raise NotImplementedError("per-layer-type rope_parameters are not implemented")
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in _ROPE_TYPES:
            raise NotImplementedError(f"rope_type {rope_type!r} is not implemented; supported: "
                                      f"{', '.join(_ROPE_TYPES)}")
        theta = rope.get("rope_theta", getattr(t, "rope_theta", None))
        theta = float(theta if theta is not None else 10000.0)
        factor = 1.0
        if rope_type == "dynamic":  # the default rope within max_position_embeddings (see _ROPE_TYPES)
            rope_type = "default"
        if rope_type == "linear":
            factor = float(rope["factor"])
            if float(rope.get("partial_rotary_factor", 1.0)) != 1.0:
                raise NotImplementedError("linear rope with partial_rotary_factor != 1 is not implemented")
        heads = int(t.num_attention_heads)
        head_dim = getattr(t, "head_dim", None) or int(t.hidden_size) // heads
        kv = t.num_key_value_heads if t.num_key_value_heads is not None else heads

        vision = InternViTSpec(
            image_size=square_size(v.image_size, "image_size"), patch_size=square_size(v.patch_size, "patch_size"),
            width=int(v.hidden_size), depth=int(v.num_hidden_layers), heads=int(v.num_attention_heads),
            mlp_dim=int(v.intermediate_size), act=str(v.hidden_act), norm_type=str(v.norm_type),
            eps=float(v.layer_norm_eps), attention_bias=bool(v.attention_bias), qk_norm=bool(v.use_qk_norm),
            abs_pos=bool(v.use_absolute_position_embeddings), final_norm=not bool(v.use_mean_pooling),
            num_channels=int(v.num_channels), layer_scale_init=float(v.layer_scale_init_value),
        )
        text = Qwen2Spec(
            vocab_size=int(t.vocab_size), width=int(t.hidden_size), depth=int(t.num_hidden_layers), heads=heads,
            kv_heads=int(kv), head_dim=int(head_dim), mlp_dim=int(t.intermediate_size), act=str(t.hidden_act),
            eps=float(t.rms_norm_eps), rope_theta=theta, rope_type=rope_type, rope_factor=factor,
            max_positions=int(getattr(t, "max_position_embeddings", 32768) or 32768),
        )
        return cls(
            vision=vision, text=text, image_token_id=int(config.image_token_id),
            downsample_ratio=float(config.downsample_ratio), projector_act=str(config.projector_hidden_act),
            vision_feature_layer=int(layer), tie_word_embeddings=bool(config.tie_word_embeddings),
            image_seq_length=int(config.image_seq_length),
        )


def as_spec(config: Any) -> InternVLSpec:
    """`InternVLSpec` from an `InternVLSpec`, a transformers ``InternVLConfig`` or its dict."""
    return config if isinstance(config, InternVLSpec) else InternVLSpec.from_hf_config(config)


# ----------------------------------------------------------------------------------------------------------------
# Vision tower
# ----------------------------------------------------------------------------------------------------------------


def _norm(kind: str, dim: int, eps: float, *, stack=(), param_dtype=jnp.float32):
    return (LayerNorm if kind == "layer_norm" else RMSNorm)(dim, eps, stack=stack, param_dtype=param_dtype)


class VisionLayer(nnx.Module):
    """``h + lambda_1 * attn(norm1(h))`` then ``h + lambda_2 * mlp(norm2(h))`` (HF ``InternVLVisionLayer``)."""

    def __init__(self, spec: InternViTSpec, *, stack=(), dtype_mm=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        d = spec.width
        kw = dict(stack=stack, dtype_mm=dtype_mm, param_dtype=param_dtype, rngs=rngs)
        self.norm1 = _norm(spec.norm_type, d, spec.eps, stack=stack, param_dtype=param_dtype)
        self.q = Dense(d, d, use_bias=spec.attention_bias, **kw)
        self.k = Dense(d, d, use_bias=spec.attention_bias, **kw)
        self.v = Dense(d, d, use_bias=spec.attention_bias, **kw)
        self.q_norm = RMSNorm(d, 1e-6, stack=stack, param_dtype=param_dtype) if spec.qk_norm else None
        self.k_norm = RMSNorm(d, 1e-6, stack=stack, param_dtype=param_dtype) if spec.qk_norm else None
        self.proj = Dense(d, d, **kw)
        self.lambda_1 = nnx.Param(jnp.full(stack + (d,), spec.layer_scale_init, param_dtype))
        self.norm2 = _norm(spec.norm_type, d, spec.eps, stack=stack, param_dtype=param_dtype)
        self.fc1 = Dense(d, spec.mlp_dim, **kw)
        self.fc2 = Dense(spec.mlp_dim, d, **kw)
        self.lambda_2 = nnx.Param(jnp.full(stack + (d,), spec.layer_scale_init, param_dtype))
        self.heads, self.act, self.dtype_mm = spec.heads, spec.act, dtype_mm

    def __call__(self, x: Array) -> Array:
        b, n, d = x.shape
        hd = d // self.heads
        y = self.norm1(x)
        q, k, v = self.q(y), self.k(y), self.v(y)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        o = attention(q.reshape(b, n, self.heads, 1, hd), k.reshape(b, n, self.heads, hd),
                      v.reshape(b, n, self.heads, hd), None, self.dtype_mm)
        x = x + full(self.lambda_1).astype(jnp.float32) * self.proj(o.reshape(b, n, d))
        y = self.fc2(_ACT[self.act](self.fc1(self.norm2(x))))
        return x + full(self.lambda_2).astype(jnp.float32) * y


class InternViT(nnx.Module):
    """Patch embedding, CLS token, position embeddings, the scanned layers, optional final LayerNorm."""

    def __init__(self, spec: InternViTSpec, *, dtype_mm=jnp.float32, param_dtype=jnp.float32, remat=False,
                 scan_unroll: int | bool = 1, rngs: nnx.Rngs):
        d, p, c = spec.width, spec.patch_size, spec.num_channels
        self.spec = spec
        self.patch_embed = Dense(c * p * p, d, dtype_mm=dtype_mm, param_dtype=param_dtype, rngs=rngs)
        self.cls_token = nnx.Param(normal(rngs, (d,), 0.02, param_dtype))
        self.pos_embed = (nnx.Param(normal(rngs, (spec.grid**2 + 1, d), 0.02, param_dtype))
                          if spec.abs_pos else None)
        self.layers = VisionLayer(spec, stack=(spec.depth,), dtype_mm=dtype_mm, param_dtype=param_dtype, rngs=rngs)
        self.final_norm = LayerNorm(d, spec.eps, param_dtype=param_dtype) if spec.final_norm else None
        self.remat, self.scan_unroll = remat, unroll_count(scan_unroll, spec.depth)

    def __call__(self, pixels: Array, *, layers: int | None = None, final_norm: bool = True) -> Array:
        """``[N, C, H, W]`` normalised pixels -> ``[N, 1 + grid^2, width]`` after ``layers`` layers (all by
        default), with the final LayerNorm (if the spec has one) when ``final_norm``."""
        s, p, c = self.spec.image_size, self.spec.patch_size, self.spec.num_channels
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (c, s, s):
            raise ValueError(f"the vision tower expects pixel_values [N, {c}, {s}, {s}] (NCHW, normalised), got "
                             f"{tuple(pixels.shape)}; position-embedding interpolation is not implemented")
        n, g = pixels.shape[0], s // p
        x = pixels.astype(jnp.float32).reshape(n, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5)
        x = self.patch_embed(x.reshape(n, g * g, c * p * p))
        cls = jnp.broadcast_to(full(self.cls_token).astype(jnp.float32), (n, 1, x.shape[-1]))
        x = jnp.concatenate([cls, x], axis=1)
        if self.pos_embed is not None:
            x = x + full(self.pos_embed).astype(jnp.float32)
        layers = self.spec.depth if layers is None else layers
        if layers:
            x, _ = scan_layers(self.layers, lambda layer, h, _: (layer(h), None), x, length=layers,
                               remat=self.remat, unroll=self.scan_unroll)
        if final_norm and self.final_norm is not None:
            x = self.final_norm(x)
        return x


def pixel_shuffle(x: Array, scale_factor: float) -> Array:
    """HF ``InternVLModel.pixel_shuffle`` on ``[N, S, S, C]``: the same row-major views and transposes, giving
    ``[N, S*f, S*f, C/f^2]``."""
    n, w, h, c = x.shape
    x = x.reshape(n, w, int(h * scale_factor), int(c / scale_factor))
    x = x.transpose(0, 2, 1, 3)
    x = x.reshape(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor**2)))
    return x.transpose(0, 2, 1, 3)


class Projector(nnx.Module):
    """LayerNorm (eps 1e-5) -> Linear -> act -> Linear (HF ``InternVLMultiModalProjector``)."""

    def __init__(self, din: int, dout: int, act: str, *, dtype_mm=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.norm = LayerNorm(din, 1e-5, param_dtype=param_dtype)
        self.fc1 = Dense(din, dout, dtype_mm=dtype_mm, param_dtype=param_dtype, rngs=rngs)
        self.fc2 = Dense(dout, dout, dtype_mm=dtype_mm, param_dtype=param_dtype, rngs=rngs)
        self.act = act

    def __call__(self, x: Array) -> Array:
        return self.fc2(_ACT[self.act](self.fc1(self.norm(x))))


# ----------------------------------------------------------------------------------------------------------------
# Qwen2 decoder
# ----------------------------------------------------------------------------------------------------------------


@struct.dataclass
class KVCache:
    """Keys (after rotary) and values of a run of tokens, per layer: ``k``, ``v`` ``[depth, B, S, kv_heads,
    head_dim]`` (in ``dtype_mm``), and ``mask`` ``[B, S]`` bool (False = padding, never attended to). As a prefix,
    ``B`` may be 1: it is then shared by every row of the suffix batch without being copied."""

    k: Array
    v: Array
    mask: Array

    @property
    def length(self) -> int:
        return self.k.shape[2]

    def concat(self, other: "KVCache") -> "KVCache":
        """This run followed by ``other`` (same batch size)."""
        return KVCache(jnp.concatenate([self.k, other.k], axis=2), jnp.concatenate([self.v, other.v], axis=2),
                       jnp.concatenate([self.mask, other.mask], axis=1))


def _rotate_half(x: Array) -> Array:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


class DecoderLayer(nnx.Module):
    """RMSNorm -> GQA self-attention -> residual, RMSNorm -> SiLU-gated MLP -> residual (``Qwen2DecoderLayer``)."""

    def __init__(self, spec: Qwen2Spec, *, stack=(), dtype_mm=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        d, hd = spec.width, spec.head_dim
        kw = dict(stack=stack, dtype_mm=dtype_mm, param_dtype=param_dtype, rngs=rngs)
        self.input_norm = RMSNorm(d, spec.eps, stack=stack, param_dtype=param_dtype)
        self.q = Dense(d, spec.heads * hd, **kw)
        self.k = Dense(d, spec.kv_heads * hd, **kw)
        self.v = Dense(d, spec.kv_heads * hd, **kw)
        self.o = Dense(spec.heads * hd, d, use_bias=False, **kw)
        self.post_norm = RMSNorm(d, spec.eps, stack=stack, param_dtype=param_dtype)
        self.gate = Dense(d, spec.mlp_dim, use_bias=False, **kw)
        self.up = Dense(d, spec.mlp_dim, use_bias=False, **kw)
        self.down = Dense(spec.mlp_dim, d, use_bias=False, **kw)
        self.heads, self.kv_heads, self.head_dim, self.act = spec.heads, spec.kv_heads, hd, spec.act
        self.dtype_mm = dtype_mm

    def __call__(self, x: Array, cos: Array, sin: Array, allowed: Array, prefix: tuple[Array, Array] | None):
        """``x [B, T, D]``; ``cos``/``sin`` ``[B, T, head_dim]``; ``allowed [B, T, P + T]`` (P = prefix length);
        ``prefix`` = this layer's ``(k, v)`` ``[Bp, P, KV, hd]`` or None. Returns ``(x, (k, v))`` of the T tokens."""
        b, t, _ = x.shape
        kv, hd = self.kv_heads, self.head_dim
        g = self.heads // kv
        y = self.input_norm(x)
        q = self.q(y).reshape(b, t, self.heads, hd)
        k = self.k(y).reshape(b, t, kv, hd)
        v = self.v(y).reshape(b, t, kv, hd)
        c, s = cos[:, :, None], sin[:, :, None]
        q = q * c + _rotate_half(q) * s
        k = (k * c + _rotate_half(k) * s).astype(self.dtype_mm)
        v = v.astype(self.dtype_mm)
        q = q.reshape(b, t, kv, g, hd).astype(self.dtype_mm)
        keys, values = k, v
        if prefix is not None:  # the shared prefix's keys and values first (one copy per row: [P, KV, hd] each)
            pk, pv = (jnp.broadcast_to(p, (b,) + p.shape[1:]).astype(self.dtype_mm) for p in prefix)
            keys, values = jnp.concatenate([pk, k], axis=1), jnp.concatenate([pv, v], axis=1)
        o = attention(q, keys, values, allowed[:, None, None], self.dtype_mm)
        x = x + self.o(o.reshape(b, t, self.heads * hd))
        y = self.post_norm(x)
        x = x + self.down(_ACT[self.act](self.gate(y)) * self.up(y))
        return x, (k, v)


class Qwen2(nnx.Module):
    """Token embedding, scanned decoder layers, final RMSNorm, ``lm_head`` (tied or not)."""

    def __init__(self, spec: Qwen2Spec, *, tie_word_embeddings: bool, dtype_mm=jnp.float32,
                 param_dtype=jnp.float32, remat=False, scan_unroll: int | bool = 1, rngs: nnx.Rngs):
        self.spec = spec
        self.embed = nnx.Param(normal(rngs, (spec.vocab_size, spec.width), 0.02, param_dtype))
        self.layers = DecoderLayer(spec, stack=(spec.depth,), dtype_mm=dtype_mm, param_dtype=param_dtype,
                                   rngs=rngs)
        self.norm = RMSNorm(spec.width, spec.eps, param_dtype=param_dtype)
        self.lm_head = (None if tie_word_embeddings else
                        Dense(spec.width, spec.vocab_size, use_bias=False, dtype_mm=dtype_mm,
                              param_dtype=param_dtype, rngs=rngs))
        self.dtype_mm, self.remat, self.scan_unroll = dtype_mm, remat, unroll_count(scan_unroll, spec.depth)

    def logits(self, hidden: Array) -> Array:
        """Final-normed hidden states ``[..., D]`` -> float32 logits ``[..., vocab]``."""
        if self.lm_head is not None:
            return self.lm_head(hidden)
        return jnp.matmul(hidden.astype(self.dtype_mm), full(self.embed).astype(self.dtype_mm).T,
                          preferred_element_type=jnp.float32)

    def __call__(self, x: Array, positions: Array, key_mask: Array, prefix: KVCache | None, last_index: Array,
                 return_kv: bool):
        b, t, _ = x.shape
        freqs = positions[..., None].astype(jnp.float32) * jnp.asarray(self.spec.inv_freq())
        emb = jnp.concatenate([freqs, freqs], axis=-1)
        cos, sin = jnp.cos(emb), jnp.sin(emb)
        causal = jnp.tril(jnp.ones((t, t), bool))
        allowed = causal[None] & key_mask[:, None, :]
        if prefix is not None:
            pmask = jnp.broadcast_to(prefix.mask.astype(bool)[:, None, :], (b, t, prefix.length))
            allowed = jnp.concatenate([pmask, allowed], axis=-1)

        def body(layer, h, pkv):
            h, kv = layer(h, cos, sin, allowed, pkv)
            return h, (kv if return_kv else None)

        xs = None if prefix is None else (prefix.k, prefix.v)
        x, kvs = scan_layers(self.layers, body, x, xs, remat=self.remat, unroll=self.scan_unroll)
        hidden = self.norm(x[jnp.arange(b), last_index])
        kv = KVCache(kvs[0], kvs[1], key_mask) if return_kv else None
        return hidden, kv


# ----------------------------------------------------------------------------------------------------------------
# InternVL
# ----------------------------------------------------------------------------------------------------------------


def last_token_index(attention_mask: Array | None, length: int) -> Array:
    """Index of the last position with ``attention_mask == 1`` per row (``length - 1`` when None)."""
    if attention_mask is None:
        return jnp.full((1,), length - 1, jnp.int32)
    m = jnp.asarray(attention_mask).astype(bool)
    return (length - 1 - jnp.argmax(m[:, ::-1], axis=1)).astype(jnp.int32)


def generate_position_ids(attention_mask: Array) -> Array:
    """Positions as transformers' ``generate`` makes them: ``cumsum(mask) - 1``, 0 on padding."""
    m = jnp.asarray(attention_mask).astype(jnp.int32)
    return jnp.where(m == 0, 0, jnp.cumsum(m, axis=-1) - 1)


class InternVL(nnx.Module):
    """InternVL vision tower + projector + Qwen2 decoder, computing the next-token logits at the last position.

    Args:
      config: a transformers ``InternVLConfig`` (or its dict, or an `InternVLSpec`).
      dtype_mm: dtype of matmul / attention inputs (``jnp.float32`` or ``jnp.bfloat16``).
      param_dtype: storage dtype of the parameters.
      remat: wrap each scanned layer (both towers) in ``jax.checkpoint``.
      scan_unroll: ``unroll`` of the layer scans (``True`` = fully unrolled).
      rngs: random initialisation (use ``nnx.eval_shape`` to build without initialising, as `build_internvl`).
    """

    def __init__(self, config: Any, *, dtype_mm=jnp.float32, param_dtype=jnp.float32, remat: bool = False,
                 scan_unroll: int | bool = 1, rngs: nnx.Rngs):
        self.spec = spec = as_spec(config)
        self.dtype_mm = dtype_mm
        kw = dict(dtype_mm=dtype_mm, param_dtype=param_dtype, remat=remat, scan_unroll=scan_unroll, rngs=rngs)
        self.vision = InternViT(spec.vision, **kw)
        self.projector = Projector(spec.vision.width * spec.shuffle**2, spec.text.width, spec.projector_act,
                                   dtype_mm=dtype_mm, param_dtype=param_dtype, rngs=rngs)
        self.text = Qwen2(spec.text, tie_word_embeddings=spec.tie_word_embeddings, **kw)

    # -- pieces --------------------------------------------------------------------------------------------------

    def embed_images(self, pixel_values: Array) -> Array:
        """``[N, C, H, W]`` normalised pixels (NCHW, as InternVLProcessor / GotOcr2ImageProcessor makes them) ->
        ``[N, tokens_per_image, text width]`` projected image features (HF ``get_image_features().pooler_output``).
        """
        spec = self.spec
        x = self.vision(pixel_values, layers=spec.vision_layers_run, final_norm=spec.vision_feature_layer == -1)
        x = x[:, 1:]  # vision_feature_select_strategy == "default"
        n, tokens, c = x.shape
        side = int(tokens**0.5)
        x = pixel_shuffle(x.reshape(n, side, side, c), spec.downsample_ratio)
        return self.projector(x.reshape(n, -1, x.shape[-1]))

    def embed_tokens(self, input_ids: Array) -> Array:
        """``[B, T]`` ids -> ``[B, T, width]`` float32 token embeddings."""
        return jnp.take(full(self.text.embed), jnp.asarray(input_ids), axis=0).astype(jnp.float32)

    def splice_images(self, embeds: Array, input_ids: Array, image_features: Array) -> Array:
        """Replaces the embeddings at ``input_ids == image_token_id`` by ``image_features`` (``[N, tokens, D]``,
        flattened in order) in row-major order of the batch, as HF's ``masked_scatter``. The number of image tokens
        must equal ``N * tokens`` (checked when ``input_ids`` is concrete; HF raises too)."""
        is_img = jnp.asarray(input_ids) == self.spec.image_token_id
        feats = image_features.reshape(-1, image_features.shape[-1]).astype(jnp.float32)
        self._check_image_tokens(input_ids, image_features.shape[0], image_features.shape[1])
        flat = is_img.reshape(-1)
        idx = jnp.clip(jnp.cumsum(flat.astype(jnp.int32)) - 1, 0, max(feats.shape[0] - 1, 0))
        spliced = jnp.where(flat[:, None], feats[idx], embeds.reshape(-1, embeds.shape[-1]))
        return spliced.reshape(embeds.shape)

    def _check_image_tokens(self, input_ids, n_images: int, tokens: int):
        if isinstance(input_ids, jax.core.Tracer):
            return
        count = int(np.sum(np.asarray(input_ids) == self.spec.image_token_id))
        if count != n_images * tokens:
            raise ValueError(f"image features and image tokens do not match: {count} image tokens (id "
                             f"{self.spec.image_token_id}) in input_ids, {n_images} images x {tokens} tokens = "
                             f"{n_images * tokens} features")

    def decode(self, inputs_embeds: Array, positions: Array | None = None, attention_mask: Array | None = None, *,
               prefix: KVCache | None = None, last_index: Array | None = None,
               return_kv: bool = False) -> dict[str, Any]:
        """Runs the decoder on ``inputs_embeds [B, T, D]`` after an optional ``prefix`` `KVCache`.

        Args:
          positions: ``[B, T]`` (or ``[T]``) rotary positions; default ``prefix.length + arange(T)`` (HF
            ``forward`` with ``past_key_values`` and no ``position_ids``).
          attention_mask: ``[B, T]`` 1 = token, 0 = padding (never attended to); default all ones.
          prefix: keys / values of earlier tokens (its batch is 1, shared, or B); attended to by every token
            here where ``prefix.mask`` is True.
          last_index: ``[B]`` which of the T positions to return; default the last where ``attention_mask == 1``.
          return_kv: also return the `KVCache` of these T tokens (``prefix.concat(kv)`` extends the prefix).

        Returns ``{"logits": [B, vocab] float32, "hidden": [B, D] (after the final norm), "kv": KVCache | None}``.
        """
        b, t, _ = inputs_embeds.shape
        if positions is None:
            start = 0 if prefix is None else prefix.length
            positions = start + jnp.arange(t, dtype=jnp.int32)
        positions = jnp.broadcast_to(jnp.asarray(positions), (b, t))
        key_mask = (jnp.ones((b, t), bool) if attention_mask is None
                    else jnp.broadcast_to(jnp.asarray(attention_mask).astype(bool), (b, t)))
        if last_index is None:
            last_index = last_token_index(attention_mask, t)
        last = jnp.broadcast_to(jnp.asarray(last_index, jnp.int32), (b,))
        if prefix is not None and prefix.k.shape[1] not in (1, b):
            raise ValueError(f"prefix batch {prefix.k.shape[1]} is neither 1 nor the batch size {b}")
        hidden, kv = self.text(inputs_embeds.astype(jnp.float32), positions, key_mask, prefix, last, return_kv)
        return {"logits": self.text.logits(hidden), "hidden": hidden, "kv": kv}

    # -- the whole model -----------------------------------------------------------------------------------------

    def last_token_logits(self, pixel_values: Array | None, input_ids: Array, attention_mask: Array | None = None,
                          position_ids: Array | None = None) -> Array:
        """Next-token logits ``[B, vocab]`` (float32) at each row's last position (the last index where
        ``attention_mask == 1``: ``T - 1`` for left padding), as HF
        ``InternVLForConditionalGeneration(input_ids, pixel_values, attention_mask).logits[b, last]``.

        ``pixel_values`` ``[N, C, H, W]`` normalised (or None: text only); ``input_ids [B, T]`` with the image
        tokens already expanded (``tokens_per_image`` per image, as InternVLProcessor writes them), images in
        row-major token order. ``position_ids`` default ``arange(T)`` as HF ``forward``
        (`generate_position_ids` for ``generate``'s)."""
        x = self.embed_tokens(input_ids)
        if pixel_values is not None:
            self._check_image_tokens(input_ids, pixel_values.shape[0], self.spec.tokens_per_image)
            x = self.splice_images(x, input_ids, self.embed_images(jnp.asarray(pixel_values)))
        return self.decode(x, position_ids, attention_mask)["logits"]
