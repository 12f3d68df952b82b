"""A user's mistake on any command line gets one line ``error: ...`` on stderr, exit status 1, no traceback, and
leaves nothing behind; each of these fails before a model is loaded or anything compiled."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
TRAIN = str(ROOT / "experiments" / "train.py")


@pytest.mark.parametrize(("command", "message"), [
    (["-m", "rewardax.eval", "--reward", "clip:random", "--dataset", "missing", "--out", "out"],
     "missing: not a labelled dataset"),
    (["-m", "rewardax.eval", "--reward", "nonsense", "--dataset", "x", "--out", "out"], "--reward 'nonsense'"),
    (["-m", "rewardax.eval.dataset", "--env", "nosuchenv", "--out", "out"], "invalid choice: 'nosuchenv'"),
    (["-m", "rewardax.eval.dataset", "--policy", "missing", "--out", "out"], "not a run directory"),
    ([TRAIN, "--preset", "smoke", "--num-envs", "0", "--run-dir", "run"], "num_envs must be an integer of at least 1"),
    ([TRAIN, "--task", "nosuch", "--preset", "smoke", "--run-dir", "run"], "unknown env 'nosuch'"),
], ids=["eval-missing-dataset", "eval-bad-reward", "dataset-bad-env", "dataset-missing-policy", "train-zero-envs",
        "train-bad-task"])
def test_a_mistake_is_one_line_and_exit_1(tmp_path, command, message):
    done = subprocess.run([sys.executable, *command], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, done.stderr[-3000:]
    assert not any(tmp_path.iterdir()), f"left behind: {sorted(p.name for p in tmp_path.iterdir())}"
