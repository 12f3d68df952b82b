"""notebooks/humanoid_tpu.ipynb: the flagship run on an accelerator runtime, executed with papermill at the smoke
size (the tiny random CLIP, 2 envs per device, 32 px frames) and ITERATIONS = 3: it trains and stops itself
after iteration 1 with the trainer's SIGINT handling, resumes from that checkpoint to iteration 3, shows
TensorBoard (or says it is missing), the metrics and learning curve, the evaluation video, and the policy loaded
back. About 2 minutes on 2 CPU cores with a cold compilation cache, 1.5 warm.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re

import jax

import notebooks

NAME = "humanoid_tpu.ipynb"
ITERATIONS = 3  # stops after iteration 3 // 2 = 1, resumes for 2 and 3


def test_humanoid_tpu_is_stored_clean():
    notebook = notebooks.check_stored_clean(NAME)
    parameters = next(cell for cell in notebook.cells if cell.cell_type == "code").source
    # What a Colab user gets: the preset, size and CLIP chosen for the machine.
    for default in ("PRESET = None", "CLIP = None", "NUM_ENVS = None", "ITERATIONS = None", "STOP_AFTER = None"):
        assert default in parameters


def test_humanoid_tpu_trains_stops_resumes_and_shows_the_video(tmp_path, monkeypatch):
    notebook = notebooks.execute(NAME, tmp_path, monkeypatch, PRESET="smoke", ITERATIONS=ITERATIONS,
                                 RUN_DIR="runs/splits")
    text = notebooks.text_output(notebook)
    devices = jax.device_count()
    num_envs = 2 * devices  # the smoke preset

    # The devices, the preset and the run's size, as printed.
    assert f"backend: {jax.default_backend()}" in text
    assert f"devices: {devices} × " in text
    assert "preset: smoke (set in the parameters cell)" in text
    assert f"envs: {num_envs} (2 per device)" in text
    assert "reward model: CLIP 'random' in float32" in text
    assert "frames: 32×32 px" in text
    assert f"iterations: {ITERATIONS} × {num_envs * 8} env-steps" in text

    run_dir = tmp_path / "runs" / "splits"
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert (config["task"], config["num_envs"], config["iterations"]) == ("splits", num_envs, ITERATIONS)

    # The first part stopped itself through the trainer's signal handling; the second resumed from its checkpoint.
    assert f"first part: signal SIGINT after iteration 1 of {ITERATIONS}" in text
    assert "resuming from the checkpoint of iteration 1" in text
    assert f"second part: trained iterations 2 to {ITERATIONS}, finished at iteration {ITERATIONS}" in text
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in logged] == list(range(1, ITERATIONS + 1))  # no gap, no repeat
    assert [m["env_steps"] for m in logged] == [i * num_envs * 8 for i in range(1, ITERATIONS + 1)]
    assert (run_dir / "checkpoints" / str(ITERATIONS)).is_dir()
    assert re.search(rf"^\s+{ITERATIONS}\s+{ITERATIONS * num_envs * 8}\s", text, re.MULTILINE)  # the metrics table

    # TensorBoard inline where it is installed, a note where it is not.
    if importlib.util.find_spec("tensorboard") is None:
        assert "TensorBoard is not installed here" in text
    else:
        assert any("tensorboard" in html.lower() for html in notebooks.displayed(notebook, "text/html"))

    # The evaluation video of the last iteration, embedded: the displayed bytes are the file's.
    video = run_dir / "videos" / f"iteration_{ITERATIONS:06d}.mp4"
    embedded = [html for html in notebooks.displayed(notebook, "text/html") if "<video" in html]
    assert len(embedded) == 1
    (payload,) = re.findall(r"data:video/mp4;base64,([A-Za-z0-9+/=\s]+)", embedded[0])
    assert base64.b64decode(payload) == video.read_bytes()
    # The learning curve the trainer drew, then the episode's strip: the files' bytes.
    images = [base64.b64decode(png) for png in notebooks.displayed(notebook, "image/png")]
    assert images == [(run_dir / "learning_curve.png").read_bytes(), video.with_suffix(".png").read_bytes()]

    # The policy loaded back from the run directory acts on the humanoid's observations.
    match = re.search(rf"policy of iteration {ITERATIONS}: observations \(4, \d+\) -> actions \(4, 17\) "
                      r"in \[(-?[\d.]+), (-?[\d.]+)\]", text)
    assert match and -1.0 <= float(match[1]) <= float(match[2]) <= 1.0
