"""Generic Flax NNX layers shared by the model ports (CLIP, InternVL), in the big_vision manner.

- ``dtype_mm`` is the dtype of matmul *inputs*; matmuls accumulate in float32 (``preferred_element_type``) and
  return float32. Norms are computed in float32 whatever the input dtype.
- ``stack`` adds leading axes to every parameter, so that one module instance holds the parameters of ``depth``
  layers, run by ``jax.lax.scan`` (see `scan_layers`).
- every parameter is read through `rewardax.models.sharding.full`: ``var[...]``, or the weight all-gathered over
  the ``model`` mesh axis inside `rewardax.models.sharding.model_axis` (fully-sharded reward models; inside
  `scan_layers`' body, so one layer at a time).

Also the small helpers both ports share: `square_size` (reading a transformers config) and `count_params`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rewardax.models.sharding import full
from rewardax.platform import target_platform

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_python": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}
"""transformers ``hidden_act`` names -> functions (``gelu`` is the exact erf GELU, as ``torch.nn.functional.gelu``)."""


_LOOP_ON_CPU = contextvars.ContextVar("loop_attention_on_cpu", default=True)


@contextlib.contextmanager
def vectorised_attention():
    """Functions traced inside are given `attention`'s vectorised form on CPU too: XLA's cost analysis counts a
    loop's body once, so FLOP counts must be taken of this form (trace a fresh function: jit caches traces)."""
    token = _LOOP_ON_CPU.set(False)
    try:
        yield
    finally:
        _LOOP_ON_CPU.reset(token)


def attention(q: Array, k: Array, v: Array, allowed: Array | None, dtype_mm) -> Array:
    """Softmax attention, grouped-query: ``q [B, T, KV, G, hd]`` (query head ``h = kv · G + g``), ``k``/``v``
    ``[B, S, KV, hd]``, ``allowed`` boolean broadcastable to ``[B, KV, G, T, S]`` (True = may attend) or None.
    Logits and softmax in float32; returns ``[B, T, KV, G, hd]`` float32.

    Computed one (row, kv head) at a time: ``vmap`` on accelerators, a loop (``lax.map``) on CPU, where a
    [G·T, S] block of logits stays in cache while all of them at once (a ViT-L layer: 2 × 16 × 1025² floats per
    pair of frames) go through memory: 2.2× faster there (InternViT's attention, 338 → 150 ms for two frames). The
    softmax is normalised after the value matmul (one division per output instead of per logit). For FLOP
    counts, see `vectorised_attention`.
    """
    b, t, kv, g, hd = q.shape
    s = k.shape[1]
    rows = lambda x: x.reshape(b * kv, *x.shape[2:])  # noqa: E731
    qs = rows(q.transpose(0, 2, 3, 1, 4).reshape(b, kv, g * t, hd))
    ks, vs = (rows(x.transpose(0, 2, 1, 3)) for x in (k, v))
    masks = None if allowed is None else rows(jnp.broadcast_to(allowed, (b, kv, g, t, s)).reshape(b, kv, g * t, s))

    def one(args):
        q, k, v, mask = args
        logits = jnp.einsum("td,sd->ts", q.astype(dtype_mm), k.astype(dtype_mm),
                            preferred_element_type=jnp.float32) * (hd**-0.5)
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        weights = jnp.exp(logits - logits.max(axis=-1, keepdims=True))
        out = jnp.einsum("ts,sd->td", weights.astype(dtype_mm), v.astype(dtype_mm), preferred_element_type=jnp.float32)
        return out / weights.sum(axis=-1, keepdims=True)

    xs = (qs, ks, vs, masks)
    out = jax.lax.map(one, xs) if target_platform() == "cpu" and _LOOP_ON_CPU.get() else jax.vmap(one)(xs)
    return out.reshape(b, kv, g, t, hd).transpose(0, 3, 1, 2, 4)


def normal(rngs: nnx.Rngs, shape, std, dtype):
    """``std * N(0, 1)`` drawn in float32, stored in ``dtype``."""
    return jax.random.normal(rngs.params(), shape, jnp.float32).astype(dtype) * jnp.asarray(std, dtype)


class LayerNorm(nnx.Module):
    """LayerNorm computed in float32 (``stack`` adds leading axes to the parameters for scanned layers)."""

    def __init__(self, dim: int, eps: float, *, stack: tuple[int, ...] = (), param_dtype=jnp.float32):
        self.scale = nnx.Param(jnp.ones(stack + (dim,), param_dtype))
        self.bias = nnx.Param(jnp.zeros(stack + (dim,), param_dtype))
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        x = x.astype(jnp.float32)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        return y * full(self.scale).astype(jnp.float32) + full(self.bias).astype(jnp.float32)


class RMSNorm(nnx.Module):
    """RMSNorm ``x * rsqrt(mean(x^2) + eps) * scale`` in float32 (transformers' ``LlamaRMSNorm`` family)."""

    def __init__(self, dim: int, eps: float, *, stack: tuple[int, ...] = (), param_dtype=jnp.float32):
        self.scale = nnx.Param(jnp.ones(stack + (dim,), param_dtype))
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        x = x.astype(jnp.float32)
        y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)
        return y * full(self.scale).astype(jnp.float32)


class Dense(nnx.Module):
    """``x @ kernel (+ bias)`` with inputs cast to ``dtype_mm`` and float32 accumulation / output; with LoRA
    adapters (`add_lora`) plus ``scale · (x @ lora_a) @ lora_b``.

    The adapters are `nnx.LoRAParam`s with the kernel's stacked leading axes (the layers are stacked and run by
    `scan_layers`, so ``nnx.LoRALinear`` does not fit): ``nnx.split(model, nnx.LoRAParam, ...)`` selects them.
    ``lora_b`` starts at zero, so a model with fresh adapters computes exactly what it did without them."""

    def __init__(self, din: int, dout: int, *, use_bias: bool = True, std: float = 0.02,
                 stack: tuple[int, ...] = (), dtype_mm=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.kernel = nnx.Param(normal(rngs, stack + (din, dout), std, param_dtype))
        self.bias = nnx.Param(jnp.zeros(stack + (dout,), param_dtype)) if use_bias else None
        self.dtype_mm = dtype_mm
        self.lora_a = self.lora_b = None
        self.lora_scale = 0.0

    def add_lora(self, rank: int, alpha: float, rngs: nnx.Rngs) -> None:
        """Rank-``rank`` adapters (float32) scaled by ``alpha / rank``: A ~ N(0, 1/din), B = 0."""
        *stack, din, dout = self.kernel.shape
        # nnx.data: the attributes were None (static) until now
        self.lora_a = nnx.data(nnx.LoRAParam(normal(rngs, (*stack, din, rank), din**-0.5, jnp.float32)))
        self.lora_b = nnx.data(nnx.LoRAParam(jnp.zeros((*stack, rank, dout), jnp.float32)))
        self.lora_scale = alpha / rank

    def __call__(self, x: Array) -> Array:
        x = x.astype(self.dtype_mm)
        y = jnp.matmul(x, full(self.kernel).astype(self.dtype_mm), preferred_element_type=jnp.float32)
        if self.bias is not None:
            y = y + full(self.bias).astype(jnp.float32)
        if self.lora_a is not None:
            low = jnp.matmul(x, full(self.lora_a).astype(self.dtype_mm), preferred_element_type=jnp.float32)
            y = y + self.lora_scale * jnp.matmul(low.astype(self.dtype_mm), full(self.lora_b).astype(self.dtype_mm),
                                                 preferred_element_type=jnp.float32)
        return y


def add_lora(module: nnx.Module, targets: tuple[str, ...], rank: int, alpha: float | None = None, *,
             rngs: nnx.Rngs) -> int:
    """Puts LoRA adapters on every `Dense` inside ``module`` whose attribute name is in ``targets`` (e.g. a
    decoder's ``("q", "k", "v", "o")``); returns how many. ``alpha`` defaults to ``rank`` (scale 1)."""
    if rank < 1:
        raise ValueError(f"a LoRA rank must be a positive integer, got {rank!r}")
    count = 0
    for path, child in nnx.iter_modules(module):
        if isinstance(child, Dense) and path and path[-1] in targets:
            child.add_lora(rank, float(alpha or rank), rngs)
            count += 1
    if not count:
        raise ValueError(f"no Dense layer named {', '.join(targets)} in {type(module).__name__}: LoRA targets "
                         f"are the attribute names of its projections")
    return count


def unroll_count(unroll: int | bool, depth: int) -> int:
    """A layer scan's ``unroll`` as an int (``True``: all ``depth`` layers). Modules store this int: nnx compares
    static attributes with ``==``, and ``True == 1``, so a module storing ``True`` could reuse a compilation made
    for ``1``."""
    return max(depth, 1) if unroll is True else max(int(unroll), 1)


def scan_layers(layers: nnx.Module, body: Callable[[nnx.Module, Any, Any], tuple[Any, Any]], carry, xs=None, *,
                length: int | None = None, remat: bool = False, unroll: int | bool = 1):
    """Runs ``body(layer, carry, x) -> (carry, y)`` over the leading (stacked) axis of ``layers``' state with
    ``jax.lax.scan``: one compiled layer body whatever the depth; ``jax.checkpoint`` around it if ``remat``.
    ``length`` runs only the first ``length`` layers. Returns ``(carry, ys)``."""
    graphdef, state = nnx.split(layers)
    if length is not None:
        state = jax.tree.map(lambda a: a[:length], state)

    def step(c, inputs):
        layer_state, x = inputs
        return body(nnx.merge(graphdef, layer_state), c, x)

    if remat:
        step = jax.checkpoint(step)
    return jax.lax.scan(step, carry, (state, xs), unroll=unroll)


def square_size(value, name: str) -> int:
    """A transformers config's ``image_size`` / ``patch_size`` (an int, or a list of equal ints) as one int; a
    non-square value raises ValueError naming ``name``."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"only square {name} is supported, got {list(value)}")
        value = value[0]
    return int(value)


def count_params(model: nnx.Module) -> int:
    """Number of parameters of a model (or abstract model)."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
