"""notebooks/reward_landscapes.ipynb is stored clean and runs top to bottom in a Jupyter kernel (papermill), offline.

The smoke size: 9 states per path at 32 px (9, so that both paths hold a solved state: CartPole's θ = 0 and
MountainCar's x = 0.6), the tiny random CLIP and the paper's five α. Then the command the notebook prints runs
here, in this process, and must write the notebook's numbers: the command shown to the reader is the right one.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shlex

import numpy as np

import notebooks

NAME = "reward_landscapes.ipynb"
POINTS, FRAME_SIZE = 9, 32
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
ENVS = ("cartpole", "mountaincar")
REAL_COMMAND = ("python -m rewardax.eval --reward clip:openai/clip-vit-base-patch32 --landscape cartpole mountaincar "
                "--alpha 0 0.25 0.5 0.75 1")


def tagged_text(notebook, tag: str) -> str:
    """What the cells tagged ``tag`` printed."""
    return "".join(output.text for cell in notebook.cells if tag in cell.metadata.get("tags", [])
                   for output in cell.get("outputs", []) if output.output_type == "stream" and output.name == "stdout")


def test_reward_landscapes_is_stored_clean():
    notebook = notebooks.check_stored_clean(NAME)
    parameters = {}
    exec(next(cell.source for cell in notebook.cells if cell.cell_type == "code"), parameters)
    assert (parameters["CLIP"], parameters["ALPHAS"], parameters["POINTS"], parameters["FRAME_SIZE"]) == \
        ("random", list(ALPHAS), 64, 224)  # what a Colab user gets: offline, the paper's α, the command's sizes
    markdown = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert REAL_COMMAND in markdown


def test_reward_landscapes_runs_and_its_command_reproduces_it(tmp_path, monkeypatch):
    from PIL import Image

    from rewardax.eval.__main__ import main

    executed = notebooks.execute(NAME, tmp_path, monkeypatch, POINTS=POINTS, FRAME_SIZE=FRAME_SIZE)
    text = notebooks.text_output(executed)
    assert "rewardax is importable: skipping installation" in text

    # A strip of five frames per env, then one landscape figure per env.
    images = [Image.open(io.BytesIO(base64.b64decode(png))) for png in notebooks.displayed(executed, "image/png")]
    assert [image.size for image in images[:2]] == [(5 * FRAME_SIZE, FRAME_SIZE)] * 2
    assert len(images) == 4 and images[2].size == images[3].size and images[2].width > 5 * FRAME_SIZE
    assert all(np.asarray(image.convert("L")).std() > 0 for image in images)  # not blank
    assert (tmp_path / "landscape-cartpole.png").exists() and (tmp_path / "landscape-mountaincar.png").exists()

    # The scores, saved in the command's format: both envs, every α, finite and varying along the path.
    results = json.loads((tmp_path / "landscape.json").read_text())
    assert list(results) == list(ENVS)
    for name, result in results.items():
        assert len(result["values"]) == len(result["success"]) == POINTS and any(result["success"]), name
        assert list(result["rewards"]) == [f"clip:random α={alpha:g}" for alpha in ALPHAS]
        scores = np.array(list(result["rewards"].values()))
        assert scores.shape == (len(ALPHAS), POINTS) and np.isfinite(scores).all() and np.all(scores <= 1.0)
        assert np.all(scores.std(axis=1) > 0), name

    # On each strip's frames the reward at α = 0 is the cosine similarity to the goal prompt.
    cosines = tagged_text(executed, "cosines")
    rows = re.findall(r"^\s*[+-]\d+\.\d\d\s+(-?\d\.\d{4})\s+(-?\d\.\d{4})\s+(-?\d\.\d{4})$", cosines, re.M)
    assert len(rows) == 2 * 5
    assert all(abs(float(cos_goal) - float(reward)) <= 1e-4 for _, cos_goal, reward in rows)
    gaps = re.findall(r"max \|R\(α = 0\) − cos\(s, g\)\| on (\w+)'s frames: (\S+)", cosines)
    assert [name for name, _ in gaps] == list(ENVS) and all(float(gap) < 1e-5 for _, gap in gaps)

    # The peak table: every env and α, each peak where the saved scores peak, a finite margin.
    peaks = tagged_text(executed, "peaks")
    blocks = re.split(r"^(cartpole|mountaincar): ", peaks, flags=re.M)[1:]
    assert blocks[::2] == list(ENVS)
    for name, block in zip(blocks[::2], blocks[1::2]):
        rows = re.findall(r"^\s*([\d.]+)\s+([+-]\d+\.\d{3})\s+(yes|no)\s+([+-]\d+\.\d{3})$", block, re.M)
        assert [float(alpha) for alpha, *_ in rows] == list(ALPHAS), name
        result = results[name]
        for (_, peak_at, solved, margin), scores in zip(rows, result["rewards"].values()):
            peak = int(np.argmax(scores))
            assert abs(float(peak_at) - result["values"][peak]) < 1e-3
            assert (solved == "yes") == result["success"][peak]
            assert np.isfinite(float(margin)) and -1.0 <= float(margin) <= 1.0

    # The command the notebook prints, run here, writes the same landscapes.
    (command,) = [line for line in text.splitlines() if line.startswith("python -m rewardax.eval ")]
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "rewardax.eval"]
    cli = main(argv[3:] + ["--out", str(tmp_path / "cli")])
    assert (tmp_path / "cli" / "landscape.png").exists()
    assert list(cli) == list(ENVS)
    for name in ENVS:
        ours, theirs = results[name], cli[name]
        assert (ours["label"], ours["success"], list(ours["rewards"])) == \
            (theirs["label"], theirs["success"], list(theirs["rewards"]))
        np.testing.assert_allclose(ours["values"], theirs["values"], atol=1e-6)
        for key in ours["rewards"]:
            np.testing.assert_allclose(ours["rewards"][key], theirs["rewards"][key], atol=1e-5, err_msg=key)
