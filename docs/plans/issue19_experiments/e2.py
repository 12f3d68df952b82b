"""E2: libtpu compile-only: the E1 toy compiled for a TPU v5e-8 (v5e:2x4) on this CPU host; memory_analysis."""
import os, time
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["TPU_SKIP_MDS_QUERY"] = "1"
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P, NamedSharding
from jax.experimental.topologies import get_topology_desc

t0 = time.time()
topo = get_topology_desc("v5e:2x4", "tpu")
devs = topo.devices
print(len(devs), devs[0].device_kind, devs[0].platform, "default backend", jax.default_backend())
L, D, B = 8, 4096, 64
AXES = ("envs", "model")
def forward(w_stack, x):
    def step(h, w):
        w = jax.lax.all_gather(w, "model", axis=w.ndim - 1, tiled=True)
        return jnp.tanh((h @ w.astype(jnp.bfloat16)).astype(jnp.float32)).astype(jnp.bfloat16), None
    return jax.lax.scan(jax.checkpoint(step), x, w_stack)[0]
def body(w, x):
    g = jax.grad(lambda w, x: (forward(w, x).astype(jnp.float32) ** 2).sum())(w, x)
    return forward(w, x), jax.lax.psum(g, "envs")
for shape in [(4, 2), (2, 4), (1, 8)]:
    mesh = Mesh(np.asarray(devs).reshape(shape), AXES)
    f = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(None, None, "model"), P(AXES)),
                              out_specs=(P(AXES), P(None, None, "model")), check_vma=False))
    w = jax.ShapeDtypeStruct((L, D, D), jnp.bfloat16, sharding=NamedSharding(mesh, P(None, None, "model")))
    x = jax.ShapeDtypeStruct((B * 8, D), jnp.bfloat16, sharding=NamedSharding(mesh, P(AXES)))
    c = f.lower(w, x).compile()
    m = c.memory_analysis()
    print(shape, "arg", m.argument_size_in_bytes, "out", m.output_size_in_bytes, "temp", m.temp_size_in_bytes,
          "| W bf16 global", L * D * D * 2, "per device", L * D * D * 2 // shape[1])
# a program that cannot fit 16 GB: what does compile say?
mesh = Mesh(np.asarray(devs).reshape(8, 1), AXES)
big = jax.ShapeDtypeStruct((8, 1 << 30), jnp.float32, sharding=NamedSharding(mesh, P()))  # 4 GiB x 8 rows... 32 GiB
try:
    jax.jit(lambda a: a * 2).lower(big).compile().memory_analysis()
    print("32 GiB replicated: compiled (no check)")
except Exception as e:
    print("32 GiB replicated:", type(e).__name__, str(e).splitlines()[0][:200])
print("total", round(time.time() - t0, 1), "s")
