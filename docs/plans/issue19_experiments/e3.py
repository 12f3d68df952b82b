"""E3: one Qwen2.5-7B-width decoder layer's projections (q,k,v,o,gate,up,down; D 3584, F 18944, KV 512), bf16
weights, on a 1x8 CPU mesh: FSDP (weights gathered, each device its own C frames) vs TP (columns/rows split, the
group's 8C frames on every device, psum after o and down). Compile only; memory_analysis and collective bytes."""
import os, re, time
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["TPU_SKIP_MDS_QUERY"] = "1"
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P, NamedSharding

t0 = time.time()
D, F, KV, T, M = 3584, 18944, 512, 271, 8
bf = jnp.bfloat16
shapes = dict(q=(D, D), k=(D, KV), v=(D, KV), o=(D, D), gate=(D, F), up=(D, F), down=(F, D))
col = {"q", "k", "v", "gate", "up"}

def mm(x, w):
    return jnp.matmul(x.astype(bf), w.astype(bf), preferred_element_type=jnp.float32)

def layer(x, w):
    q, k, v = mm(x, w["q"]), mm(x, w["k"]), mm(x, w["v"])
    a = q + jnp.tile(k + v, (1, q.shape[-1] // k.shape[-1]))  # stands in for attention (no head split here)
    x = x + mm(a, w["o"])
    return x + mm(jax.nn.silu(mm(x, w["gate"])) * mm(x, w["up"]), w["down"])

def fsdp(x, w):
    return layer(x, {n: jax.lax.all_gather(a, "model", axis=1, tiled=True) for n, a in w.items()})

def tp(x, w):
    q, k, v = mm(x, w["q"]), mm(x, w["k"]), mm(x, w["v"])
    a = q + jnp.tile(k + v, (1, q.shape[-1] // k.shape[-1]))
    x = x + jax.lax.psum(mm(a, w["o"]), "model")
    return x + jax.lax.psum(mm(jax.nn.silu(mm(x, w["gate"])) * mm(x, w["up"]), w["down"]), "model")

def collectives(text):
    out = {}
    for kind in ("all-gather", "all-reduce", "reduce-scatter"):
        total = 0
        for line in text.splitlines():
            m = re.search(rf"= (.*?) {kind}(?:-start)?\(", line)
            if not m:
                continue
            for dt, dims in re.findall(r"(\w+)\[([\d,]*)\]", m.group(1)):
                n = int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
                total += n * {"bf16": 2, "f32": 4, "s32": 4, "u32": 4, "pred": 1}.get(dt, 4)
        out[kind] = round(total / 2**20, 1)
    return out

from jax.experimental.topologies import get_topology_desc
targets = {"cpu": jax.devices(), "v5e-8": get_topology_desc("v5e:2x4", "tpu").devices}
shown = False
for (target, devices), C, (name, fn) in [(t, c, f) for t in targets.items() for c in (1, 16, 64)
                                          for f in (("fsdp", fsdp), ("tp", tp))]:
        mesh = Mesh(np.asarray(devices).reshape(1, M), ("envs", "model"))
        if name == "fsdp":
            wspec = {n: P(None, "model") for n in shapes}
            x = jax.ShapeDtypeStruct((M * C * T, D), jnp.float32, sharding=NamedSharding(mesh, P(("envs", "model"))))
            xspec = P(("envs", "model"))
        else:
            wspec = {n: (P(None, "model") if n in col else P("model", None)) for n in shapes}
            x = jax.ShapeDtypeStruct((M * C * T, D), jnp.float32, sharding=NamedSharding(mesh, P("envs")))
            xspec = P("envs")
        w = {n: jax.ShapeDtypeStruct(s, bf, sharding=NamedSharding(mesh, wspec[n])) for n, s in shapes.items()}
        f = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(xspec, wspec), out_specs=xspec, check_vma=False))
        c = f.lower(x, w).compile()
        m = c.memory_analysis()
        if target != "cpu" and not shown:
            print(m); shown = True
        print(f"{target} C={C:3d} frames/device {name:4s}: arg {m.argument_size_in_bytes / 2**20:8.1f} MiB temp "
              f"{m.temp_size_in_bytes / 2**20:8.1f} MiB | collective output MiB {collectives(c.as_text())} "
              f"| flops/device {c.cost_analysis().get('flops', 0) / 1e12:.2f} T")
print("total", round(time.time() - t0, 1), "s")
