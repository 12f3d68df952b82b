"""benchmarks/ladder.py end to end at a tiny size: every rung with CLIP, and the yes-token model's iteration with
the reward model learning, and the projection for a model too large to run (``--shape``). Speed is never
asserted."""

import pytest

from benchmark_scripts import by_measure, check_line, run


def test_ladder_runs_every_rung_and_counts_the_update_from_the_library_batch(capsys):
    """The ladder at 1 env, one step, 16 px and the tiny CLIP: every rung including the PPO update (whose FLOP
    count builds its batch with the library's rollout and make_batch), and a projection per rung."""
    lines = by_measure(run("ladder", ["--num-envs", "1", "--steps", "1", "--repeats", "1", "--frame-size", "16",
                                      "--clip", "tiny", "--ppo.num-steps", "2", "--ppo.epochs", "1",
                                      "--ppo.minibatches", "2", "--ppo.hidden-sizes", "8"], capsys))
    assert set(lines) == {"flops per env-step by piece", "physics", "render", "reward", "update", "projection"}
    pieces = lines["flops per env-step by piece"][0]
    check_line(pieces, {"machine", "physics", "render", "clip"})
    for rung in ("physics", "render", "reward", "update"):
        (line,) = lines[rung]
        check_line(line, {"seconds_per_call", "median_s", "warmup_s", "env_steps_per_s", "flops_per_env_step",
                          "achieved_gflops_per_s"})
        assert line["flops_per_env_step"] > 0 and line["seconds_per_call"] <= line["median_s"]
    update = next(p for p in lines["projection"] if p["rung"] == "update")
    check_line(update, {"flops_per_env_step", "flops_by_piece", "projected_env_steps_per_s"})
    assert update["flops_by_piece"]["update"] > 0 and update["flops_by_piece"]["policy"] > 0
    assert len(lines["projection"]) == 4


def test_ladder_times_the_iteration_with_the_yes_token_model_learning(capsys):
    """Rung 5 at 2 envs with the tiny random InternVL: the iteration frozen and learning, the update's share (its
    sign is noise at this size) and the settings used, labels capped at one pair; 1 env skips the rung."""
    lines = by_measure(run("ladder", ["--reward", "yes-token", "--checkpoint", "random", "--rungs", "reward_update",
                                      "--num-envs", "1", "2", "--repeats", "1", "--frame-size", "16",
                                      "--ppo.num-steps", "2", "--ppo.epochs", "1", "--ppo.minibatches", "1",
                                      "--ppo.hidden-sizes", "8", "--learning.updates", "1", "--learning.batch", "2",
                                      "--learning.labels-per-iteration", "2", "--learning.capacity", "2",
                                      "--learning.held-out", "0"], capsys))
    assert set(lines) == {"flops per env-step by piece", "reward_update"}
    assert lines["flops per env-step by piece"][0]["yes_token"] > 0
    skipped, line = lines["reward_update"]
    assert skipped["num_envs"] == 1 and "skipped" in skipped
    check_line(line, {"frozen_s", "learning_s", "frozen_median_s", "learning_median_s", "reward_update_share",
                      "learning"})
    assert line["frozen_s"] > 0 and line["learning_s"] > 0 and line["reward_update_share"] < 1
    assert line["learning"]["labels_per_iteration"] == 1 and line["learning"]["updates"] == 1


def test_ladder_projects_a_reward_model_too_large_to_run_from_its_flop_counts(capsys):
    """``--shape``: abstract weights (the tiny model's shape here; the InternVL3 ones in docs/ladder_sized.jsonl),
    so FLOP and projection lines only, one per training; the learning model's update per env-step is its pair
    gradients and held-out frames over the iteration's env-steps, counted at the matrix peak."""
    lines = by_measure(run("ladder", ["--shape", "tiny", "--num-envs", "2", "--frame-size", "16",
                                      "--ppo.num-steps", "2", "--ppo.epochs", "1", "--ppo.minibatches", "2",
                                      "--ppo.hidden-sizes", "8", "--learning.updates", "3", "--learning.batch", "5",
                                      "--learning.held-out", "7"], capsys))
    assert set(lines) == {"flops per env-step by piece", "projection"}
    (pieces,) = lines["flops per env-step by piece"]
    frozen, lora, full = lines["projection"]
    assert [line["training"] for line in (frozen, lora, full)] == ["frozen", "lora16", "full"]
    assert frozen["rung"] == "update" and lora["rung"] == full["rung"] == "reward_update"
    # A pair's gradient costs more than its two frames' forward passes, and LoRA's less than every weight's.
    assert 2 * pieces["yes_token"] < pieces["yes_token_pair_gradient_lora16"] < pieces["yes_token_pair_gradient_full"]
    for line, name in ((lora, "lora16"), (full, "full")):
        update = (3 * 5 * pieces[f"yes_token_pair_gradient_{name}"] + 7 * pieces["yes_token"]) / (2 * 2)
        assert line["flops_by_piece"]["yes_token_update"] == pytest.approx(update)
        assert line["flops_per_env_step"] == pytest.approx(frozen["flops_per_env_step"] + update)
        for chip, rates in line["projected_env_steps_per_s"].items():
            assert 0 < rates["realistic"] < frozen["projected_env_steps_per_s"][chip]["realistic"]
