"""The benchmarks: every script runs end to end at a tiny size (its own command-line path, so a change in the
library that breaks one fails here, not in the next measurement), and their own arithmetic is right even where
nothing else checks it. Speed is never asserted.

The scripts share their programs where they measure the same thing (`common.env_rungs`, `common.env_piece_flops`),
so with the tests' persistent compilation cache env_render.py reuses what ladder.py compiled.
"""

import importlib.util
import json
import math
import pathlib
import sys

import pytest
import tyro

from rewardax.models import load_vlm, write_random_vlm

BENCHMARKS = pathlib.Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their shared `common` as a sibling module
MACHINE = {"cpu", "cpu_flags", "cpu_count", "backend", "device", "devices", "jax"}


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def run(name: str, argv: list[str], capsys) -> list[dict]:
    """``python benchmarks/<name>.py *argv``, in this process: its JSON lines."""
    bench = load_benchmark(name)
    bench.main(tyro.cli(bench.Args, args=argv))
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def numbers(tree, path=""):
    """Every (path, value) of the numbers in a JSON tree (bools and strings left out)."""
    if isinstance(tree, dict):
        return [item for key, value in tree.items() for item in numbers(value, f"{path}/{key}")]
    if isinstance(tree, list):
        return [item for i, value in enumerate(tree) for item in numbers(value, f"{path}/{i}")]
    return [(path, tree)] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def check_line(line: dict, fields: set[str]) -> None:
    """``line`` has ``fields``, none of them None, every number in it is finite, and it says where it ran."""
    missing = sorted(k for k in fields if line.get(k) is None)
    assert not missing, f"{line.get('measure')}: missing {missing} in {line}"
    bad = [(path, value) for path, value in numbers(line) if not math.isfinite(value)]
    assert not bad, f"{line.get('measure')}: non-finite {bad}"
    if "machine" in line:
        assert MACHINE <= line["machine"].keys(), line["machine"]


def by_measure(lines: list[dict]) -> dict[str, list[dict]]:
    out = {}
    for line in lines:
        out.setdefault(line.get("measure"), []).append(line)
    return out


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


def test_env_render_runs(capsys):
    lines = by_measure(run("env_render", ["--batch-sizes", "1", "--size", "16", "--steps", "1", "--repeats", "1"],
                           capsys))
    check_line(lines["flops per env-step"][0], {"machine", "physics", "render", "total"})
    for measure in ("physics", "physics+render"):
        check_line(lines[measure][0], {"batch", "env_steps_per_s"})
    for measure in ("render", "mjx.ray per pixel (baseline)"):
        check_line(lines[measure][0], {"frames_per_s", "rays_per_s"})


def test_physics_check_runs(capsys):
    """Stress (in MuJoCo C here: tests/test_physics.py stresses MJX), drift and one task's settle."""
    lines = by_measure(run("physics_check", ["--num-envs", "2", "--steps", "20", "--engine", "mujoco",
                                             "--tasks", "kneeling"], capsys))
    check_line(lines["stress"][0], {"machine", "non_finite_envs", "env_steps_per_s"})
    assert lines["stress"][0]["non_finite_envs"] == 0
    assert {line["controls"] for line in lines["drift"]} == {"zero", "saturated_random"}
    for line in lines["drift"]:
        check_line(line, {"step_1", "step_10", "step_50", "step_100"})
    (settle,) = lines["settle"]
    check_line(settle, {"task", "max_qpos_gap"})


def test_clip_tower_runs_and_the_two_frameworks_agree(capsys):
    lines = run("clip_tower", ["--shape", "tiny", "--batch-sizes", "2", "--reps", "1"], capsys)
    check, *timings = lines
    check_line(check, {"machine", "max_rel_err"})
    assert check["max_rel_err"] < 1e-4
    assert {line["impl"] for line in timings} == {"flax-nnx (XLA)", "pytorch (transformers)"}
    for line in timings:
        check_line(line, {"seconds_per_batch", "median_s", "images_per_s", "gflops_per_image_xla",
                          "achieved_gflops_per_s"})


def test_yes_token_runs_and_rewardax_agrees_with_transformers(capsys, tmp_path, monkeypatch):
    """The tiny shape without the FLOP count (its arithmetic is the test below): every engine, mode and cache."""
    bench = load_benchmark("yes_token")
    monkeypatch.setattr(bench, "CACHE", tmp_path)  # the random checkpoint goes here, not into outputs/
    bench.main(tyro.cli(bench.Args, args=["--shape", "tiny", "--batch", "2", "--repeats", "1", "--frame-size", "32",
                                          "--no-flops", "--out", str(tmp_path / "out.jsonl")]))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines == [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    measures = by_measure(lines)
    assert len(measures["yes_token_reward"]) == 6 and len(measures["agreement"]) == 2
    for line in measures["yes_token_reward"]:
        check_line({k: v for k, v in line.items() if k not in ("flops_per_frame", "achieved_gflops_per_s")},
                   {"machine", "frames_per_s", "median_s", "first_call_s"})
    for line in measures["agreement"]:
        check_line(line, {"max_rel_diff_full_prompt", "max_rel_diff_cached"})
        assert line["max_rel_diff_full_prompt"] < 1e-3 and line["max_rel_diff_cached"] < 1e-3, line
    for line in measures["ratio"]:
        check_line(line, {"ratio"})


def test_learning_runs_a_smoke_sized_cartpole_run(capsys, tmp_path):
    lines = run("learning", ["--tasks", "cartpole", "--smoke", "--random-episodes", "2", "--out", str(tmp_path)],
                capsys)
    (line,) = lines
    check_line(line, {"machine", "random_policy_success", "num_envs", "iterations", "final_success",
                      "best_success", "curve"})
    assert line["task"] == "cartpole" and line["iterations"] == 2 and len(line["curve"]) == 1
    assert (tmp_path / "learning.json").is_file() and (tmp_path / "learning.png").stat().st_size > 0


def test_yes_token_flops_from_shallow_twins_equal_the_count_of_the_whole_unrolled_model(tmp_path):
    """The 1B FLOP count comes from twins with 1-2 layers per tower; at a depth where the whole model can be
    unrolled (3 vision, 4 text layers), the two counts agree (pairwise, with and without the cache)."""
    bench = load_benchmark("yes_token")
    model, processor = load_vlm(write_random_vlm(tmp_path / "vlm"))
    spec = bench.shallow(model.spec, 3, 4)
    frames, reference = bench.make_frames(2, 32, 0), bench.make_frames(1, 32, 1)[0]

    def count(twin):
        return bench.flops_per_call(twin, processor, frames, reference, modes=("pairwise",))

    whole = count(bench.unrolled_twin(spec))
    assert bench.flops_by_depth(count, spec) == pytest.approx(whole, rel=1e-6)
    assert whole["pairwise/cached"] < 0.75 * whole["pairwise/full_prompt"], "the cache skips the reference image"
