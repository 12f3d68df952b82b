"""A reward model split over a model axis computes what a replicated one does: on 8 virtual CPU devices, the meshes
8 × 1, 4 × 2 and 2 × 4 give the same rewards, the same reward-model update and the same agent update, for the tiny
yes-token model trained in the step and for CLIP frozen (tests/model_axis_run.py, in a process of its own).

Equal to float rounding, not bit for bit: a split weight's gradient is summed by a reduce-scatter and then over
``envs``, in an order XLA picks, where the replicated model's is one all-reduce; the forward pass gathers the same
numbers, but XLA may fuse the gathered matmuls differently. Labels and the envs' layout are identical on every
shape (asserted exactly)."""

import dataclasses
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import rewardax.envs as envs
from rewardax.rewards import DenseRewardConfig, YesTokenRewardConfig
from rewardax.train import train
from rewardax.train.checkpoints import Checkpoints, named_leaves
from rewardax.train.config import presets

pytestmark = pytest.mark.timeout(900)

SCRIPT = pathlib.Path(__file__).with_name("model_axis_run.py")
SHAPES = [(8, 1), (4, 2), (2, 4)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("model_axis")
    done = subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, timeout=800,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                               "REWARDAX_JAX_CACHE": str(jax.config.jax_compilation_cache_dir)})
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return {(envs, model): dict(np.load(out / f"{envs}x{model}.npz")) for envs, model in SHAPES}


@pytest.mark.parametrize("shape", SHAPES[1:], ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_split_reward_model_scores_updates_and_teaches_as_a_replicated_one(runs, shape):
    reference, split = runs[SHAPES[0]], runs[shape]
    assert reference.keys() == split.keys()
    for name in reference:
        if name.endswith("bytes_per_device"):
            continue
        if "/labels/" in name:  # the teacher's choices do not depend on the mesh's shape
            np.testing.assert_array_equal(split[name], reference[name], err_msg=name)
        else:
            np.testing.assert_allclose(split[name], reference[name], rtol=2e-4, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("model", ["yes_token_trained", "clip_frozen"])
def test_each_device_holds_its_share_of_the_weights(runs, model):
    held = {shape: int(runs[shape][f"{model}/bytes_per_device"]) for shape in SHAPES}
    whole = held[(8, 1)]
    # a few vectors (norm scales, biases) stay replicated, so a little more than 1/M
    assert whole / 2 * 0.98 <= held[(4, 2)] < whole * 0.6, held
    assert whole / 4 * 0.98 <= held[(2, 4)] < whole * 0.35, held


def test_the_trainer_runs_resumes_and_evaluates_with_a_split_reward_model(tmp_path):
    """--mesh envs=2,model=2 on the 4 test devices: the tiny yes-token model trained in the step, split in two,
    scoring one frame per call (--reward-chunk 1), checkpointed whole (orbax writes the global arrays) and
    resumed."""
    config = dataclasses.replace(presets("cartpole")["smoke"], mesh="envs=2,model=2", train_reward=True, reward_chunk=1,
                                 reward=YesTokenRewardConfig(checkpoint="random", bfloat16=False),
                                 run_dir=str(tmp_path / "run"))
    first = train(config, progress=False)
    assert first["iterations"] == 2 and np.isfinite(first["metrics"]["eval/success"])
    store = Checkpoints(tmp_path / "run" / "checkpoints")
    saved = {name.removeprefix("state/reward_params/"): value.shape for name, value in store.read().items()
             if name.startswith("state/reward_params/")}
    unsplit = config.reward.build(envs.make("cartpole")).params
    whole = {name: value.shape for name, value in named_leaves(unsplit).items()}
    assert saved == whole  # every weight, at its whole shape
    resumed = train(dataclasses.replace(config, iterations=3), progress=False)
    assert resumed["iterations"] == 3


def test_a_model_axis_needs_a_reward_model_with_weights(tmp_path):
    config = dataclasses.replace(presets("cartpole")["smoke"], mesh="model=2", reward=DenseRewardConfig(),
                                 run_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="has no weights to split over a model axis of 2: use --mesh model=1"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()
