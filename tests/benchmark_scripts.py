"""Running the benchmark scripts inside the tests and checking their JSON lines (shared by test_benchmarks.py and
test_ladder.py: two files, so that the two test workers run the heavy ladder tests beside the other benchmarks)."""

import importlib.util
import json
import math
import pathlib
import sys

import tyro

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
