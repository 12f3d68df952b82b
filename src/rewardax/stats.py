"""Statistics computed inside the compiled step and on the host alike: device-ordered sums, running moments,
Pearson correlation and ROC-AUC. A leaf module (JAX only), so that `rewardax.rl` and `rewardax.eval` share it
without depending on each other.

Device-ordered sums. An all-reduce (`lax.psum`) adds in whatever order its algorithm picks: XLA's in-process one
and gloo's ring across processes differ in the last bit, and the humanoid's chaotic physics turns one rounding
difference into a different run. Gathering the per-device values and adding them in device order makes a run on
two processes of two devices equal, bit for bit, to one on a single process of four. The gather is itself a
psum, of each device's value placed in its own row of zeros: every element then sums one value and zeros, which
is exact in any order (and keeps shard_map's replication typing). The values are small (moments, gradients of
the policy MLPs, metrics), so the N-fold traffic costs nothing that shows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

EPSILON = 1e-8
"""Added to variances before a square root, so a constant signal does not divide by zero."""


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


@struct.dataclass
class RunningMeanStd:
    """Mean and variance of every sample seen so far, per feature."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array
    """Number of samples seen (float32: exact up to 2**24; beyond, only the weighting of new batches blurs)."""

    @classmethod
    def create(cls, shape: tuple[int, ...] = ()) -> RunningMeanStd:
        """No samples yet (the first `update` replaces mean and var by the batch moments)."""
        return cls(jnp.zeros(shape), jnp.ones(shape), jnp.zeros(()))

    def update(self, batch: jax.Array, axis_name: str | None = None, mask: jax.Array | None = None) -> RunningMeanStd:
        """Fold in ``batch`` (leading axes are samples) by Chan et al.'s parallel combination.

        With ``axis_name`` the batch is the union of every device's ``batch``; ``mask`` (1/0 per sample) leaves
        samples out. A batch with no samples leaves the statistics unchanged.
        """
        sample_axes = tuple(range(batch.ndim - self.mean.ndim))
        sample_shape = batch.shape[:len(sample_axes)]
        weight = jnp.ones(sample_shape) if mask is None else mask.astype(jnp.float32)
        weight = weight.reshape(sample_shape + (1,) * self.mean.ndim)
        batch_count = device_sum(weight.sum(), axis_name)
        safe_count = jnp.maximum(batch_count, 1.0)
        batch_mean = device_sum((batch * weight).sum(sample_axes), axis_name) / safe_count
        batch_var = device_sum((weight * (batch - batch_mean) ** 2).sum(sample_axes), axis_name) / safe_count

        count = self.count + batch_count
        safe_total = jnp.maximum(count, 1.0)
        delta = batch_mean - self.mean
        mean = self.mean + delta * batch_count / safe_total
        sum_sq = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / safe_total
        var = jnp.where(count > 0, sum_sq / safe_total, self.var)
        return RunningMeanStd(mean, var, count)

    def normalize(self, x: jax.Array, clip: float = 10.0) -> jax.Array:
        """``x`` standardised by the running moments and clipped to ``[-clip, clip]``."""
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + EPSILON), -clip, clip)


def _weights(x, weights):
    return jnp.ones(jnp.shape(x), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32).ravel()


def pearson(x, y, weights=None) -> jax.Array:
    """Weighted Pearson correlation of ``x`` and ``y`` (flattened); NaN when either is constant."""
    x, y = jnp.asarray(x, jnp.float32).ravel(), jnp.asarray(y, jnp.float32).ravel()
    w = _weights(x, weights)
    n = w.sum()
    dx, dy = x - (w * x).sum() / n, y - (w * y).sum() / n  # centred first: rewards can differ by 1e-2 around 0.3
    return (w * dx * dy).sum() / jnp.sqrt((w * dx * dx).sum() * (w * dy * dy).sum())


def roc_auc(scores, labels, weights=None) -> jax.Array:
    """ROC-AUC of ``scores`` as a detector of the boolean ``labels`` (ties count half); NaN without both classes.
    Frames with weight 0 are left out."""
    x = jnp.asarray(scores, jnp.float32).ravel()
    keep = _weights(x, weights) > 0
    positive, negative = keep & jnp.asarray(labels, bool).ravel(), keep & ~jnp.asarray(labels, bool).ravel()
    negatives = jnp.sort(jnp.where(negative, x, jnp.inf))
    below = jnp.searchsorted(negatives, x, side="left")
    at_or_below = jnp.searchsorted(negatives, x, side="right")
    wins = jnp.where(positive, below + 0.5 * (at_or_below - below), 0.0).sum()
    return wins / (positive.sum() * negative.sum())
