"""The benchmarks' own arithmetic: what they report must be right even where nothing else checks it."""

import importlib.util
import pathlib
import sys

import pytest

from rewardax.models import load_vlm, write_random_vlm

BENCHMARKS = pathlib.Path(__file__).parents[1] / "benchmarks"


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


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
