"""What every benchmark shares, once: the machine it ran on, XLA's FLOP count, timing and JSON lines.

The scripts import it as a sibling module (``from common import ...``: ``python benchmarks/x.py`` puts this folder
on the path; tests add it), the way experiments/ share ``train.py``.

- `machine`: the CPU (model, the vector / matrix flags XLA's CPU code generator uses: AVX2, AVX-512, AMX, ...),
  its cores, the JAX backend, device kind and count, and the versions of the libraries that matter;
- `flops`: FLOPs of one call from XLA's cost analysis (it counts a loop body ONCE whatever its trip count, so
  count loop-free pieces or unrolled twins);
- `timed` / `time_calls`: one warm-up call (which compiles), then ``repeats`` timed calls; reports the BEST and
  the MEDIAN of the repeats (benchmarks quote the best as their speed: the least disturbed by other work);
- `reset_envs`, `scan_steps`, `env_rungs`, `env_piece_flops`: a batch of reset envs, ``T`` steps of it in one
  `lax.scan` (the loop every env benchmark times), the physics and render loops, their FLOPs per env-step;
- `emit`: one JSON object per line on stdout (and optionally a file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from typing import Any, Callable

import jax

CPU_FLAG_PREFIXES = ("avx", "amx", "fma", "f16c", "asimd", "sve")
"""CPU flags worth recording (x86 AVX / AVX-512 / AMX / FMA, Arm NEON / SVE): they decide which kernels XLA's CPU
backend and PyTorch can use, so the same core count can differ several-fold in matmul speed."""
LIBRARIES = ("jaxlib", "mujoco", "flax", "torch", "transformers")
"""Libraries whose versions are recorded when installed (read from their metadata: nothing is imported)."""


def cpu() -> dict[str, Any]:
    """The CPU's model name and its `CPU_FLAG_PREFIXES` flags (from /proc/cpuinfo on Linux; elsewhere only what
    `platform` knows)."""
    fields = {}  # the first core's entries
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
    model = fields.get("model name") or fields.get("Model") or platform.processor() or platform.machine()
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    return dict(cpu=model, cpu_flags=sorted(f for f in flags if f.startswith(CPU_FLAG_PREFIXES)))


def machine() -> dict[str, Any]:
    """Where a measurement ran: CPU model and flags, cores (all, and those this process may use), platform, JAX
    backend, device kind and count, ``XLA_FLAGS`` when set, and library versions."""
    versions = {}
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    xla_flags = {"xla_flags": os.environ["XLA_FLAGS"]} if os.environ.get("XLA_FLAGS") else {}
    return dict(**cpu(), cpu_count=os.cpu_count(), cpus_usable=usable,
                processor=platform.processor() or platform.machine(), platform=platform.platform(),
                backend=jax.default_backend(), device=jax.devices()[0].device_kind, devices=jax.device_count(),
                jax=jax.__version__, **versions, **xla_flags)


def abstract(tree):
    """Shapes and dtypes of the arrays in ``tree`` (what tracing needs; nothing is computed or copied)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, "shape") else x, tree)


def flops(fn: Callable, *args, compile: bool = True) -> float:
    """FLOPs of one call ``fn(*args)`` by XLA's cost analysis of the compiled program (a multiply-add counts 2).

    XLA counts a loop body once whatever its trip count: count loop-free pieces or unrolled twins. Attention is
    traced in its loop-free form (`rewardax.models.layers.vectorised_attention`; same FLOPs, no per-head loop).
    ``args`` may be arrays or `jax.ShapeDtypeStruct`; only their shapes matter. NaN when XLA reports nothing.
    ``compile=False`` counts the program as lowered, before XLA's optimisations: seconds instead of the hour that
    compiling a billion-parameter model with its layers unrolled takes on a CPU; for the tiny yes-token model it
    is within 0.1% of the compiled count (forward) and 3% (gradient), but 24% off for the renderer's elementwise
    work, so use it for matmul-bound models only."""
    from rewardax.models.layers import vectorised_attention

    with vectorised_attention():  # a fresh trace: the lambda is a new function for jit's cache
        lowered = jax.jit(lambda *a: fn(*a)).lower(*abstract(args))
        cost = (lowered.compile() if compile else lowered).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", float("nan")))


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of a warm-up call and of ``repeats`` timed calls after it."""

    best_s: float
    """The fastest timed call: what the benchmarks quote as their speed."""
    median_s: float
    """The median timed call (how much the best flatters is best_s against median_s)."""
    repeats: int
    first_call_s: float
    """The warm-up call (compiles, unless the function came compiled)."""
    compile_s: float = 0.0
    """Lowering and compiling, when `timed` did it before the warm-up call."""
    output: Any = None
    """What the warm-up call returned."""

    @property
    def warmup_s(self) -> float:
        """Compiling plus the warm-up call."""
        return self.compile_s + self.first_call_s


def time_calls(call: Callable[[], Any], repeats: int, compile_s: float = 0.0) -> Timing:
    """Time ``call()`` (waiting for its JAX outputs): one warm-up call, then ``repeats`` timed calls; best and
    median of those. ``call`` may keep state between calls (a training step fed its own output)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    start = time.perf_counter()
    output = jax.block_until_ready(call())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return Timing(min(times), statistics.median(times), repeats, first, compile_s, output)


def timed(fn: Callable, *args, repeats: int) -> Timing:
    """``jax.jit(fn)`` compiled for ``args`` (compile_s), then `time_calls` of it: a warm-up call and ``repeats``
    timed calls, best and median."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    return time_calls(lambda: compiled(*args), repeats, compile_s)


def reset_envs(env, key: jax.Array, num_envs: int):
    """``num_envs`` freshly reset envs (the batched state the loops start from), by one jitted program: the same
    program in every script, so a persistent compilation cache can serve them all."""
    return jax.jit(jax.vmap(env.reset))(jax.random.split(key, num_envs))


def scan_steps(env, observe: Callable) -> Callable:
    """``run(state, actions [T, B, A], *extra) -> [T, B]``: ``T`` steps of the vmapped ``env.step`` in one
    `lax.scan`, each step giving ``observe(state, *extra)`` [B]. Make ``observe`` need all the work measured (a
    reduction over every pixel, not one pixel, which XLA could compute alone)."""

    def run(state, actions, *extra):
        def one(s, a):
            s = jax.vmap(env.step)(s, a)
            return s, observe(s, *extra)

        return jax.lax.scan(one, state, actions)[1]

    return run


def env_rungs(env, render) -> dict[str, Callable]:
    """The loops the env benchmarks time, ``(state, actions [T, B, A]) -> [T, B]`` (`scan_steps`): ``physics``
    alone, and ``render``, physics + every env's frame rendered by ``render`` on every step (reduced over every
    pixel: none can be skipped). The same programs in every script, so a compilation cache serves them all."""
    return {"physics": scan_steps(env, lambda s: s.obs[:, 0]),
            "render": scan_steps(env, lambda s: render(s.pipeline_state).rgb.mean(axis=(1, 2, 3)))}


def env_piece_flops(env, render, data) -> dict[str, float]:
    """FLOPs of one env-step of an MJX env's ``physics`` (one `mjx.step` × frame_skip: MJX's solver iterates
    inside a step and its loop body counts once, so a lower bound) and of rendering one frame of ``data`` with
    ``render`` (loop-free: exact)."""
    with contextlib.redirect_stdout(sys.stderr):  # mujoco.mjx prints "Failed to import warp" to stdout
        from mujoco import mjx

    return dict(physics=env.config.frame_skip * flops(lambda d: mjx.step(env.sys, d), data),
                render=flops(lambda d: render(jax.tree.map(lambda x: x[None], d)).rgb, data))


SIZED_REWARDS = ("tiny", "internvl3-1b", "internvl3-2b", "internvl3-8b", "clip-bigg")
"""Reward models by size name: the tests' tiny random yes-token model, the pointwise yes-token reward at the
InternVL3 shapes (`rewardax.models.INTERNVL3_SHAPES`), VLM-RM's CLIP ViT-bigG-14 (open_clip's architecture)."""


def sized_reward(env, name: str, tmp: str, *, scan_unroll: bool = False):
    """The reward of size ``name`` (`SIZED_REWARDS`) for ``env``'s task, with ABSTRACT bfloat16 weights (only
    ``tiny``'s are real): what memory analysis and FLOP counts need, so an 8 B model costs nothing to build.
    ``scan_unroll``: the layer scans unrolled (XLA counts a loop body once; `flops` needs every layer). The
    prompts use the tiny tokenizers written under ``tmp`` (a prompt is its real length ± a few tokens)."""
    import jax.numpy as jnp
    from flax import nnx

    with contextlib.redirect_stdout(sys.stderr):  # mujoco.mjx prints "Failed to import warp" to stdout
        from rewardax.models import CLIP, InternVL, internvl3_config_dict, load_tokenizer, write_random_vlm
        from rewardax.models.clip_checkpoints import open_clip_spec, tiny_clip_vocab, write_clip_tokenizer
        from rewardax.models.internvl import InternVLSpec
        from rewardax.models.vlm_processor import VLMProcessor
        from rewardax.rewards import ClipReward, YesTokenReward, YesTokenRewardConfig

    if name not in SIZED_REWARDS:
        raise ValueError(f"unknown reward size {name!r}: choose from {', '.join(SIZED_REWARDS)}")
    bf16 = dict(dtype_mm=jnp.bfloat16, param_dtype=jnp.bfloat16)
    if name == "clip-bigg":
        spec = open_clip_spec("ViT-bigG-14")
        vocab, merges = tiny_clip_vocab()
        write_clip_tokenizer(os.path.join(tmp, "clip"), vocab, merges)
        tokenizer = load_tokenizer(os.path.join(tmp, "clip"))
        graphdef, params = nnx.split(nnx.eval_shape(lambda: CLIP(spec, rngs=nnx.Rngs(0), **bf16)))
        reward = jax.eval_shape(lambda p: ClipReward.create(nnx.merge(graphdef, p), tokenizer, env.task.goal,
                                                            env.task.baseline), params)
        twin = nnx.eval_shape(lambda: CLIP(spec, scan_unroll=True, rngs=nnx.Rngs(0), **bf16)).vision
    else:
        if name == "tiny":
            reward = YesTokenRewardConfig(checkpoint="random").build(env)
            spec = nnx.merge(reward.graphdef, reward.params).spec
        else:
            processor_dir = write_random_vlm(os.path.join(tmp, "tokenizer"))  # the tiny tokenizer, chat template
            image_token = VLMProcessor.from_directory(processor_dir, 56, 4).image_token_id
            spec = InternVLSpec.from_hf_config(internvl3_config_dict(name, image_token))
            processor = VLMProcessor.from_directory(processor_dir, spec.vision.image_size, spec.tokens_per_image)
            graphdef, params = nnx.split(nnx.eval_shape(lambda: InternVL(spec, rngs=nnx.Rngs(0), **bf16)))
            reward = jax.eval_shape(
                lambda p: YesTokenReward.create(nnx.merge(graphdef, p), processor, env.task.goal[0]), params)
        twin = nnx.eval_shape(lambda: InternVL(spec, scan_unroll=True, rngs=nnx.Rngs(0), **bf16))
    return reward.replace(graphdef=nnx.split(twin)[0]) if scan_unroll else reward


def emit(line: dict, out=None) -> None:
    """Print ``line`` as one JSON line on stdout (flushed) and, with ``out`` (an open text file), write it there."""
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        out.write(text + "\n")
        out.flush()
