"""Labelled datasets: generated for a classic env, read back with the labels they were made with, and every kind
of damage named on loading; the evaluation command scoring models on them, a run's trained reward model too."""

import csv
import dataclasses
import json

import numpy as np
import pytest

import rewardax.envs as envs
from rewardax.eval import dataset

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    out = tmp_path_factory.mktemp("cartpole")
    manifest = dataset.generate(envs.make("cartpole"), "cartpole", out, episodes=4, every=50, path_frames=9,
                                frame_size=16)
    return out, manifest


def test_a_generated_dataset_loads_with_its_labels_and_states(cartpole):
    out, manifest = cartpole
    data = dataset.load(out)
    assert manifest["counts"] == {"random": 16, "path": 9, "trained": 0, "perturbed": 0} and manifest["count"] == 25
    assert data["frames"].shape == (25, 16, 16, 3) and data["frames"].dtype == np.uint8
    path = data["source"] == dataset.SOURCES.index("path")
    np.testing.assert_allclose(data["state/theta"][path], np.linspace(-np.pi, np.pi, 9), atol=1e-6)
    np.testing.assert_array_equal(data["success"][path], np.abs(np.linspace(-np.pi, np.pi, 9)) < np.radians(12))
    assert (data["dense"][data["success"] == 1] == 1).all() and (data["dense"][data["success"] == 0] < 1).all()
    random = data["source"] == dataset.SOURCES.index("random")
    assert sorted(set(data["step"][random])) == [50, 100, 150, 200] and sorted(set(data["episode"][random])) == [0, 1, 2, 3]


def test_a_trained_runs_policy_adds_its_episodes_plain_and_perturbed(tmp_path):
    from rewardax.rewards import OracleRewardConfig
    from rewardax.train import presets, train
    from rewardax.train.agent import load_reward_model

    run = tmp_path / "run"
    train(dataclasses.replace(presets("cartpole")["smoke"], reward=OracleRewardConfig(), run_dir=str(run),
                              eval_episodes=1))
    manifest = dataset.main(["--policy", str(run), "--out", str(tmp_path / "data"), "--episodes", "2", "--every",
                             "100", "--path-frames", "3", "--frame-size", "8"])
    assert manifest["env"] == "cartpole" and manifest["counts"] == {"random": 4, "path": 3, "trained": 4, "perturbed": 4}
    data = dataset.load(tmp_path / "data")
    trained, perturbed = (data["source"] == dataset.SOURCES.index(s) for s in ("trained", "perturbed"))
    assert not np.array_equal(data["state/theta"][trained], data["state/theta"][perturbed])  # the noise acted
    with pytest.raises(ValueError, match="not a run directory with a checkpoint"):
        dataset.main(["--policy", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="did not train its reward model .*oracle, is the task's ground truth"):
        load_reward_model(run)


def test_damage_is_named_on_loading(cartpole, tmp_path):
    out, _ = cartpole
    with pytest.raises(dataset.DatasetError, match="needs manifest.json and data.npz"):
        dataset.load(tmp_path)
    (tmp_path / "manifest.json").write_text((out / "manifest.json").read_text())
    arrays = dict(np.load(out / "data.npz"))
    arrays["dense"] = arrays["dense"] * 3.0
    del arrays["step"]
    np.savez(tmp_path / "data.npz", **arrays)
    with pytest.raises(dataset.DatasetError, match="array step is missing"):
        dataset.load(tmp_path)
    arrays["step"] = np.zeros(25, np.int32)
    np.savez(tmp_path / "data.npz", **arrays)
    with pytest.raises(dataset.DatasetError, match=r"dense holds values outside \[0, 1\].*regenerate it"):
        dataset.load(tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(dataset.DatasetError, match="version 99"):
        dataset.load(tmp_path)


def test_the_evaluation_command_compares_models_on_a_dataset_and_draws_landscapes(cartpole, tmp_path, capsys):
    from rewardax.eval.__main__ import main

    out, manifest = cartpole
    result = main(["--reward", "clip:random", "yes-token:random", "--alpha", "0", "1", "--dataset", str(out),
                   "--out", str(tmp_path), "--batch", "16"])
    assert [r["reward"] for r in result["rows"]] == ["clip:random α=0", "clip:random α=1", "yes-token:random"]
    for row in result["rows"]:
        assert 0.0 <= row["epic_dense"] <= 1.0 and 0.0 <= row["auc_success"] <= 1.0
    assert "EPIC" in capsys.readouterr().out and (tmp_path / "eval.png").stat().st_size > 0
    assert json.loads((tmp_path / "eval.json").read_text())["count"] == manifest["count"]
    landscape = main(["--reward", "clip:random", "--landscape", "cartpole", "--frames", "9", "--frame-size", "16",
                      "--out", str(tmp_path)])
    assert len(landscape["cartpole"]["rewards"]["clip:random α=0"]) == 9 and sum(landscape["cartpole"]["success"]) == 1
    assert (tmp_path / "landscape.png").stat().st_size > 0
    with pytest.raises(ValueError, match="expected one of clip:<checkpoint>, oracle, dense, yes-token:<checkpoint>"):
        main(["--reward", "blip:x", "--dataset", str(out)])
    with pytest.raises(ValueError, match="dense reads the physics state"):
        main(["--reward", "dense", "--dataset", str(out)])


@pytest.fixture(scope="module")
def trained_reward_run(tmp_path_factory):
    """A cartpole run whose random yes-token model took one iteration's updates (the smoke preset's two)."""
    from rewardax.rewards import YesTokenRewardConfig
    from rewardax.train import presets, train

    run = tmp_path_factory.mktemp("runs") / "learned"
    config = dataclasses.replace(presets("cartpole")["smoke"], reward=YesTokenRewardConfig(checkpoint="random",
                                                                                           bfloat16=False),
                                 train_reward=True, iterations=1, eval_episodes=1, run_dir=str(run))
    train(config, progress=False)
    return run, config


def test_a_runs_trained_reward_model_is_scored_from_its_checkpoint(trained_reward_run, cartpole, tmp_path):
    from rewardax.eval.__main__ import main
    from rewardax.eval.landscape import score_frames
    from rewardax.eval.metrics import pearson
    from rewardax.train.checkpoints import Checkpoints, unflatten_like

    run, config = trained_reward_run
    out, manifest = cartpole
    result = main(["--reward", f"run:{run}", "yes-token:random", "--dataset", str(out), "--out", str(tmp_path),
                   "--batch", "16"])
    assert [r["reward"] for r in result["rows"]] == ["run:learned", "yes-token:random"]
    with open(tmp_path / "scores.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert list(table[0]) == ["index", "success", "dense", "run:learned", "yes-token:random"]
    assert [int(r["index"]) for r in table] == list(range(manifest["count"]))
    column = {name: np.array([float(r[name]) for r in table], np.float32) for name in table[0]}
    data = dataset.load(out)
    np.testing.assert_array_equal(column["success"], data["success"])
    np.testing.assert_array_equal(column["dense"], data["dense"])
    for row in result["rows"]:  # the table's numbers follow from the file
        assert float(pearson(column[row["reward"]], column["dense"])) == pytest.approx(row["pearson_dense"], abs=1e-6)
    # The scores are those of the model built as the trainer built it, with the checkpoint's weights put back ...
    frozen, params = config.reward_learning.make_trainable(config.reward.build(envs.make("cartpole"))).split()
    prefix = "state/reward_params/"
    leaves = {name[len(prefix):]: v for name, v in Checkpoints(run / "checkpoints").read().items()
              if name.startswith(prefix)}
    expected = score_frames(frozen.merge(unflatten_like(params, leaves)), data["frames"], 16)
    np.testing.assert_allclose(column["run:learned"], expected, rtol=1e-5, atol=1e-7)
    # ... which the run's updates changed: the untrained model (yes-token:random) scores otherwise.
    assert np.abs(column["run:learned"] - column["yes-token:random"]).max() > 1e-4
    with pytest.raises(ValueError, match="not a run directory with a checkpoint"):
        main(["--reward", "run:/nonexistent", "--dataset", str(out), "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="trained its reward model for the cartpole task, not mountaincar"):
        main(["--reward", f"run:{run}", "--landscape", "mountaincar", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
