"""Labelled frames kept on the device for training a reward model inside the step.

A fixed-size ring of examples: each is one frame (a yes/no label) or two (a preference, "the first is better"),
with a label in [0, 1] (½: a tie), the teacher's yes/no answer about each of its frames (the pointwise model's
cross-entropy term reads them), and a weight (0: an empty slot, or a query the teacher skipped). New examples
overwrite the oldest once it is full, so the model keeps seeing poses the policy has left behind for as long as
the ring holds them. The training step keeps one ring per device, split along the env axis like the envs (each
device labels frames of its own envs: nothing is gathered or replicated), and checkpoints it by name. So that the
whole ring splits along that axis, its counters are arrays of one element per device, not scalars. A run may
start with its rings filled from a labelled-frame dataset on disk (`from_dataset`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

if TYPE_CHECKING:
    from rewardax.rewards.teacher import Teacher


@struct.dataclass
class LabelBuffer:
    """One device's ring of labelled examples (see the module docstring)."""

    frames: jax.Array
    """uint8 [capacity, frames per example (1 or 2), H, W, 3]."""
    label: jax.Array
    """[capacity] float32 in [0, 1]: the yes/no answer (one frame) or the preference (two)."""
    answers: jax.Array
    """[capacity, frames per example] float32: the teacher's yes/no about each frame."""
    weight: jax.Array
    """[capacity] float32: 1 for an answered example, 0 for an empty slot or a skipped query."""
    next: jax.Array
    """int32 [1]: the slot the next example goes to."""
    count: jax.Array
    """int32 [1]: slots filled (at most the capacity)."""
    labelled: jax.Array
    """int32 [1]: examples ever added (the labels spent, for the budget)."""

    @classmethod
    def create(cls, capacity: int, frames_per_example: int, frame_shape: tuple[int, int, int]) -> LabelBuffer:
        if capacity < 1 or frames_per_example not in (1, 2):
            raise ValueError(f"a label buffer needs a positive capacity and 1 (yes/no) or 2 (preference) frames per "
                             f"example, got capacity={capacity}, frames_per_example={frames_per_example}")
        zero = jnp.zeros(1, jnp.int32)
        return cls(jnp.zeros((capacity, frames_per_example, *frame_shape), jnp.uint8), jnp.zeros(capacity),
                   jnp.zeros((capacity, frames_per_example)), jnp.zeros(capacity), zero, zero, zero)

    @property
    def capacity(self) -> int:
        return self.label.shape[0]

    def add(self, frames: jax.Array, label: jax.Array, answers: jax.Array, weight: jax.Array) -> LabelBuffer:
        """The ring with ``frames [n, K, H, W, 3]``, ``label [n]``, ``answers [n, K]`` and ``weight [n]`` written over
        its oldest slots (n at most the capacity)."""
        n = label.shape[0]
        if n > self.capacity:
            raise ValueError(f"{n} examples do not fit a label buffer of {self.capacity}: raise its capacity")
        slots = (self.next[0] + jnp.arange(n)) % self.capacity
        return self.replace(frames=self.frames.at[slots].set(frames.astype(jnp.uint8)),
                            label=self.label.at[slots].set(label), answers=self.answers.at[slots].set(answers),
                            weight=self.weight.at[slots].set(weight),
                            next=(self.next + n) % self.capacity, count=jnp.minimum(self.count + n, self.capacity),
                            labelled=self.labelled + n)

    def sample(self, key: jax.Array, n: int) -> LabelBuffer:
        """``n`` examples drawn uniformly, with replacement, from the filled slots, as a buffer of capacity ``n``
        (all weights 0 while the ring is empty)."""
        slots = jax.random.randint(key, (n,), 0, jnp.maximum(self.count[0], 1))
        return self.replace(frames=self.frames[slots], label=self.label[slots], answers=self.answers[slots],
                            weight=self.weight[slots] * (self.count[0] > 0), next=jnp.zeros(1, jnp.int32),
                            count=jnp.full(1, n, jnp.int32))


def from_dataset(data: dict[str, np.ndarray], teacher: Teacher, key: jax.Array, capacity_per_device: int,
                 devices: int, frame_size: int) -> LabelBuffer:
    """Rings of ``devices`` devices, ``capacity_per_device`` slots each, holding the teacher's preferences between
    the frames of a labelled dataset (`rewardax.labelled_frames.load`), laid out as `rewardax.rl.step.init` lays
    out its empty ones: the devices' rings concatenated, counters [devices]. Host-side, run once before training.

    The N frames are paired at random, the i-th with the (i + N // 2)-th of a permutation (N // 2 pairs), and the
    teacher answers each pair as `rewardax.rl.reward_update.ask_teacher` has it answer the rollout's; pair j goes
    to device j mod ``devices`` (round robin: the devices' shares differ by at most one). Every pair counts as a
    label spent (``labelled``)."""
    size = data["frames"].shape[1]
    if size != frame_size:
        raise ValueError(f"the dataset's frames are {size}×{size} but the run's frame_size is {frame_size}: "
                         f"regenerate the dataset with --frame-size {frame_size}, or set the run's frame_size to "
                         f"{size}")
    count = len(data["frames"])
    pairs = count // 2
    if pairs > devices * capacity_per_device:
        raise ValueError(f"the dataset's {pairs} pairs do not fit the {devices * capacity_per_device} labelled "
                         f"examples kept ({devices} devices × {capacity_per_device}): raise reward_learning.capacity "
                         f"to at least {-(-pairs // devices) * devices}, or use a smaller dataset")
    pair_key, prefer_key, yes_a_key, yes_b_key = jax.random.split(key, 4)
    order = np.asarray(jax.random.permutation(pair_key, count))
    a, b = order[:pairs], order[pairs:2 * pairs]
    label, weight = teacher.prefer(prefer_key, data["dense"][a], data["dense"][b])
    answers = jnp.stack([teacher.yes_no(yes_a_key, data["success"][a])[0],
                         teacher.yes_no(yes_b_key, data["success"][b])[0]], 1)
    examples = (np.stack([data["frames"][a], data["frames"][b]], axis=1), label, answers, weight)
    empty = LabelBuffer.create(capacity_per_device, 2, data["frames"].shape[1:])
    rings = [empty.add(*(x[d::devices] for x in examples)) for d in range(devices)]
    return jax.tree.map(lambda *parts: jnp.concatenate(parts), *rings)
