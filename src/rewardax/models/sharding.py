"""Fully-sharded data parallel (FSDP) for the reward models over a ``model`` mesh axis.

Why: a reward model may be larger than one chip holds (InternVL3-8B is 16 GB in bfloat16, 64 GB and more with
Adam). So each weight matrix is split over the devices of a ``model`` axis and all-gathered *at use*: every
parameter read in `rewardax.models` goes through `full`, and the stacked layers are read inside `scan_layers`'
body, so a layer's weights are gathered when that layer runs and freed after it (under ``jax.checkpoint`` with
``remat``, the backward pass gathers again instead of keeping every gathered layer). Gradients need no extra code:
the transpose of ``all_gather`` is ``psum_scatter``, so the gradient of a gathered weight arrives already summed
over ``model`` and split like the weight (ZeRO-3).

- `shard_params` marks every `nnx.Variable` of a tree with the metadata `MODEL_DIM` (which dim is split, or None);
  the mark lives in the Variable, so it follows the tree through ``nnx.split`` / ``nnx.merge``, slicing with
  ``jax.tree.map``, gradients and optax states (Adam's ``mu`` / ``nu`` are Variables too). `shard_model` does
  the same for a ``(graphdef, state)`` pair.
- `specs` turns the marks into ``PartitionSpec``s (``shard_map`` in/out specs, ``NamedSharding``s).
- `model_axis` (a context manager around a ``shard_map`` body) makes `full` gather; without it `full(var)` is
  ``var[...]``: models outside it compute exactly what they did before.
- `model_norm` is the global L2 norm of a tree some of whose leaves are sharded.

Imports only jax / flax / numpy (models/layers.py imports this module).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

MODEL_DIM = "model_dim"
"""`nnx.Variable` metadata key: the split dim as a **negative** index (valid for a stacked ``[L, ...]`` array and
for its per-layer slice alike), or None (replicated)."""

STACKED = ("layers", "blocks")
"""Attribute names of the modules whose parameters carry a leading stacked layer axis (the modules `scan_layers`
runs: InternViT's and Qwen2's ``layers``, CLIP's ``Encoder.blocks``). A path element with one of these names adds
one stacked axis, which is never split; not when the next element is an index (an ``nnx.List`` of layers)."""

_MODEL_AXIS: contextvars.ContextVar[str | None] = contextvars.ContextVar("rewardax_model_axis", default=None)


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def _key_name(entry) -> Any:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return entry


def _stacked_axes(path) -> int:
    names = [_key_name(e) for e in path]
    return sum(1 for i, n in enumerate(names)
               if n in STACKED and not (i + 1 < len(names) and isinstance(names[i + 1], (int, np.integer))))


def split_dim(shape: tuple[int, ...], size: int, stacked: int = 0) -> int | None:
    """The rule of `shard_params` for one array: the (negative) dim to split ``size`` ways, or None.

    ``stacked`` leading axes are layer axes: never split and not counted. A per-layer shape with fewer than two
    dims larger than 1 (a vector, a scalar, ``[1, 1, D]``) is replicated; a matrix (per-layer ndim >= 2) is split on
    its last dim if ``size`` divides it, else on the one before if ``size`` divides that, else replicated."""
    per_layer = tuple(shape[stacked:])
    if size <= 1 or sum(1 for d in per_layer if d != 1) < 2:
        return None
    for dim in (-1, -2):
        if per_layer[dim] % size == 0:
            return dim
    return None


def shard_params(tree, size: int):
    """``tree`` with every `nnx.Variable` marked for a ``size``-way ``model`` axis (metadata `MODEL_DIM`, see
    `split_dim`); other leaves untouched. Works on an ``nnx.State`` (of arrays or of ``ShapeDtypeStruct``s from
    ``nnx.eval_shape``), on a pytree holding States (a reward) and on optax states holding Variables.

    ``size == 1`` removes the marks: the tree is then exactly an unsharded one (same treedef: the metadata is part
    of it, so jit caches, checkpoints and ``jax.tree.map`` against unmarked trees see no difference). ``size > 1``
    marks every Variable (None = replicated)."""
    if size < 1:
        raise ValueError(f"the model axis size must be a positive integer, got {size!r}")

    def mark(path, var):
        if not _is_variable(var):
            return var
        if size == 1:
            new = var.replace()
            if MODEL_DIM in new.get_metadata():
                new.del_metadata(MODEL_DIM)
            return new
        return var.replace(**{MODEL_DIM: split_dim(tuple(var.shape), size, _stacked_axes(path))})

    return jax.tree_util.tree_map_with_path(mark, tree, is_leaf=_is_variable)


def shard_model(graphdef: nnx.GraphDef, state: nnx.State, size: int) -> tuple[nnx.GraphDef, nnx.State]:
    """A model kept as ``nnx.split``'s ``(graphdef, state)``, marked for a ``size``-way model axis
    (`shard_params`), both halves re-derived so they agree. With ``size > 1`` every module with a ``remat`` switch
    (the layer stacks) turns it on: differentiated without it, the scan would keep every layer's gathered weights
    for the backward pass, a whole copy of the model per device; with it the backward pass gathers each layer again.
    (It costs nothing when nothing is differentiated.)"""
    model = nnx.merge(graphdef, shard_params(state, size))
    if size > 1:
        for _, module in nnx.iter_modules(model):
            if hasattr(module, "remat"):
                module.remat = True
    return nnx.split(model)


def model_dim(x) -> int | None:
    """The `MODEL_DIM` mark of a Variable (None when replicated, unmarked or not a Variable)."""
    return x.get_metadata(MODEL_DIM, None) if _is_variable(x) else None


def specs(tree, axis: str = "model"):
    """A pytree prefix of ``tree``: each `nnx.Variable` becomes a ``PartitionSpec`` with ``axis`` at its
    `MODEL_DIM` (``P()`` when unmarked or replicated), every other leaf ``P()``; None subtrees stay None. Usable
    as ``shard_map`` in/out specs and, mapped to ``NamedSharding(mesh, spec)``, for ``jax.device_put``."""

    def spec(x):
        dim = model_dim(x)
        if dim is None:
            return P()
        ndim = len(x.shape)
        return P(*(axis if i == ndim + dim else None for i in range(ndim)))

    return jax.tree.map(spec, tree, is_leaf=_is_variable)


@contextlib.contextmanager
def model_axis(name: str, size: int):
    """Inside (at trace time, in a ``shard_map`` body over a mesh with axis ``name`` of ``size`` devices), `full`
    all-gathers marked Variables over ``name``. ``size == 1`` sets nothing (nothing is split). Functions traced
    inside must be fresh traces: jit caches do not see this context."""
    if size < 1:
        raise ValueError(f"the model axis size must be a positive integer, got {size!r}")
    if size == 1:
        yield
        return
    token = _MODEL_AXIS.set(name)
    try:
        yield
    finally:
        _MODEL_AXIS.reset(token)


def full(var: nnx.Variable) -> jax.Array:
    """The whole value of a parameter: ``var[...]``, all-gathered (tiled) on its `MODEL_DIM` over the model axis
    when inside `model_axis` and the Variable is marked. Also right on a per-layer slice inside `scan_layers` (the
    dim is negative)."""
    value = var[...]
    name = _MODEL_AXIS.get()
    dim = model_dim(var)
    if name is None or dim is None:
        return value
    return jax.lax.all_gather(value, name, axis=value.ndim + dim, tiled=True)


def model_norm(tree, axis: str) -> jax.Array:
    """Global L2 norm of ``tree`` inside a ``shard_map`` where its marked Variables are split over ``axis``: the
    squares of sharded leaves summed over ``axis``, plus those of replicated leaves (equal on every device). Equals
    ``optax.tree.norm`` of the unsharded tree."""
    sharded = replicated = jnp.zeros((), jnp.float32)
    for leaf in jax.tree.leaves(tree, is_leaf=_is_variable):
        value = jnp.asarray(leaf.get_value() if _is_variable(leaf) else leaf)
        sq = jnp.sum(jnp.square(jnp.abs(value).astype(jnp.promote_types(value.dtype, jnp.float32))))
        if model_dim(leaf) is None:
            replicated = replicated + sq
        else:
            sharded = sharded + sq
    return jnp.sqrt(jax.lax.psum(sharded, axis) + replicated)
