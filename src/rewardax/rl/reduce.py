"""Sums over the device axis that give the same bits however the devices are spread over processes.

An all-reduce (`lax.psum`) adds in whatever order its algorithm picks: XLA's in-process one and gloo's ring
across processes differ in the last bit, and the humanoid's chaotic physics turns one rounding difference into
a different run. Gathering the per-device values and adding them in device order makes a run on two processes
of two devices equal, bit for bit, to one on a single process of four. The gather is itself a psum, of each
device's value placed in its own row of zeros: every element then sums one value and zeros, which is exact
in any order (and keeps shard_map's replication typing). The values are small (moments, gradients of the
policy MLPs, metrics), so the N-fold traffic costs nothing that shows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def device_sum(tree, axis_name: str | None):
    """``tree`` summed over the devices of ``axis_name``, in device order (``axis_name=None``: ``tree``)."""
    if axis_name is None:
        return tree
    devices, me = jax.lax.psum(1, axis_name), jax.lax.axis_index(axis_name)

    def ordered_sum(x):
        x = jnp.asarray(x)
        rows = jnp.where((jnp.arange(devices) == me).reshape((devices,) + (1,) * x.ndim), x[None], 0)
        return jax.lax.psum(rows, axis_name).sum(0)

    return jax.tree.map(ordered_sum, tree)


def device_mean(tree, axis_name: str | None):
    """``tree`` averaged over the devices of ``axis_name``, in device order (``axis_name=None``: ``tree``)."""
    if axis_name is None:
        return tree
    devices = jax.lax.psum(1, axis_name)
    return jax.tree.map(lambda x: x / devices, device_sum(tree, axis_name))
