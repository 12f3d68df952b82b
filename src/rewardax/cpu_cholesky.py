"""A workaround for a deadlock in jaxlib 0.10's batched Cholesky on the CPU backend.

jaxlib 0.10 factors a batch of matrices (LAPACK ``potrf``) by splitting the batch over XLA's intra-op thread
pool and *blocking* its own pool thread until the pieces are done. When XLA runs as many independent batched
Cholesky calls at once as the pool has threads, every thread waits for work queued behind it and the
program never finishes, at 0% CPU. MJX's physics step is full of them (the mass matrix, the implicit joint
damping, every Newton solver iteration), and `vmap` over envs batches them: with more than one solver
iteration, 64 humanoids on 2 cores hung in 3 of 4 tries. jaxlib 0.11.1 removed the parallel path from
open-source builds; 0.10.2 is the newest release on PyPI today.

`install` keeps LAPACK but lowers a batched Cholesky on CPU to a loop of unbatched LAPACK calls (`lax.map`),
which never enters the parallel path: results are bit-identical and 64 humanoids step at 134 env-steps/s
instead of hanging (an unrolled pure-JAX Cholesky ran at 94). Other backends and other jaxlib versions are
left alone. `rewardax.envs.Humanoid` installs it when an MJX env is made (it only replaces the CPU lowering).
"""

from __future__ import annotations

import jax
import jaxlib
from jax._src.interpreters import mlir
from jax._src.lax import linalg

AFFECTED = ((0, 10), (0, 11, 1))
"""jaxlib versions [from, to) whose CPU LAPACK kernels split batches over the thread pool."""

_installed = False


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def affected(version: str = jaxlib.__version__) -> bool:
    low, high = AFFECTED
    return low <= _version(version) < high


def _lowering(ctx, operand):
    """Unbatched: jaxlib's own LAPACK lowering. Batched: a `lax.map` of unbatched factorisations."""
    (aval,) = ctx.avals_in
    if aval.ndim == 2:
        return linalg._cholesky_cpu_lowering(ctx, operand)

    def one_at_a_time(a):
        flat = a.reshape((-1,) + a.shape[-2:])
        return jax.lax.map(linalg.cholesky, flat).reshape(a.shape)

    return mlir.lower_fun(one_at_a_time, multiple_results=False)(ctx, operand)


def install() -> bool:
    """Register the CPU lowering if this jaxlib needs it; returns whether it is in place."""
    global _installed
    if not _installed and affected():
        mlir.register_lowering(linalg.cholesky_p, _lowering, platform="cpu")
        _installed = True
    return _installed
