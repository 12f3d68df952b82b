"""Generic Flax NNX layers shared by the model ports (CLIP, InternVL), in the big_vision manner.

- ``dtype_mm`` is the dtype of matmul *inputs*; matmuls accumulate in float32 (``preferred_element_type``) and
  return float32. Norms are computed in float32 whatever the input dtype.
- ``stack`` adds leading axes to every parameter, so that one module instance holds the parameters of ``depth``
  layers, run by ``jax.lax.scan`` (see `scan_layers`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

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
        return y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)


class RMSNorm(nnx.Module):
    """RMSNorm ``x * rsqrt(mean(x^2) + eps) * scale`` in float32 (transformers' ``LlamaRMSNorm`` family)."""

    def __init__(self, dim: int, eps: float, *, stack: tuple[int, ...] = (), param_dtype=jnp.float32):
        self.scale = nnx.Param(jnp.ones(stack + (dim,), param_dtype))
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        x = x.astype(jnp.float32)
        y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)
        return y * self.scale[...].astype(jnp.float32)


class Dense(nnx.Module):
    """``x @ kernel (+ bias)`` with inputs cast to ``dtype_mm`` and float32 accumulation / output."""

    def __init__(self, din: int, dout: int, *, use_bias: bool = True, std: float = 0.02,
                 stack: tuple[int, ...] = (), dtype_mm=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.kernel = nnx.Param(normal(rngs, stack + (din, dout), std, param_dtype))
        self.bias = nnx.Param(jnp.zeros(stack + (dout,), param_dtype)) if use_bias else None
        self.dtype_mm = dtype_mm

    def __call__(self, x: Array) -> Array:
        y = jnp.matmul(x.astype(self.dtype_mm), self.kernel[...].astype(self.dtype_mm),
                       preferred_element_type=jnp.float32)
        if self.bias is not None:
            y = y + self.bias[...].astype(jnp.float32)
        return y


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
