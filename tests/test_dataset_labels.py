"""Labels from a dataset on disk: a labelled-frame directory read (`rewardax.labelled_frames`), paired and answered
by the teacher, and dealt to the devices' rings (`rewardax.rl.label_buffer.from_dataset`) with one error per
problem."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from rewardax.labelled_frames import FORMAT, SOURCES, VERSION, DatasetError, load
from rewardax.rewards.teacher import Teacher
from rewardax.rl.label_buffer import from_dataset

DENSE = np.array([0.3, 1.0, 0.0, 0.6, 0.9, 0.1, 0.5, 0.2, 0.8, 0.4], np.float32)  # distinct: no ties
SIZE = 4


def write_dataset(directory, dense=DENSE):
    """A dataset in the exact on-disk format whose frame i has every pixel i (so an example names its frames), with
    the given dense values and success where dense ≥ 0.9."""
    n = len(dense)
    arrays = {"frames": np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, SIZE, SIZE, 3)).copy(),
              "success": (dense >= 0.9).astype(np.uint8), "dense": dense, "source": np.ones(n, np.int8),
              "episode": np.full(n, -1, np.int32), "step": np.full(n, -1, np.int32)}
    np.savez(directory / "data.npz", **arrays)
    manifest = {"format": FORMAT, "version": VERSION, "frame_size": SIZE, "count": n, "sources": list(SOURCES),
                "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in arrays.items()}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_the_datasets_pairs_are_dealt_round_robin_with_rational_labels(tmp_path):
    data = load(write_dataset(tmp_path))
    rings = from_dataset(data, Teacher(), jax.random.key(0), capacity_per_device=2, devices=4, frame_size=SIZE)
    assert rings.frames.shape == (8, 2, SIZE, SIZE, 3) and rings.label.shape == (8,)
    # 5 pairs over 4 devices: pair j to device j mod 4, so device 0 holds two (its ring full, next back at 0)
    np.testing.assert_array_equal(rings.count, [2, 1, 1, 1])
    np.testing.assert_array_equal(rings.next, [0, 1, 1, 1])
    np.testing.assert_array_equal(rings.labelled, [2, 1, 1, 1])
    filled = np.array([True, True, True, False, True, False, True, False])  # device d's slots are 2d and 2d + 1
    np.testing.assert_array_equal(rings.weight, filled)
    frames = np.asarray(rings.frames)
    first, second = frames[filled, 0, 0, 0, 0], frames[filled, 1, 0, 0, 0]
    assert sorted([*first, *second]) == list(range(10))  # every frame in exactly one pair
    np.testing.assert_array_equal(frames[filled], data["frames"][np.stack([first, second], 1)])
    np.testing.assert_array_equal(rings.label[filled], DENSE[first] > DENSE[second])  # "the first is better"
    np.testing.assert_array_equal(rings.answers[filled], np.stack([DENSE[first], DENSE[second]], 1) >= 0.9)
    assert not frames[~filled].any() and not np.asarray(rings.answers)[~filled].any()

    skipping = from_dataset(data, Teacher(skip=0.55), jax.random.key(0), 2, 4, SIZE)  # the teacher's options apply
    np.testing.assert_array_equal(skipping.weight[filled], np.maximum(DENSE[first], DENSE[second]) >= 0.55)


def test_a_frame_size_mismatch_a_small_capacity_and_damage_each_raise_one_error(tmp_path):
    data = load(write_dataset(tmp_path))
    with pytest.raises(ValueError, match="frames are 4×4 but the run's frame_size is 16: regenerate the dataset "
                                         "with --frame-size 16, or set the run's frame_size to 4"):
        from_dataset(data, Teacher(), jax.random.key(0), 2, 4, frame_size=16)
    with pytest.raises(ValueError, match=r"5 pairs do not fit the 4 labelled examples kept \(4 devices × 1\): raise "
                                         "reward_learning.capacity to at least 8, or use a smaller dataset"):
        from_dataset(data, Teacher(), jax.random.key(0), 1, 4, SIZE)
    write_dataset(tmp_path, DENSE * 3)
    with pytest.raises(DatasetError, match=r"dense holds values outside \[0, 1\]"):
        from_dataset(load(tmp_path), Teacher(), jax.random.key(0), 2, 4, SIZE)


def test_training_reads_datasets_without_importing_the_evaluation():
    program = ("import sys, rewardax.labelled_frames\n"
               "assert 'jax' not in sys.modules, 'the dataset format imports JAX'\n"
               "import rewardax.rl.label_buffer, rewardax.train\n"
               "assert not [m for m in sys.modules if m.startswith('rewardax.eval')], 'training imports rewardax.eval'\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
