"""Test setup: the JAX CPU backend with 4 virtual devices and a persistent compilation cache.

Both must be configured before JAX initialises its backends, so this runs at import time.
"""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402

_CACHE = pathlib.Path(os.environ.get("REWARDAX_JAX_CACHE", pathlib.Path(__file__).parents[1] / ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
