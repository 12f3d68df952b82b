"""Execute the notebooks in notebooks/ as a user would, with papermill (a real Jupyter kernel, top to bottom).

Each notebook opens with a cell tagged ``parameters`` that sets its size; the tests inject the smoke size there
(papermill adds an ``injected-parameters`` cell after it). The kernel inherits this process's environment: the
JAX CPU backend with 4 virtual devices (`conftest`) and the persistent compilation cache, passed on through
JAX's own environment variables so the kernel's compiles are shared with the rest of the suite.
"""

from __future__ import annotations

import json
import pathlib

import jax
import nbformat
import papermill

NOTEBOOKS = pathlib.Path(__file__).parents[1] / "notebooks"


def check_stored_clean(name: str) -> nbformat.NotebookNode:
    """The notebook as committed: nbformat 4 for a python3 kernel, no outputs, one ``parameters`` cell first
    among the code cells, and every code cell valid Python once IPython's ``!``/``%`` lines are set aside."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code), \
        f"{name} is stored with outputs: clear them before committing"
    assert "parameters" in code[0].metadata.get("tags", []), f"{name}'s first code cell is not tagged parameters"
    for i, cell in enumerate(code):
        python = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("!", "%")))
        compile(python, f"{name} code cell {i}", "exec")
    return notebook


def execute(name: str, cwd: pathlib.Path, monkeypatch, timeout: float = 600, **parameters) -> nbformat.NotebookNode:
    """Run notebooks/``name`` in ``cwd`` with ``parameters`` injected; the executed notebook (its outputs) is
    returned and written to ``cwd``. A cell that raises fails the test with the cell's traceback."""
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", jax.config.jax_compilation_cache_dir)
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    executed = cwd / f"executed-{name}"
    papermill.execute_notebook(NOTEBOOKS / name, executed, parameters=parameters, cwd=str(cwd),
                               kernel_name="python3", progress_bar=False, execution_timeout=timeout)
    return nbformat.read(executed, as_version=4)


def text_output(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook printed or displayed as text, in order."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif "text/plain" in output.get("data", {}):
                parts.append(output.data["text/plain"])
    return "\n".join(parts)


def displayed(notebook: nbformat.NotebookNode, mime: str) -> list:
    """Every output of type ``mime`` (e.g. ``image/png``, ``text/html``) the notebook displayed, in order."""
    return [output.data[mime] for cell in notebook.cells for output in cell.get("outputs", [])
            if mime in output.get("data", {})]


def json_outputs(notebook: nbformat.NotebookNode, tag: str) -> list:
    """The JSON objects printed (one per line) by the cells tagged ``tag``: how a notebook hands the test its
    numbers without the test reaching into the kernel."""
    values = []
    for cell in notebook.cells:
        if tag in cell.metadata.get("tags", []):
            for output in cell.get("outputs", []):
                if output.output_type == "stream":
                    values += [json.loads(line) for line in output.text.splitlines() if line.startswith("{")]
    return values
