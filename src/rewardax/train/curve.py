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


def plot_learning_curve(run_dir) -> pathlib.Path:
    """Oracle success (the rollouts' and the evaluations') and the mean reward against env-steps, written to
    ``run_dir/learning_curve.png``; where the reward model learns, its held-out accuracy too."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed (or wanted) on a training host
    import matplotlib.pyplot as plt

    run_dir = pathlib.Path(run_dir)
    rows = read_metrics(run_dir)
    steps = [row["env_steps"] / 1e6 for row in rows]
    evaluated = [row for row in rows if "eval/success" in row]
    learning = any("reward_model/held_out_accuracy" in row for row in rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    success, reward = axes
    if any("oracle/success" in row for row in rows):
        success.plot(steps, [row.get("oracle/success") for row in rows], color="C0", alpha=0.5, label="rollouts")
    success.plot([row["env_steps"] / 1e6 for row in evaluated], [row["eval/success"] for row in evaluated], "o-",
                 color="C1", label="evaluation (mean action)")
    if learning:
        success.plot(steps, [row.get("reward_model/held_out_accuracy") for row in rows], color="C2",
                     label="reward model: held-out accuracy")
    success.set(xlabel="env-steps (millions)", ylabel="oracle success", ylim=(-0.03, 1.03), title="the task")
    success.legend(fontsize=8)
    reward.plot(steps, [row["reward"] for row in rows], color="C3")
    reward.set(xlabel="env-steps (millions)", ylabel="mean reward per step", title="the reward")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    path = run_dir / CURVE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
