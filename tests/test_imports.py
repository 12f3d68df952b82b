"""Importing rewardax has no side effects: JAX's internals untouched, no MuJoCo model compiled, no backend or
distributed runtime started. Run in a fresh interpreter, since the test process has done all of them."""

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import mujoco

    compiled = []
    original = mujoco.MjSpec.compile
    mujoco.MjSpec.compile = lambda self, *a, **k: compiled.append(1) or original(self, *a, **k)

    import jax
    from jax._src import xla_bridge
    from jax._src.interpreters import mlir
    from jax._src.lax import linalg

    cpu_lowering = mlir._platform_specific_lowerings["cpu"].get(linalg.cholesky_p)
    import rewardax, rewardax.envs, rewardax.eval, rewardax.models, rewardax.render, rewardax.rewards, rewardax.rl
    import rewardax.train, rewardax.distributed, rewardax.stats
    from rewardax import cpu_cholesky

    assert not cpu_cholesky._installed, "the Cholesky workaround was installed at import"
    assert mlir._platform_specific_lowerings["cpu"].get(linalg.cholesky_p) is cpu_lowering, "a lowering changed"
    assert not compiled, f"{len(compiled)} MuJoCo model(s) compiled at import"
    assert not xla_bridge._backends, "a JAX backend was started at import"
    assert not jax.distributed.is_initialized()
    import sys
    assert "imageio" not in sys.modules, "importing rewardax loads the video writer"  # (PIL comes with brax's trimesh)

    env = rewardax.envs.make("kneeling")        # what making a humanoid does, instead
    assert compiled and cpu_cholesky._installed == cpu_cholesky.affected()
    print("ok")
""")


def test_import_rewardax_has_no_side_effects():
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=240,
                          env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
