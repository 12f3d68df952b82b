"""notebooks/quickstart.ipynb is stored without outputs and runs top to bottom.

The code cells run in order in one namespace, as a kernel would run them, with the working directory in a
temporary directory (the notebook writes its CLIP checkpoint and run directory relative to it). Shell and magic
lines (``!pip ...``, ``%...``) are replaced by ``pass``: the installation is skipped anyway when ``rewardax`` is
importable, as it is here. The notebook's imports of ``IPython.display.display`` and ``Video`` get recorders
(IPython is not a dependency of the project, and the recorders let the test check what was shown).

The one knob the test turns: ``QUICKSTART_FRAME_SIZE=32`` (the frames the notebook renders for display). Training
uses the ``smoke`` preset as it is. The run takes about 1.5 minutes on 2 CPU cores with a warm compilation cache
(``.jax_cache/``), about 3 minutes cold.
"""

from __future__ import annotations

import json
import pathlib
import types

import numpy as np

NOTEBOOK = pathlib.Path(__file__).parents[1] / "notebooks" / "quickstart.ipynb"
FRAME_SIZE = 32


def load_notebook() -> dict:
    return json.loads(NOTEBOOK.read_text())


def code_cells(notebook: dict) -> list[str]:
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def without_shell_lines(source: str) -> str:
    """``!cmd`` and ``%magic`` lines become ``pass`` at the same indentation, so enclosing blocks stay valid."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        lines.append(line[:len(line) - len(stripped)] + "pass" if stripped.startswith(("!", "%")) else line)
    return "\n".join(lines) + "\n"


class FakeVideo:
    def __init__(self, data=None, embed=False, **kwargs):
        self.data, self.embed, self.kwargs = data, embed, kwargs


def notebook_builtins(shown: list) -> dict:
    """Builtins for the notebook's namespace whose ``import`` of ``IPython``/``IPython.display`` gives stand-ins:
    ``display`` appends to ``shown`` and ``Video`` is `FakeVideo`. Only the notebook's own import statements see
    them; library code (flax's treescope probes for IPython) imports as usual."""
    import builtins

    ipython_display = types.SimpleNamespace(display=lambda *objects, **kwargs: shown.extend(objects), Video=FakeVideo)
    ipython = types.SimpleNamespace(display=ipython_display)

    def import_(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name == "IPython.display" and fromlist:
            return ipython_display
        if level == 0 and name.split(".")[0] == "IPython":
            return ipython
        return builtins.__import__(name, globals, locals, fromlist, level)

    return {**vars(builtins), "__import__": import_}


def test_notebook_is_stored_without_outputs_for_a_python3_kernel():
    notebook = load_notebook()
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    assert any(cell["cell_type"] == "markdown" for cell in notebook["cells"])
    for i, source in enumerate(code_cells(notebook)):
        compile(without_shell_lines(source), f"{NOTEBOOK.name} code cell {i}", "exec")


def test_shell_lines_become_pass_at_their_indentation():
    assert without_shell_lines("if x:\n    !pip install -q y\n%matplotlib inline\nz = 1") == \
        "if x:\n    pass\npass\nz = 1\n"


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUICKSTART_FRAME_SIZE", str(FRAME_SIZE))
    displayed = []
    namespace = {"__name__": "__main__", "__builtins__": notebook_builtins(displayed)}
    for i, source in enumerate(code_cells(load_notebook())):
        exec(compile(without_shell_lines(source), f"{NOTEBOOK.name} code cell {i}", "exec"), namespace)

    assert namespace["NEEDS_INSTALL"] is False
    assert namespace["frames"].shape == (4, FRAME_SIZE, FRAME_SIZE, 3)
    assert namespace["pose_frames"].shape == (8, FRAME_SIZE, FRAME_SIZE, 3)
    images = [obj for obj in displayed if isinstance(obj, Image.Image)]
    assert [image.size for image in images] == [(4 * FRAME_SIZE, FRAME_SIZE), (8 * FRAME_SIZE, FRAME_SIZE)]

    rewards = np.stack(list(namespace["rewards_by_alpha"].values()))
    assert rewards.shape == (3, 8) and np.all(np.isfinite(rewards)) and np.all(rewards <= 1.0)
    np.testing.assert_allclose(namespace["rewards_by_alpha"][0.0], namespace["cos_goal"], atol=1e-5)  # α = 0

    summary = namespace["summary"]
    assert summary["stopped"] == "finished" and summary["iterations"] == 2
    assert (tmp_path / summary["run_dir"]).resolve() == (tmp_path / "runs" / "quickstart-splits").resolve()
    videos = [obj for obj in displayed if isinstance(obj, FakeVideo)]
    assert len(videos) == 1 and videos[0].embed
    video = tmp_path / videos[0].data
    assert video.suffix == ".mp4" and video.stat().st_size > 0
    assert namespace["last_metrics"]["iteration"] == 2
