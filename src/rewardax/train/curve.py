"""A run's learning curve as a picture: learning_curve.png beside metrics.jsonl, redrawn when a run ends."""

from __future__ import annotations

import json
import pathlib

CURVE = "learning_curve.png"


def read_metrics(run_dir) -> list[dict]:
    """metrics.jsonl's rows, the last one kept where a resumed run logged an iteration twice."""
    rows = {}
    for line in (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["iteration"]] = row
    return [rows[i] for i in sorted(rows)]


SMOOTHING = 10
"""Iterations averaged in the rollout curves: a rollout covers a fixed part of every env's episode (envs start
together), so per-iteration values repeat a saw-tooth of the episode's phases (5 rollouts per humanoid episode)."""


def smoothed(values: list) -> list[float]:
    """The running mean over the last `SMOOTHING` values (missing ones skipped; NaN until one is present)."""
    out = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - SMOOTHING + 1):i + 1] if v is not None]
        out.append(sum(window) / len(window) if window else float("nan"))
    return out


def plot_learning_curve(run_dir) -> pathlib.Path:
    """Oracle success (the rollouts' and the evaluations') and the mean reward against env-steps, written to
    ``run_dir/learning_curve.png``; where the reward model learns, its held-out accuracy too."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline backend stays as it is

    run_dir = pathlib.Path(run_dir)
    rows = read_metrics(run_dir)
    steps = [row["env_steps"] for row in rows]
    evaluated = [row for row in rows if "eval/success" in row]
    learning = any("reward_model/held_out_accuracy" in row for row in rows)
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    success, reward = axes
    if any("oracle/success" in row for row in rows):
        success.plot(steps, smoothed([row.get("oracle/success") for row in rows]), color="C0", alpha=0.6,
                     label=f"rollouts (mean of {SMOOTHING} iterations)")
    success.plot([row["env_steps"] for row in evaluated], [row["eval/success"] for row in evaluated], "o-",
                 color="C1", label="evaluation (mean action)")
    if learning:
        success.plot(steps, [row.get("reward_model/held_out_accuracy") for row in rows], color="C2",
                     label="reward model: held-out accuracy")
    success.set(xlabel="env-steps", ylabel="oracle success", ylim=(-0.03, 1.03), title="the task")
    success.legend(fontsize=8)
    reward.plot(steps, smoothed([row["reward"] for row in rows]), color="C3")
    reward.set(xlabel="env-steps", ylabel=f"mean reward per step\n(mean of {SMOOTHING} iterations)",
               title="the reward")
    for ax in axes:  # matplotlib's own notation (an offset like 1e6) fits 60 env-steps and 60 million alike
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    path = run_dir / CURVE
    fig.savefig(path, dpi=100)
    return path
