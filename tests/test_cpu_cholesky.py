"""The jaxlib 0.10 CPU Cholesky deadlock and its workaround (rewardax.cpu_cholesky)."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardax import cpu_cholesky

# Eight independent batched factorisations in one program: on jaxlib 0.10.2 with 2 CPU threads this hung
# every time (4 of 4) without the workaround.
PROGRAM = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp
    if sys.argv[1] == "workaround":
        from rewardax import cpu_cholesky
        cpu_cholesky.install()
    @jax.jit
    def factor_all(x):
        eye = 23 * jnp.eye(23)
        return [jax.scipy.linalg.cho_factor(x * (1 + i) @ jnp.swapaxes(x, -1, -2) + eye)[0] for i in range(8)]
    x = jax.random.normal(jax.random.key(0), (256, 23, 23))
    jax.block_until_ready(factor_all(x))
    print("done")
""")


def test_affected_versions():
    assert cpu_cholesky.affected("0.10.2") and cpu_cholesky.affected("0.11.0")
    assert not cpu_cholesky.affected("0.9.2") and not cpu_cholesky.affected("0.11.1")


@pytest.mark.skipif(not cpu_cholesky.affected(), reason="this jaxlib has no parallel LAPACK path")
@pytest.mark.timeout(300)
def test_concurrent_batched_cholesky_finishes_with_the_workaround():
    env = {"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROGRAM, "workaround"], capture_output=True, text=True,
                          timeout=240, env=env)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-2000:]


def test_batched_cholesky_equals_unbatched_lapack_bit_for_bit():
    assert cpu_cholesky.install() == cpu_cholesky.affected()
    a = jax.random.normal(jax.random.key(1), (3, 5, 7, 7))
    spd = a @ jnp.swapaxes(a, -1, -2) + 7 * jnp.eye(7)
    batched = jax.jit(jnp.linalg.cholesky)(spd)
    one_by_one = np.stack([np.asarray(jax.jit(jnp.linalg.cholesky)(m)) for m in spd.reshape(-1, 7, 7)])
    np.testing.assert_array_equal(np.asarray(batched).reshape(-1, 7, 7), one_by_one)
    np.testing.assert_allclose(np.asarray(batched @ jnp.swapaxes(batched, -1, -2)), np.asarray(spd), rtol=1e-5)
    # not positive definite: NaN, as jaxlib's own lowering gives
    failed = np.asarray(jax.jit(jnp.linalg.cholesky)(-spd))
    assert np.isnan(failed[..., np.tril_indices(7)[0], np.tril_indices(7)[1]]).all()
