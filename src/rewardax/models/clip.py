"""CLIP (ViT image tower + causal text tower) in Flax NNX, numerically matching transformers' `CLIPModel`.

Written in the big_vision manner:

- ``dtype_mm`` is the dtype of matmul / attention *inputs* (float32 or bfloat16). Matmuls accumulate in
  float32 (``preferred_element_type``); the residual stream, LayerNorm, softmax, activations and all outputs
  stay float32. Parameters are stored in ``param_dtype`` (float32 by default).
- The transformer layers of a tower are one module whose parameters carry a leading ``depth`` axis; the forward
  pass runs them with ``jax.lax.scan`` (one compiled layer body whatever the depth), optionally under
  ``jax.checkpoint`` (``remat=True``) to trade compute for activation memory when differentiating.
- ``encode_image`` / ``encode_text`` can return intermediates (pre-projection pooled output, the token sequence,
  every layer's output tokens).

Conventions, all as in transformers' PyTorch CLIP:

- images are channels-last ``[B, H, W, 3]`` float, already normalised (see ``rewardax.models.preprocess``);
  H = W = the config's ``image_size`` (no position-embedding interpolation);
- ``encode_image`` / ``encode_text`` return the *unnormalised* projection output (HF ``get_image_features`` /
  ``get_text_features``); ``__call__`` returns L2-normalised embeddings and logits scaled by ``exp(logit_scale)``;
- activation from the config's ``hidden_act``: ``quick_gelu`` is ``x * sigmoid(1.702 x)`` (OpenAI checkpoints);
  HF's ``gelu`` is the exact erf GELU (``torch.nn.functional.gelu`` default), which open_clip's ``nn.GELU`` also is
  (LAION checkpoints); ``gelu_new`` / ``gelu_pytorch_tanh`` / ``gelu_fast`` are the tanh approximation;
- text pooling: transformers' rule (``CLIPTextTransformer.forward``): a config whose ``eos_token_id`` is 2 (legacy
  configs written before transformers PR #24773) pools at ``argmax(input_ids)`` (the end-of-text token has the
  highest id in the CLIP vocabulary; this is also what open_clip and OpenAI's code do); any other ``eos_token_id``
  pools at the *first* position holding that id (pad may equal eos).

Build a model from a transformers ``CLIPConfig`` (or its ``to_dict()``, or a `CLIPSpec`). Weights are loaded with
``rewardax.models.clip_checkpoints.load_clip``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from rewardax.models.layers import ACTIVATIONS as _ACTIVATIONS
from rewardax.models.layers import Dense, LayerNorm, attention, scan_layers, square_size, unroll_count
from rewardax.models.layers import normal as _normal
from rewardax.models.sharding import full

Array = jax.Array


# ----------------------------------------------------------------------------------------------------------------
# Architecture description
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TowerSpec:
    """Hyper-parameters of one pre-LayerNorm transformer stack."""

    width: int
    """Residual stream width (HF ``hidden_size``)."""
    depth: int
    """Number of residual attention blocks (HF ``num_hidden_layers``)."""
    heads: int
    """Number of attention heads; ``width`` must be divisible by it."""
    mlp_dim: int
    """Hidden width of the MLP (HF ``intermediate_size``)."""
    act: str = "quick_gelu"
    """MLP activation, an HF ``hidden_act`` name (``quick_gelu``, ``gelu`` = exact erf GELU, ...)."""
    eps: float = 1e-5
    """LayerNorm epsilon."""

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.act not in _ACTIVATIONS:
            raise ValueError(f"unsupported activation {self.act!r}; supported: {sorted(_ACTIVATIONS)}")


@dataclasses.dataclass(frozen=True)
class CLIPSpec:
    """Everything needed to build a `CLIP` (a flat, hashable view of a transformers ``CLIPConfig``)."""

    embed_dim: int
    """Joint embedding size (HF ``projection_dim``)."""
    image_size: int
    """Input resolution (square) of the image tower."""
    patch_size: int
    """Patch size of the (non-overlapping) patch embedding."""
    vision: TowerSpec
    """Image transformer."""
    vocab_size: int
    """Text vocabulary size."""
    context_length: int
    """Number of text position embeddings (HF ``max_position_embeddings``, 77 for every released CLIP)."""
    text: TowerSpec
    """Text transformer."""
    text_pool: Literal["argmax", "first_eos"] = "first_eos"
    """Where the text tower pools: ``argmax`` of the token ids, or the first occurrence of ``eos_token_id``."""
    eos_token_id: int = 49407
    """End-of-text token id (used by ``text_pool='first_eos'``)."""
    logit_scale_init: float = 2.6592
    """Initial value of ``logit_scale`` (log of the logit temperature) for randomly initialised models."""

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_hf_config(cls, config: Any) -> "CLIPSpec":
        """Reads a transformers ``CLIPConfig`` (object, or ``to_dict()`` / config.json dict)."""
        if isinstance(config, dict):
            from transformers import CLIPConfig  # configuration classes need no torch

            config = CLIPConfig.from_dict(config)
        v, t = config.vision_config, config.text_config

        eos = t.eos_token_id
        if isinstance(eos, (list, tuple)):
            eos = eos[0]
        eos = int(eos) if eos is not None else 2
        return cls(
            embed_dim=int(config.projection_dim),
            image_size=square_size(v.image_size, "image_size"),
            patch_size=square_size(v.patch_size, "patch_size"),
            vision=TowerSpec(
                width=v.hidden_size, depth=v.num_hidden_layers, heads=v.num_attention_heads,
                mlp_dim=v.intermediate_size, act=v.hidden_act, eps=float(v.layer_norm_eps),
            ),
            vocab_size=int(t.vocab_size),
            context_length=int(t.max_position_embeddings),
            text=TowerSpec(
                width=t.hidden_size, depth=t.num_hidden_layers, heads=t.num_attention_heads,
                mlp_dim=t.intermediate_size, act=t.hidden_act, eps=float(t.layer_norm_eps),
            ),
            # transformers' CLIPTextTransformer: eos_token_id == 2 is the legacy (pre PR #24773) config -> argmax.
            text_pool="argmax" if eos == 2 else "first_eos",
            eos_token_id=eos,
            logit_scale_init=float(config.logit_scale_init_value),
        )


def as_spec(config: Any) -> CLIPSpec:
    """`CLIPSpec` from a `CLIPSpec`, a transformers ``CLIPConfig`` or its dict."""
    return config if isinstance(config, CLIPSpec) else CLIPSpec.from_hf_config(config)


# ----------------------------------------------------------------------------------------------------------------
# Layers (LayerNorm, Dense: rewardax.models.layers)
# ----------------------------------------------------------------------------------------------------------------


class ResidualAttentionBlock(nnx.Module):
    """Pre-LN block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``. Fused q/k/v kernel ``[D, 3D]`` (q, k, v)."""

    def __init__(self, spec: TowerSpec, *, stack: tuple[int, ...] = (), dtype_mm=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        d = spec.width
        kw = dict(stack=stack, dtype_mm=dtype_mm, param_dtype=param_dtype, rngs=rngs)
        std = d**-0.5 * (2 * spec.depth) ** -0.5
        self.ln_1 = LayerNorm(d, spec.eps, stack=stack, param_dtype=param_dtype)
        self.qkv = Dense(d, 3 * d, std=std, **kw)
        self.out = Dense(d, d, std=d**-0.5, **kw)
        self.ln_2 = LayerNorm(d, spec.eps, stack=stack, param_dtype=param_dtype)
        self.fc1 = Dense(d, spec.mlp_dim, std=(2 * d) ** -0.5, **kw)
        self.fc2 = Dense(spec.mlp_dim, d, std=std, **kw)
        self.heads = spec.heads
        self.act = spec.act
        self.dtype_mm = dtype_mm

    def attention(self, x: Array, mask: Array | None) -> Array:
        b, n, d = x.shape
        hd = d // self.heads
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, hd)
        q, k, v = (qkv[:, :, i] for i in range(3))
        allowed = None if mask is None else mask[:, :, None]  # boolean [B, H, N, N] -> [B, H, 1, N, N]
        o = attention(q[:, :, :, None], k, v, allowed, self.dtype_mm)
        return self.out(o.reshape(b, n, d))

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        x = x + self.attention(self.ln_1(x), mask)
        return x + self.fc2(_ACTIVATIONS[self.act](self.fc1(self.ln_2(x))))


class Encoder(nnx.Module):
    """``depth`` residual blocks with stacked parameters, run by ``jax.lax.scan`` (one compiled layer body)."""

    def __init__(self, spec: TowerSpec, *, dtype_mm=jnp.float32, param_dtype=jnp.float32, remat: bool = False,
                 scan_unroll: int | bool = 1, rngs: nnx.Rngs):
        self.blocks = ResidualAttentionBlock(spec, stack=(spec.depth,), dtype_mm=dtype_mm,
                                             param_dtype=param_dtype, rngs=rngs)
        self.remat = remat
        self.scan_unroll = unroll_count(scan_unroll, spec.depth)

    def __call__(self, x: Array, mask: Array | None = None, *, return_all: bool = False):
        """Returns ``(tokens, per_layer)``; ``per_layer`` is ``[depth, B, N, D]`` if ``return_all`` else None."""

        def body(block, h, _):
            h = block(h, mask)
            return h, (h if return_all else None)

        return scan_layers(self.blocks, body, x, remat=self.remat, unroll=self.scan_unroll)


# ----------------------------------------------------------------------------------------------------------------
# Towers
# ----------------------------------------------------------------------------------------------------------------


class VisionTower(nnx.Module):
    """ViT: patch embedding (as a matmul on flattened ``(ph, pw, c)`` patches), class token, position
    embeddings, pre-LN, transformer, post-LN on the class token, bias-free projection."""

    def __init__(self, spec: CLIPSpec, *, dtype_mm=jnp.float32, param_dtype=jnp.float32, remat=False,
                 scan_unroll: int | bool = 1, rngs: nnx.Rngs):
        t, p = spec.vision, spec.patch_size
        self.image_size, self.patch_size = spec.image_size, p
        self.patch_embed = Dense(p * p * 3, t.width, use_bias=False, std=0.02, dtype_mm=dtype_mm,
                                 param_dtype=param_dtype, rngs=rngs)
        self.class_embedding = nnx.Param(_normal(rngs, (t.width,), t.width**-0.5, param_dtype))
        self.pos_embedding = nnx.Param(_normal(rngs, (spec.num_patches + 1, t.width), 0.02, param_dtype))
        self.ln_pre = LayerNorm(t.width, t.eps, param_dtype=param_dtype)
        self.encoder = Encoder(t, dtype_mm=dtype_mm, param_dtype=param_dtype, remat=remat,
                               scan_unroll=scan_unroll, rngs=rngs)
        self.ln_post = LayerNorm(t.width, t.eps, param_dtype=param_dtype)
        self.proj = Dense(t.width, spec.embed_dim, use_bias=False, std=t.width**-0.5, dtype_mm=dtype_mm,
                          param_dtype=param_dtype, rngs=rngs)

    def __call__(self, pixels: Array, *, return_intermediates: bool = False):
        b, h, w, c = pixels.shape
        s, p = self.image_size, self.patch_size
        if (h, w, c) != (s, s, 3):
            raise ValueError(f"image tower expects [B, {s}, {s}, 3] normalised pixels, got {pixels.shape}; "
                             "use rewardax.models.preprocess to resize frames")
        g = s // p
        x = pixels.reshape(b, g, p, g, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, g * g, p * p * c)
        x = self.patch_embed(x)
        cls = jnp.broadcast_to(full(self.class_embedding).astype(jnp.float32), (b, 1, x.shape[-1]))
        x = jnp.concatenate([cls, x], axis=1) + full(self.pos_embedding).astype(jnp.float32)
        x = self.ln_pre(x)
        x, per_layer = self.encoder(x, None, return_all=return_intermediates)
        pooled = self.ln_post(x[:, 0])
        embeds = self.proj(pooled)
        if not return_intermediates:
            return embeds
        return embeds, {"pooled": pooled, "last_hidden_state": x, "per_layer": per_layer}


class TextTower(nnx.Module):
    """Token + position embeddings, causal transformer, final LN, pooling at the end-of-text token, projection."""

    def __init__(self, spec: CLIPSpec, *, dtype_mm=jnp.float32, param_dtype=jnp.float32, remat=False,
                 scan_unroll: int | bool = 1, rngs: nnx.Rngs):
        t = spec.text
        self.token_embedding = nnx.Param(_normal(rngs, (spec.vocab_size, t.width), 0.02, param_dtype))
        self.pos_embedding = nnx.Param(_normal(rngs, (spec.context_length, t.width), 0.01, param_dtype))
        self.encoder = Encoder(t, dtype_mm=dtype_mm, param_dtype=param_dtype, remat=remat,
                               scan_unroll=scan_unroll, rngs=rngs)
        self.ln_final = LayerNorm(t.width, t.eps, param_dtype=param_dtype)
        self.proj = Dense(t.width, spec.embed_dim, use_bias=False, std=t.width**-0.5, dtype_mm=dtype_mm,
                          param_dtype=param_dtype, rngs=rngs)
        self.text_pool = spec.text_pool
        self.eos_token_id = spec.eos_token_id
        self.context_length = spec.context_length

    def __call__(self, input_ids: Array, attention_mask: Array | None = None, *,
                 return_intermediates: bool = False):
        b, n = input_ids.shape
        if n > self.context_length:
            raise ValueError(f"text length {n} exceeds the model's context length {self.context_length}")
        x = jnp.take(full(self.token_embedding), input_ids, axis=0).astype(jnp.float32)
        x = x + full(self.pos_embedding)[:n].astype(jnp.float32)
        mask = jnp.tril(jnp.ones((n, n), bool))[None, None]
        if attention_mask is not None:  # padding mask on the keys, as transformers does
            mask = mask & attention_mask.astype(bool)[:, None, None, :]
        x, per_layer = self.encoder(x, mask, return_all=return_intermediates)
        x = self.ln_final(x)
        if self.text_pool == "argmax":
            idx = jnp.argmax(input_ids, axis=-1)
        else:
            idx = jnp.argmax((input_ids == self.eos_token_id).astype(jnp.int32), axis=-1)
        pooled = x[jnp.arange(b), idx]
        embeds = self.proj(pooled)
        if not return_intermediates:
            return embeds
        return embeds, {"pooled": pooled, "last_hidden_state": x, "per_layer": per_layer, "pool_index": idx}


# ----------------------------------------------------------------------------------------------------------------
# CLIP
# ----------------------------------------------------------------------------------------------------------------


class CLIP(nnx.Module):
    """CLIP image + text towers and ``logit_scale``.

    Args:
      config: a transformers ``CLIPConfig`` (or its dict, or a `CLIPSpec`).
      dtype_mm: dtype of matmul / attention inputs (``jnp.float32`` or ``jnp.bfloat16``).
      param_dtype: storage dtype of the parameters.
      remat: wrap each scanned layer in ``jax.checkpoint``.
      scan_unroll: ``unroll`` of the layer scan (``True`` = fully unrolled: longer compile; XLA's cost analysis
        counts a scan body once, so FLOP counts need the unrolled form).
      rngs: random initialisation (use ``nnx.eval_shape`` to build without initialising, as the loader does).
    """

    def __init__(self, config: Any, *, dtype_mm=jnp.float32, param_dtype=jnp.float32, remat: bool = False,
                 scan_unroll: int | bool = 1, rngs: nnx.Rngs):
        self.spec = as_spec(config)
        self.dtype_mm = dtype_mm
        kw = dict(dtype_mm=dtype_mm, param_dtype=param_dtype, remat=remat, scan_unroll=scan_unroll, rngs=rngs)
        self.vision = VisionTower(self.spec, **kw)
        self.text = TextTower(self.spec, **kw)
        self.logit_scale = nnx.Param(jnp.asarray(self.spec.logit_scale_init, jnp.float32))

    def encode_image(self, pixels: Array, *, return_intermediates: bool = False):
        """``[B, H, W, 3]`` normalised pixels -> ``[B, embed_dim]`` unnormalised image embeddings (HF
        ``get_image_features``). With ``return_intermediates`` returns ``(embeds, dict)``: ``pooled`` (post-LN
        class token before the projection, HF ``pooler_output``), ``last_hidden_state`` ``[B, N+1, D]`` (before
        ``ln_post``, as HF) and ``per_layer`` ``[depth, B, N+1, D]`` (each block's output; HF ``hidden_states[1:]``).
        """
        return self.vision(pixels, return_intermediates=return_intermediates)

    def encode_text(self, input_ids: Array, attention_mask: Array | None = None, *,
                    return_intermediates: bool = False):
        """``[B, L]`` token ids (L <= context length; pad after the end-of-text token) -> ``[B, embed_dim]``
        unnormalised text embeddings (HF ``get_text_features``). ``attention_mask`` (1 = token, 0 = pad) is
        optional: it does not change the pooled output. Intermediates as `encode_image` (``last_hidden_state``
        after ``ln_final``, as HF) plus ``pool_index``."""
        return self.text(input_ids, attention_mask, return_intermediates=return_intermediates)

    def logits(self, image_embeds: Array, text_embeds: Array) -> Array:
        """``[Bi, Bt]`` logits ``exp(logit_scale) * cos(image, text)`` from (unnormalised) embeddings."""
        i = l2_normalize(image_embeds)
        t = l2_normalize(text_embeds)
        return jnp.exp(full(self.logit_scale).astype(jnp.float32)) * (i @ t.T)

    def __call__(self, pixels: Array, input_ids: Array, attention_mask: Array | None = None) -> dict[str, Array]:
        """Like HF ``CLIPModel.forward``: ``logits_per_image [Bi, Bt]``, ``logits_per_text [Bt, Bi]`` and the
        L2-normalised ``image_embeds`` / ``text_embeds``."""
        image = self.encode_image(pixels)
        text = self.encode_text(input_ids, attention_mask)
        logits = self.logits(image, text)
        return {"logits_per_image": logits, "logits_per_text": logits.T,
                "image_embeds": l2_normalize(image), "text_embeds": l2_normalize(text)}


def l2_normalize(x: Array, axis: int = -1) -> Array:
    """``x / ||x||`` along ``axis`` (float32)."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
