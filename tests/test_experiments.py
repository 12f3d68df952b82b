"""The experiment scripts run end to end on tiny settings (they are what a newcomer runs first)."""

import json
import sys
import pathlib

import numpy as np

import rewardax.envs as envs
from rewardax.train.checkpoints import Checkpoints

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "experiments"))

import random_rollout  # noqa: E402
import score_poses  # noqa: E402


def test_random_rollout_writes_video_strip_and_summary(tmp_path):
    random_rollout.main(random_rollout.Args(steps=4, chunk=2, size=16, out_dir=tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 4
    assert (tmp_path / "splits_random.mp4").stat().st_size > 0
    assert (tmp_path / "splits_random_strip.png").stat().st_size > 0


def test_score_poses_with_the_tiny_random_clip():
    table = score_poses.score_poses(score_poses.Args(clip="random", size=32, alpha=0.5))
    assert set(table) == set(envs.TASKS) and all(set(row) == set(envs.TASKS) for row in table.values())
    values = np.array([list(row.values()) for row in table.values()])
    assert np.all(np.isfinite(values)) and np.all(values <= 1.0)


def test_offline_without_weights_falls_back_loudly_to_a_run_that_learns(tmp_path, monkeypatch, capsys):
    """No hub and no cache: the flagship's command trains the offline preset (kneeling from the ground truth) at
    the sizes given, records why in config.json, and ends with the evaluation, the video and the curve."""
    import jax
    import train
    from rewardax.train import load_agent

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    run_dir = tmp_path / "run"
    summary = train.main(["--preset", "cpu", "--run-dir", str(run_dir), "--num-envs", "4", "--iterations", "2",
                          "--eval-episodes", "2", "--ppo.num-steps", "4", "--ppo.minibatches", "2",
                          "--ppo.hidden-sizes", "32", "32", "--frame-size", "32"], task="splits")
    out, err = capsys.readouterr()
    assert "NO PRETRAINED WEIGHTS" in err and "--preset offline" in err
    saved = json.loads((run_dir / "config.json").read_text())["config"]
    assert saved["task"] == "kneeling" and saved["reward"]["kind"] == "dense"
    assert "not found" in saved["fallback"] and saved["num_envs"] == 4 and saved["iterations"] == 2
    assert summary["stopped"] == "finished" and "eval/success" in summary["metrics"]
    assert (run_dir / "learning_curve.png").stat().st_size > 0 and list((run_dir / "videos").glob("*.mp4"))
    assert f"run directory: {run_dir}" in out and "tensorboard --logdir" in out and "--run-dir" in out
    assert "learning curve:" in out and "evaluation: " in out
    assert summary["best"]["iteration"] == 2 and "best evaluation:" in out  # the only evaluation: the best so far
    env, act = load_agent(run_dir, which="best")
    assert env.task.name == "kneeling"
    assert act(np.zeros((1, env.observation_size)), jax.random.key(0)).shape == (1, env.action_size)


def test_a_reward_model_named_on_the_command_line_that_cannot_be_found_stays_an_error(tmp_path, monkeypatch,
                                                                                       capsys):
    import pytest
    import train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(SystemExit) as exit_:
        train.main(["--preset", "cpu", "--run-dir", str(tmp_path / "run"), "--num-envs", "4", "reward:clip",
                    "--reward.checkpoint", "openai/clip-vit-base-patch32"], task="splits")
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "openai/clip-vit-base-patch32" in err and "--preset offline" in err and "NO PRETRAINED" not in err
    assert not (tmp_path / "run").exists()


def test_the_yes_token_smoke_experiment_trains_its_reward_model_and_resumes_bit_for_bit(tmp_path):
    """``python experiments/humanoid_yes_token.py --preset smoke --reward-every 2 --train-reward reward:yes-token
    --reward.mode pairwise --reward.reference best``: a tiny random InternVL (offline) compares every other frame
    with the best frame so far, and learns inside the step from the simulated teacher (labels, updates, held-out
    test, hacking monitor); its weights, optimiser state, reference and labelled frames are checkpointed by name,
    and a run stopped after one iteration and resumed ends with every leaf equal to the run that never stopped."""
    import humanoid_yes_token
    import jax
    import train

    def run(run_dir, iterations):
        argv = ["--preset", "smoke", "--run-dir", str(run_dir), "--iterations", str(iterations), "--eval-episodes",
                "1", "--reward-every", "2", "--train-reward", "reward:yes-token", "--reward.mode", "pairwise",
                "--reward.reference", "best"]
        return train.main(argv, task="kneeling", reward=humanoid_yes_token.yes_token_reward)

    whole = run(tmp_path / "whole", 2)
    assert whole["stopped"] == "finished" and whole["iterations"] == 2
    metrics = whole["metrics"]
    assert 0.0 < metrics["yes_token/p_yes"] < 1.0 and metrics["reward"] == metrics["yes_token/p_yes"]
    assert metrics["reward_model/reference_replaced"] in (0.0, 1.0)
    saved = json.loads((tmp_path / "whole" / "config.json").read_text())["config"]
    assert saved["reward"]["kind"] == "yes_token" and saved["reward"]["mode"] == "pairwise"
    assert saved["train_reward"] and saved["reward"]["checkpoint"] == "random"
    assert (tmp_path / "whole" / "videos" / "iteration_000002.mp4").stat().st_size > 0
    queries = jax.device_count()  # the smoke preset asks one query per device per iteration
    assert metrics["reward_model/labels"] == 2 * queries
    for name in ("reward_model/loss", "reward_model/param_norm", "reward_model/held_out_accuracy",
                 "hacking/reward_variance", "hacking/variance_ratio"):
        assert np.isfinite(metrics[name]), name
    leaves = Checkpoints(tmp_path / "whole" / "checkpoints").read()
    assert leaves["labels/frames"].shape[1:] == (2, 32, 32, 3) and leaves["labels/labelled"].sum() == 2 * queries
    reference = leaves["state/reward_reference"]
    assert reference.dtype == np.uint8 and reference.ndim == 3 and reference.shape[-1] == 3
    assert any(name.startswith("state/reward_params/") for name in leaves)
    assert any(name.startswith("state/reward_opt_state/") for name in leaves)
    first = json.loads((tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["reward_model/labels"] == queries

    run(tmp_path / "resumed", 1)
    run(tmp_path / "resumed", 2)  # resumes from iteration 1
    resumed = Checkpoints(tmp_path / "resumed" / "checkpoints").read()
    assert resumed.keys() == leaves.keys()
    for name in leaves:
        np.testing.assert_array_equal(np.asarray(resumed[name]), np.asarray(leaves[name]), err_msg=name)
