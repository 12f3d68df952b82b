"""E1: FSDP toy: all_gather inside lax.scan under a fully manual 2-axis shard_map (check_vma=False), 8 CPU devices.
Forward + gradient vs one device; tuple collectives; per-device memory_analysis; remat vs no remat temps."""
import os, sys, time
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P

t0 = time.time()
PSUM = "--psum" in sys.argv  # E1b: plain psum instead of device_sum, at width 512
L, D, B = 8, (512 if PSUM else 256), 32
AXES = ("envs", "model")
W = jax.random.normal(jax.random.key(0), (L, D, D)) / 16
X = jax.random.normal(jax.random.key(1), (B, D))

def forward(w_stack, x, gather, remat):
    def step(h, w):
        if gather:
            w = jax.lax.all_gather(w, "model", axis=w.ndim - 1, tiled=True)  # [D, D/M] -> [D, D]
        return jnp.tanh(h @ w), None
    if remat:
        step = jax.checkpoint(step)
    return jax.lax.scan(step, x, w_stack)[0]

loss = lambda w, x, g, r: (forward(w, x, g, r) ** 2).sum()
ref_out, ref_grad = forward(W, X, False, False), jax.grad(loss)(W, X, False, False)

def device_sum(x, axes):
    n, me = jax.lax.psum(1, axes), jax.lax.axis_index(axes)
    rows = jnp.where((jnp.arange(n) == me).reshape((n,) + (1,) * x.ndim), x[None], 0)
    return jax.lax.psum(rows, axes).sum(0)

for shape in [(8, 1), (4, 2), (2, 4)]:
    M = shape[1]
    mesh = Mesh(np.asarray(jax.devices()).reshape(shape), AXES)
    for remat in (True, False):
        def body(w, x):
            gather = M > 1
            out = forward(w, x, gather, remat)
            xv = jax.lax.pcast(x, AXES, to="varying")  # tuple pcast (the agent's path in ppo.py)
            g = jax.grad(loss)(w, xv, gather, remat)
            total = (lambda g, axes: jax.lax.psum(g, axes)) if PSUM else device_sum
            g = total(g, "envs") if gather else total(g, AXES)
            return out, g, jax.lax.axis_index(AXES)[None], device_sum(jnp.ones(()), AXES)
        f = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(None, None, "model"), P(AXES)),
                                  out_specs=(P(AXES), P(None, None, "model"), P(AXES), P()), check_vma=False))
        c = f.lower(W, X).compile()
        m = c.memory_analysis()
        out, g, idx, n = f(W, X)
        print(f"mesh {shape} remat={remat}: out err {float(jnp.abs(out - ref_out).max()):.2e} grad err "
              f"{float(jnp.abs(g - ref_grad).max() / jnp.abs(ref_grad).max()):.2e} axis_index {list(map(int, idx))} "
              f"n={float(n)} | arg {m.argument_size_in_bytes} out {m.output_size_in_bytes} "
              f"temp {m.temp_size_in_bytes} (W global {W.nbytes}, per device {W.nbytes // M}; X/8 {X.nbytes // 8}) "
              f"shard {g.addressable_shards[0].data.shape}")
hlo = c.as_text()
print("all-gather in HLO:", hlo.count("all-gather"), "reduce-scatter:", hlo.count("reduce-scatter"),
      "| total", round(time.time() - t0, 1), "s")
