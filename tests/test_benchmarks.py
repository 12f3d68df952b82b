"""The benchmarks: every script runs end to end at a tiny size (its own command-line path, so a change in the
library that breaks one fails here, not in the next measurement), and their own arithmetic is right even where
nothing else checks it. Speed is never asserted. The ladder's tests are in test_ladder.py (a file of their own,
so that the two test workers each take one of the heavy halves).

The scripts share their programs where they measure the same thing (`common.env_rungs`, `common.env_piece_flops`),
so with the tests' persistent compilation cache env_render.py reuses what ladder.py compiled.
"""

import json

import pytest
import tyro

from benchmark_scripts import by_measure, check_line, load_benchmark, run
from rewardax.models import load_vlm, write_random_vlm


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
    rows = (tmp_path / "learning.md").read_text().splitlines()
    assert len(rows) == 3 and rows[2].startswith(f"| cartpole | dense | {line['random_policy_success']:.0%} |")
    assert rows[2].endswith(f"| {line['curve'][-1]['env_steps'] / 1e6:.2f} M | 30 |")


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


def test_the_memory_report_compiles_abstract_steps_and_splits_the_weights(capsys):
    """The step compiled ahead of time for abstract arrays (benchmarks/memory.py, CPU target): InternVL3-1B's
    bfloat16 weights (1.9 GB) are counted, never allocated, and each device of a model axis of 2 holds half."""
    lines = run("memory", ["--shapes", "internvl3-1b", "--task", "cartpole", "--envs-per-device", "2",
                           "--frame-size", "32", "--meshes", "4x1", "2x2", "--training", "frozen", "--chunks", "1",
                           "--ppo.num-steps", "2", "--ppo.minibatches", "1", "--ppo.epochs", "1"], capsys)
    assert [(line["shape"], line["mesh"]) for line in lines] == [("internvl3-1b", "4x1"), ("internvl3-1b", "2x2")]
    for line in lines:
        check_line(line, {"machine", "argument", "output", "alias", "temp", "peak"})
    whole, split = (line["argument"] for line in lines)
    assert 1.85e9 < whole < 1.95e9  # 0.94 B parameters in bfloat16, and the envs' few kilobytes
    assert 0.49 < split / whole < 0.51
