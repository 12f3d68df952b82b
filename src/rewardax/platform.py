"""The platform a program is traced for: the backend JAX runs on, unless a program is being compiled ahead of time
for another (`compiling_for`: benchmarks/memory.py compiles TPU programs on a CPU host). Code that picks a form per
platform asks `target_platform`: attention and the renderer loop over rows on CPU (cache-friendly) and vectorise
on accelerators.

A leaf module (JAX only). Functions traced inside `compiling_for` must be fresh traces: jit caches do not see it.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax

_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar("rewardax_target_platform", default=None)


def target_platform() -> str:
    """``"cpu"``, ``"gpu"`` or ``"tpu"``: what the program being traced will run on."""
    return _TARGET.get() or jax.default_backend()


@contextlib.contextmanager
def compiling_for(platform: str):
    """Trace as for ``platform`` (``"cpu"``, ``"gpu"``, ``"tpu"``) whatever the backend JAX runs on."""
    if platform not in ("cpu", "gpu", "tpu"):
        raise ValueError(f"platform must be cpu, gpu or tpu, got {platform!r}")
    token = _TARGET.set(platform)
    try:
        yield
    finally:
        _TARGET.reset(token)
