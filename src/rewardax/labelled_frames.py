"""The labelled-frame dataset format, read and validated; a leaf module (NumPy only) so that both the evaluation
(`rewardax.eval.dataset`, which writes these datasets) and training (labels from disk) can read it.

Frames rendered by a task's camera, each with the task's oracle success, its dense ground truth and the physics
state it shows. Sources (``manifest["sources"]``, per frame in ``source``, an index into `SOURCES`): ``random``
(episodes of uniform random actions), ``path`` (states along `TaskEnv.state_path`, covering success and failure
evenly, which random play rarely does), ``trained`` (episodes of a trained policy's mean actions) and
``perturbed`` (its actions with Gaussian noise).

Format: a directory with ``manifest.json`` (what the env and settings were, how many frames of each source,
every array's dtype and shape) and ``data.npz`` (uncompressed NumPy arrays: ``frames`` uint8 [N, H, W, 3],
``success`` uint8 [N], ``dense`` float32 [N], ``source`` int8 [N], ``episode`` and ``step`` int32 [N] (−1 for
path frames), and ``state/<name>`` for each physics variable (the humanoid: qpos and qvel)). NumPy's npz rather
than parquet: the frames are n-dimensional uint8 arrays, which npz stores as they are and parquet only as
opaque blobs, and it needs no dependency beyond NumPy.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

FORMAT, VERSION = "rewardax-labelled-frames", 1
SOURCES = ("random", "path", "trained", "perturbed")


class DatasetError(ValueError):
    """A labelled-frame directory that cannot be used as it is (the message says what and what to do)."""


def load(directory) -> dict[str, np.ndarray]:
    """The arrays of a labelled dataset, with ``manifest`` added; one `DatasetError` naming every problem."""
    directory = pathlib.Path(directory)
    manifest_path, data_path = directory / "manifest.json", directory / "data.npz"
    fix = f"regenerate it: python -m rewardax.eval.dataset --env ENV --out {directory}"
    if not manifest_path.is_file() or not data_path.is_file():
        raise DatasetError(f"{directory}: not a labelled dataset (needs manifest.json and data.npz); {fix}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{manifest_path}: not valid JSON ({error}); {fix}") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise DatasetError(f"{manifest_path}: format {manifest.get('format')!r} version {manifest.get('version')!r}, "
                           f"this rewardax reads {FORMAT!r} version {VERSION}; {fix}")
    with np.load(data_path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    problems = []
    expected = manifest.get("arrays", {})
    for name in sorted(set(expected) - set(arrays)):
        problems.append(f"array {name} is missing")
    for name in sorted(set(arrays) - set(expected)):
        problems.append(f"array {name} is not in the manifest")
    for name in sorted(set(arrays) & set(expected)):
        a, spec = arrays[name], expected[name]
        if str(a.dtype) != spec["dtype"] or list(a.shape) != spec["shape"]:
            problems.append(f"{name} is {a.dtype}{list(a.shape)}, the manifest says {spec['dtype']}{spec['shape']}")
    n = manifest.get("count")
    for name, a in arrays.items():
        if len(a) != n:
            problems.append(f"{name} has {len(a)} rows, the manifest counts {n}")
    if not problems:
        size = manifest["frame_size"]
        if arrays["frames"].dtype != np.uint8 or arrays["frames"].shape[1:] != (size, size, 3):
            problems.append(f"frames must be uint8 [N, {size}, {size}, 3], got {arrays['frames'].dtype}"
                            f"{list(arrays['frames'].shape)}")
        if not np.isin(arrays["success"], (0, 1)).all():
            problems.append("success holds values other than 0 and 1")
        if not ((arrays["dense"] >= 0) & (arrays["dense"] <= 1)).all():
            problems.append("dense holds values outside [0, 1]")
        if not ((arrays["source"] >= 0) & (arrays["source"] < len(manifest["sources"]))).all():
            problems.append(f"source holds indices outside the manifest's {len(manifest['sources'])} sources")
    if problems:
        raise DatasetError(f"{directory}: " + "; ".join(problems) + f"; {fix}")
    return {**arrays, "manifest": manifest}
