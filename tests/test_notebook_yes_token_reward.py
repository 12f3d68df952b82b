"""notebooks/yes_token_reward.ipynb is stored clean and runs top to bottom (papermill, a real kernel) at a smoke
size: the yes-token model scores frames pointwise and pairwise, trains in the step from the simulated teacher
for two CartPole iterations, the monitor plots the run's metrics, and the trained model, the untrained one and a
random CLIP are compared on a small labelled dataset with the evaluation suite.
"""

from __future__ import annotations

import json
import math

import notebooks

NAME = "yes_token_reward.ipynb"
SMOKE = dict(ITERATIONS=2, NUM_ENVS=8, FRAME_SIZE=32, LABELS_PER_ITERATION=4, LABEL_BUDGET=100, EVAL_EVERY=0,
             EVAL_EPISODES=2, DATASET_EPISODES=2, PATH_FRAMES=17)  # 17: the path holds the upright pole


def test_yes_token_reward_is_stored_clean():
    notebook = notebooks.check_stored_clean(NAME)
    assert notebook.cells[0].cell_type == "markdown"
    parameters = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert set(SMOKE) <= {line.split("=")[0].strip() for line in parameters.source.splitlines() if "=" in line}


def test_yes_token_reward_runs_at_smoke_size(tmp_path, monkeypatch):
    nb = notebooks.execute(NAME, tmp_path, monkeypatch, **SMOKE)

    # Section 2: pointwise and pairwise P("yes") of 7 frames along the path.
    [scores] = notebooks.json_outputs(nb, "scores")
    assert len(scores["values"]) == 7
    for mode in ("pointwise", "pairwise"):
        assert len(scores[mode]) == 7 and all(0.0 <= p <= 1.0 for p in scores[mode]), mode
    assert scores["pointwise"] != scores["pairwise"]  # the reference image changes the question

    # Section 3: the run finished, and its reward model learned from the teacher's labels.
    [run] = notebooks.json_outputs(nb, "training")
    assert run["stopped"] == "finished" and run["iterations"] == SMOKE["ITERATIONS"]
    run_dir = tmp_path / run["run_dir"]
    assert run_dir.resolve() == (tmp_path / "runs" / "yes-token-cartpole").resolve()
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in logged] == [1, 2]
    assert logged[-1]["reward_model/labels"] == 2 * SMOKE["LABELS_PER_ITERATION"]
    assert math.isfinite(logged[-1]["reward_model/held_out_accuracy"])
    assert "eval/success" in logged[-1] and "hacking/reward_variance" in logged[-1]

    # Section 4: the monitor read those metrics.
    [monitor] = notebooks.json_outputs(nb, "monitor")
    assert monitor["iteration"] == 2 and monitor["reward_model/labels"] == logged[-1]["reward_model/labels"]
    assert monitor["reward_model/held_out_accuracy"] == logged[-1]["reward_model/held_out_accuracy"]

    # Section 5: the three models on the labelled dataset, with finite numbers, and the landscape.
    rows = notebooks.json_outputs(nb, "comparison")
    assert [row["reward"] for row in rows] == ["run:yes-token-cartpole", "yes-token:tiny-random-vlm",
                                               "clip:tiny-random-clip α=0"]
    for row in rows:
        assert all(math.isfinite(row[key]) for key in ("epic_dense", "pearson_dense", "auc_success")), row
        assert 0.0 <= row["epic_dense"] <= 1.0 and 0.0 <= row["auc_success"] <= 1.0
    # Training moved the weights: the trained model does not score as the model it started from.
    assert rows[0]["pearson_dense"] != rows[1]["pearson_dense"]
    manifest = json.loads((tmp_path / "data" / "cartpole" / "manifest.json").read_text())
    assert manifest["counts"]["trained"] > 0 and manifest["counts"]["path"] == SMOKE["PATH_FRAMES"]
    [along] = notebooks.json_outputs(nb, "landscape")
    assert along == {row["reward"]: SMOKE["PATH_FRAMES"] for row in rows}
    for name in ("eval.png", "landscape.png"):
        assert (tmp_path / "runs" / "eval-yes-token-cartpole" / name).stat().st_size > 0

    # Figures: the scored frames, the evaluation strip, the monitor, the comparison and the landscape.
    assert len(notebooks.displayed(nb, "image/png")) == 5
