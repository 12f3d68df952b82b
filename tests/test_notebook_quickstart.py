"""notebooks/quickstart.ipynb is stored clean and runs top to bottom in a Jupyter kernel (papermill), offline.

The one size the test turns down is ``FRAME_SIZE`` (the frames drawn for display); training uses the ``smoke``
preset as the notebook does. About 1.5 minutes on 2 CPU cores with a warm compilation cache, 3 cold.
"""

from __future__ import annotations

import json
import re

import notebooks

NAME = "quickstart.ipynb"
FRAME_SIZE = 32


def test_quickstart_is_stored_clean():
    notebooks.check_stored_clean(NAME)


def test_quickstart_runs_top_to_bottom(tmp_path, monkeypatch):
    import base64
    import io

    from PIL import Image

    executed = notebooks.execute(NAME, tmp_path, monkeypatch, FRAME_SIZE=FRAME_SIZE, RUN_DIR="runs/q")
    text = notebooks.text_output(executed)
    assert "rewardax is importable: skipping installation" in text

    # The batch of 4 humanoids, then the 8 canonical poses, side by side, and at the end the run's learning curve.
    images = [Image.open(io.BytesIO(base64.b64decode(png))) for png in notebooks.displayed(executed, "image/png")]
    assert [image.size for image in images[:2]] == [(4 * FRAME_SIZE, FRAME_SIZE), (8 * FRAME_SIZE, FRAME_SIZE)]
    assert len(images) == 3
    with Image.open(tmp_path / "runs" / "q" / "learning_curve.png") as curve:
        assert images[2].size == curve.size

    # The pose table: one row per pose, cos(s, g) then α = 0, 0.5, 1; at α = 0 the reward is the cosine.
    rows = re.findall(r"^\s*(\w+)\s+(-?\d\.\d{4})\s+(-?\d\.\d{4})\s+(-?\d\.\d{4})\s+(-?\d\.\d{4})", text, re.M)
    assert len(rows) == 8
    for _, cos_goal, alpha0, *_ in rows:
        assert abs(float(cos_goal) - float(alpha0)) <= 1e-4

    assert "finished after 2 iterations" in text
    videos = [html for html in notebooks.displayed(executed, "text/html") if "<video" in html]
    assert len(videos) == 1 and "base64" in videos[0]  # embedded, so it survives the notebook being shared
    run_dir = tmp_path / "runs" / "q"
    assert (run_dir / "config.json").exists() and list((run_dir / "videos").glob("*.mp4"))
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["iteration"] == 2
    assert re.search(r"^\s+iteration: 2$", text, re.M)
