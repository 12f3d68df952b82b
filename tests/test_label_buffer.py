"""The on-device ring of labelled frames: written in order, the oldest overwritten, sampled from what it holds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardax.rl.label_buffer import LabelBuffer


def examples(start, n):
    """Frames whose every pixel is their example's number, labelled by its parity."""
    values = jnp.arange(start, start + n)
    frames = jnp.broadcast_to(values[:, None, None, None, None], (n, 2, 2, 2, 3)).astype(jnp.uint8)
    label = (values % 2).astype(jnp.float32)
    return frames, label, jnp.stack([label, 1 - label], axis=1), jnp.ones(n)


def test_the_ring_overwrites_its_oldest_examples_and_counts_every_label():
    add = jax.jit(LabelBuffer.add)
    buffer = LabelBuffer.create(5, 2, (2, 2, 3))
    buffer = add(buffer, *examples(0, 3))
    assert int(buffer.count[0]) == 3 and int(buffer.next[0]) == 3
    buffer = add(buffer, *examples(3, 4))  # 7 in all: 5 and 6 replace 0 and 1
    np.testing.assert_array_equal(buffer.frames[:, 0, 0, 0, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.label, [1, 0, 0, 1, 0])
    assert int(buffer.count[0]) == 5 and int(buffer.next[0]) == 2 and int(buffer.labelled[0]) == 7
    with pytest.raises(ValueError, match="6 examples do not fit a label buffer of 5"):
        buffer.add(*examples(0, 6))


def test_samples_come_from_the_filled_slots_only():
    buffer = LabelBuffer.create(100, 1, (2, 2, 3))
    assert float(buffer.sample(jax.random.key(0), 8).weight.sum()) == 0  # nothing to learn from yet
    frames, label, answers, _ = examples(10, 4)
    buffer = buffer.add(frames[:, :1], label, answers[:, :1], jnp.ones(4))
    sample = jax.jit(LabelBuffer.sample, static_argnums=2)(buffer, jax.random.key(1), 400)
    seen = np.asarray(sample.frames[:, 0, 0, 0, 0])
    assert set(seen) == {10, 11, 12, 13} and (sample.weight == 1).all()
    np.testing.assert_array_equal(sample.label, seen % 2)
    np.testing.assert_array_equal(sample.answers[:, 0], seen % 2)
