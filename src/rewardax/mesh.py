"""The devices' mesh: two axes, ``envs`` and ``model``, so that a reward model larger than one chip can be split.

    mesh = make_mesh()                         # envs over every device, model = 1: plain data parallel
    mesh = make_mesh(mesh_shape("envs=4,model=2", jax.device_count()))

The envs, and every statistic summed over them, are split over both axes together (`AXIS`, envs-major): the
device at ``(e, m)`` holds env block ``e · M + m``, the same block as device ``e · M + m`` of a one-axis mesh, so
``lax.axis_index(AXIS)``, device-ordered sums and every per-device choice (labels, keys) are those of a one-axis
mesh of as many devices, whatever the shape. The reward model's weights are split over ``model`` only
(`rewardax.models.sharding`: each model group of M devices holds one copy between them, gathered layer by layer
at use); the agent is replicated. A model group must lie within one process: its weights are gathered every
layer, which across hosts would go over the data-centre network.

A leaf module (JAX only): the config checks the ``--mesh`` syntax without building anything.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

ENVS, MODEL = "envs", "model"
AXIS = (ENVS, MODEL)
"""Every device, as one axis: what the envs and the step's sums are split over."""


def mesh_sizes(text: str) -> dict[str, int]:
    """``"envs=4,model=2"`` -> ``{"envs": 4, "model": 2}``; a size omitted or -1 is inferred (`mesh_shape`);
    ``""`` -> ``{}`` (envs over every device, model 1). One clear error for anything else."""
    sizes: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in AXIS:
            raise ValueError(f"mesh: unknown axis {name!r} in {text!r}: the axes are {' and '.join(AXIS)}, e.g. "
                             f"envs=4,model=2")
        if name in sizes:
            raise ValueError(f"mesh: {name} is given twice in {text!r}")
        try:
            size = int(value)
        except ValueError:
            raise ValueError(f"mesh: {name} needs an integer size (or -1 to infer it), got {part!r} in "
                             f"{text!r}") from None
        if size < 1 and size != -1:
            raise ValueError(f"mesh: {name}={size} must be a positive size (or -1 to infer it)")
        sizes[name] = size
    if list(sizes.values()).count(-1) > 1:
        raise ValueError(f"mesh: only one size can be inferred (-1), got {text!r}")
    return sizes


def mesh_shape(text: str, devices: int) -> tuple[int, int]:
    """``(envs, model)`` for ``devices`` devices from ``--mesh`` text (`mesh_sizes`); a missing size is inferred,
    as what the devices leave (``""``: envs over every device, model 1)."""
    sizes = mesh_sizes(text)
    envs = sizes.get(ENVS, -1)
    model = sizes.get(MODEL, 1 if envs == -1 else -1)
    if envs == -1 and model == -1:
        raise ValueError(f"mesh {text!r}: give the size of envs or of model; the other is inferred")
    known = (envs if envs != -1 else 1) * (model if model != -1 else 1)
    inferred = -1 in (envs, model)
    if devices % known if inferred else known != devices:
        raise ValueError(f"mesh {text!r} needs {'a multiple of ' if inferred else ''}{known} devices; this job has "
                         f"{devices} ({jax.process_count()} process(es) × {jax.local_device_count()} devices)")
    envs, model = (devices // known if envs == -1 else envs), (devices // known if model == -1 else model)
    return envs, model


def make_mesh(shape: tuple[int, int] | None = None, devices=None) -> Mesh:
    """The ``(envs, model)`` mesh over ``devices`` (default: every device of every process, in JAX's order;
    shape default ``(all, 1)``). A model group (a row) must lie within one process."""
    devices = np.asarray(jax.devices() if devices is None else devices).ravel()
    envs, model = (devices.size, 1) if shape is None else shape
    if envs * model != devices.size:
        raise ValueError(f"a mesh of envs={envs} × model={model} needs {envs * model} devices, got {devices.size}")
    grid = devices.reshape(envs, model)
    for row in grid:
        if len({d.process_index for d in row}) > 1:
            raise ValueError(f"model={model} spans processes: a model group gathers its weights every layer, so "
                             f"it must lie within one process's {jax.local_device_count()} devices; use a model "
                             f"size that divides {jax.local_device_count()}")
    return Mesh(grid, AXIS)


def check_num_envs(num_envs: int, mesh: Mesh) -> int:
    """Envs per device; one clear error if ``num_envs`` does not split evenly."""
    devices = mesh.devices.size
    if num_envs < 1 or num_envs % devices:
        raise ValueError(f"num_envs={num_envs} must be a positive multiple of the {devices} devices; use e.g. "
                         f"num_envs={max(1, num_envs // devices) * devices} or {(num_envs // devices + 1) * devices}")
    return num_envs // devices


def model_size(mesh: Mesh) -> int:
    """How many devices share one copy of the reward model."""
    return mesh.shape[MODEL]
