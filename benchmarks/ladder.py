"""The end-to-end ladder: physics → + render → + CLIP reward → + PPO update. JSON lines; no assertions.

    python benchmarks/ladder.py                                # CPU: 1, 4 and 16 envs
    python benchmarks/ladder.py --num-envs 1 4 --steps 2 --ppo.num-steps 2 --ppo.epochs 1 --ppo.minibatches 1
    python benchmarks/ladder.py --num-envs 256 1024 4096 --bfloat16    # one GPU / TPU chip

Every rung is one jitted program on ONE device (rung 4 runs `make_train_step` on a one-device mesh), so all
numbers are per chip, like the projections. env-steps/s = envs × steps / seconds, best of ``--repeats`` calls after
a warm-up call that compiles. Rungs 1–3 are a `lax.scan` over ``--steps`` steps of a vmapped batch, with fixed
random actions:

1. ``physics``: `env.step` (the MJX humanoid of the task, frame_skip 5);
2. ``render``:  + every env's frame rendered by the task camera at ``--frame-size``² (224);
3. ``reward``:  + every frame scored by the VLM-RM goal–baseline `ClipReward` with a ViT-B/32-shaped CLIP
   (vision width 768 × 12 layers, patch 32, 224 px; text 512 × 12; projection 512) with random weights (speed
   does not depend on the weights): float32 matmuls, or bfloat16 with ``--bfloat16`` (for accelerators);
4. ``update``:  one whole `rewardax.rl.step.make_train_step` iteration: a rollout of ``ppo.num_steps`` steps
   (policy, physics, render, reward, auto-reset), reward scaling, GAE and ``ppo.epochs × ppo.minibatches`` PPO
   steps; its env-steps are num_envs × ppo.num_steps.

FLOPs per env-step come from XLA's cost analysis of loop-free pieces, since it counts a loop body once whatever
its trip count (see benchmarks/env_render.py and benchmarks/clip_tower.py):

- ``physics``: one `mjx.step` × frame_skip. MJX's constraint solver iterates inside a step and its loop body
  counts once, so this is a lower bound;
- ``render``: one frame (the renderer has no loops: exact);
- ``clip``: preprocessing + image embedding + reward of one frame, with the layer `lax.scan` fully unrolled
  (``scan_unroll=True``, as clip_tower.py does; ~8.8 GFLOPs for B/32);
- ``policy`` (rung 4): the policy sample and two value evaluations of one env-step;
- ``update`` (rung 4): one minibatch gradient + Adam step × epochs × minibatches ÷ env-steps per iteration
  (GAE and reward scaling, scans of a few FLOPs per step, are left out).

``projection`` lines are FLOP-count ARITHMETIC, NOT MEASUREMENTS: env-steps/s a chip would reach if each piece
ran at a stated fraction of a peak, time per env-step = Σ FLOPs(piece) / rate(piece) (no overlap between pieces).
CLIP is assumed to run in bfloat16 on the matrix units (tensor cores / MXU) whatever this run used; physics,
render and the small policy MLPs are float32 and not matmul-heavy, so they will run far below any matmul peak.
Three views per chip:

- ``all_at_bf16_matrix_peak``: everything at utilisation × the bf16 matrix peak (the naive upper bound);
- ``per_dtype_peak``: CLIP at utilisation × bf16 matrix peak, the float32 pieces at utilisation × fp32 vector peak;
- ``realistic``: CLIP at utilisation × bf16 matrix peak, the float32 pieces at `VECTOR_EFFICIENCY` × fp32
  vector peak (an assumption: MJX and the ray caster are gather/branch-heavy and far from dense arithmetic).

None of them models memory bandwidth, kernel launches or compilation choices, and physics FLOPs are a lower bound,
so even the realistic view is optimistic for the physics-heavy rungs. The assumptions are the named constants
below (peaks, utilisation, vector efficiency); rung 4's projection uses the FLOPs counted at the largest
``--num-envs`` (the update's share per env-step barely depends on it). A measurement that runs out of device memory
prints an ``error`` line and the ladder goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import optax
import tyro
from flax import nnx

with contextlib.redirect_stdout(sys.stderr):  # mujoco.mjx prints "Failed to import warp" to stdout: keep it JSON
    from mujoco import mjx

    import rewardax.envs as envs
    from rewardax.models import CLIP, load_tokenizer
    from rewardax.models.clip_checkpoints import tiny_clip_config_dict, tiny_clip_vocab, write_clip_tokenizer
    from rewardax.rewards import ClipReward
    from rewardax.rl import Batch, PPOConfig, make_optimizer, ppo_loss
    from rewardax.rl.step import agent_for, init, make_train_step, mesh

# ---- Projection assumptions (peak FLOP/s per chip; dense, no sparsity) ----------------------------------------
H100_SXM_BF16_MATRIX = 989e12
"""H100 SXM dense bf16 tensor-core peak."""
H100_SXM_FP32_VECTOR = 67e12
"""H100 SXM fp32 peak without tensor cores (CUDA cores, FMA counted as 2)."""
TPU_V5E_BF16_MATRIX = 197e12
"""TPU v5e chip bf16 MXU peak."""
TPU_V5E_FP32_VECTOR = 6e12
"""TPU v5e fp32 vector (VPU) peak: NOT a published figure, a rough estimate (8 sublanes × 128 lanes × ~4 vector
ALUs × ~1.5 GHz). Replace it when a better number is known."""
CHIPS = {
    "H100 SXM": dict(bf16_matrix=H100_SXM_BF16_MATRIX, fp32_vector=H100_SXM_FP32_VECTOR),
    "TPU v5e": dict(bf16_matrix=TPU_V5E_BF16_MATRIX, fp32_vector=TPU_V5E_FP32_VECTOR),
}
UTILISATION = 0.3
"""Default fraction of the peak the matrix work (CLIP) reaches."""
VECTOR_EFFICIENCY = 0.05
"""Default fraction of the fp32 vector peak physics and rendering reach in the ``realistic`` projection."""

# ViT-B/32 sizes (OpenAI CLIP ViT-B/32, as in transformers' default CLIPConfig).
VIT_B32 = dict(
    projection_dim=512,
    vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       image_size=224, patch_size=32, projection_dim=512),
    text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                     vocab_size=49408, projection_dim=512),
)

RUNGS = ("physics", "render", "reward", "update")


@dataclasses.dataclass(frozen=True)
class Args:
    num_envs: tuple[int, ...] = (1, 4, 16)
    """Env counts to measure (on an accelerator: e.g. 256 1024 4096)."""
    steps: int = 10
    """Env steps per compiled call of rungs 1-3 (a `lax.scan`)."""
    repeats: int = 3
    """Timed calls per measurement (after one warm-up call that compiles)."""
    rungs: tuple[str, ...] = RUNGS
    """Which rungs to run (physics, render, reward, update)."""
    task: str = "splits"
    """Task: the env, its camera and the CLIP prompts."""
    frame_size: int = 224
    """Rendered frame side in pixels."""
    bfloat16: bool = False
    """CLIP matmuls in bfloat16 (for accelerators; float32 on CPU)."""
    ppo: PPOConfig = PPOConfig(num_steps=8, epochs=4, minibatches=4, hidden_sizes=(256, 256))
    """PPO settings of rung 4 (its rollout length is ppo.num_steps, not --steps)."""
    utilisation: float = UTILISATION
    """Fraction of peak assumed in the projections (matrix work; all work in the naive view)."""
    vector_efficiency: float = VECTOR_EFFICIENCY
    """Fraction of the fp32 vector peak assumed for physics/render in the realistic projection."""
    seed: int = 0


def machine() -> dict:
    return dict(backend=jax.default_backend(), device=jax.devices()[0].device_kind, devices=jax.device_count(),
                cpu_count=os.cpu_count(), processor=platform.processor() or platform.machine(), jax=jax.__version__)


def flops(fn, *args) -> float:
    """FLOPs of one call according to XLA's cost analysis (loop bodies counted once; attention is traced in its
    loop-free form for it). Args may be abstract."""
    from rewardax.models.layers import vectorised_attention

    with vectorised_attention():
        cost = jax.jit(lambda *a: fn(*a)).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", float("nan")))


def timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(best seconds per call over ``repeats``, seconds of the compiling warm-up)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    warmup = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - start)
    return best, warmup


# ---- The reward model -------------------------------------------------------------------------------------------


def vit_b32_reward(env, dtype_mm) -> tuple[ClipReward, ClipReward]:
    """A `ClipReward` with a random ViT-B/32-shaped CLIP, and its twin with the layer scans unrolled (same
    weights, for the FLOP count). The text side uses the tiny CLIP BPE of `write_random_clip` (its end-of-text id
    is set as the config's, so the text tower pools at the right token); the text vocabulary keeps B/32's 49408
    rows. Text embeddings are computed once, so neither affects speed."""
    vocab, merges = tiny_clip_vocab()
    config = tiny_clip_config_dict(len(vocab), **VIT_B32)  # keeps the tiny tokenizer's bos/eos/pad ids
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer(tmp, vocab, merges)
        tokenizer = load_tokenizer(tmp)
    model = CLIP(config, dtype_mm=dtype_mm, rngs=nnx.Rngs(0))
    reward = ClipReward.create(model, tokenizer, env.task.goal, env.task.baseline)
    unrolled = nnx.eval_shape(lambda: CLIP(config, dtype_mm=dtype_mm, scan_unroll=True, rngs=nnx.Rngs(0)))
    return reward, reward.replace(graphdef=nnx.split(unrolled)[0])


# ---- FLOPs of loop-free pieces ------------------------------------------------------------------------------------


def piece_flops(env, render, reward_unrolled, frame_size: int, key) -> dict[str, float]:
    """FLOPs of one env-step of physics, render and CLIP reward."""
    data = jax.jit(env.reset)(key).pipeline_state
    frame = jax.ShapeDtypeStruct((1, frame_size, frame_size, 3), jnp.uint8)
    return dict(
        physics=env.config.frame_skip * flops(lambda d: mjx.step(env.sys, d), data),
        render=flops(lambda d: render(jax.tree.map(lambda x: x[None], d)).rgb, data),
        clip=flops(lambda r, f: r(f)[0], reward_unrolled, frame),
    )


def rl_flops(env, ppo: PPOConfig, num_envs: int) -> dict[str, float]:
    """FLOPs per env-step of the policy (sample + 2 value evaluations) and of the PPO update's share."""
    agent, params = agent_for(env, ppo, jax.random.key(0))
    obs_size, action_size = env.observation_size, env.action_size
    obs = jax.ShapeDtypeStruct((1, obs_size), jnp.float32)
    keys = jax.random.split(jax.random.key(0), 1)
    policy = (flops(agent.act, params, obs, keys)
              + 2 * flops(agent.value, params, obs))

    rows = ppo.num_steps // ppo.minibatches * num_envs
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
    minibatch = Batch(obs=f32(rows, obs_size), action=f32(rows, action_size), log_prob=f32(rows), value=f32(rows),
                      advantage=f32(rows), target=f32(rows))
    optimizer = make_optimizer(ppo, total_updates=1)
    opt_state = optimizer.init(params)

    def gradient_step(params, opt_state, minibatch):
        grads, _ = jax.grad(ppo_loss, has_aux=True)(params, agent, minibatch, ppo)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    per_iteration = ppo.epochs * ppo.minibatches * flops(gradient_step, params, opt_state, minibatch)
    return dict(policy=policy, update=per_iteration / (ppo.num_steps * num_envs))


# ---- Rungs ------------------------------------------------------------------------------------------------------


def scan_rungs(env, render):
    """Rungs 1-3 as functions ``(reward, state, actions [T, B, A]) -> [T, B]`` whose output needs all the rung's
    work. The reward model is an argument (as in `make_train_step`), not a closed-over constant."""

    def physics(reward, state, actions):
        def one(s, a):
            s = jax.vmap(env.step)(s, a)
            return s, s.obs[:, 0]
        return jax.lax.scan(one, state, actions)[1]

    def physics_render(reward, state, actions):
        def one(s, a):
            s = jax.vmap(env.step)(s, a)
            return s, render(s.pipeline_state).rgb.mean(axis=(1, 2, 3))  # a reduction: no pixel can be skipped
        return jax.lax.scan(one, state, actions)[1]

    def physics_render_reward(reward, state, actions):
        def one(s, a):
            s = jax.vmap(env.step)(s, a)
            return s, reward(render(s.pipeline_state).rgb, s)[0]
        return jax.lax.scan(one, state, actions)[1]

    return {"physics": physics, "render": physics_render, "reward": physics_render_reward}


def time_update(env, reward, args: Args, num_envs: int) -> tuple[float, float]:
    """(best seconds per training iteration, seconds of the compiling warm-up) on a one-device mesh."""
    one_device = mesh(jax.devices()[:1])
    total_updates = (args.repeats + 1) * args.ppo.epochs * args.ppo.minibatches
    train_step = make_train_step(env, args.ppo, num_envs, total_updates, args.frame_size, mesh_=one_device)
    state, batch = init(env, jax.random.key(args.seed), args.ppo, num_envs, total_updates, mesh_=one_device)
    start = time.perf_counter()
    state, batch, metrics = jax.block_until_ready(train_step(state, batch, reward))  # compiles
    warmup = time.perf_counter() - start
    best = float("inf")
    for _ in range(args.repeats):  # state and envs are donated: feed each iteration's output to the next
        start = time.perf_counter()
        state, batch, metrics = jax.block_until_ready(train_step(state, batch, reward))
        best = min(best, time.perf_counter() - start)
    return best, warmup


# ---- Projections --------------------------------------------------------------------------------------------------


def projections(pieces: dict[str, float], utilisation: float, vector_efficiency: float) -> dict[str, dict]:
    """Projected env-steps/s per chip (see the module docstring). ``pieces``: FLOPs per env-step by piece."""
    matrix = pieces.get("clip", 0.0)
    vector = sum(v for k, v in pieces.items() if k != "clip")
    out = {}
    for chip, peak in CHIPS.items():
        mm = utilisation * peak["bf16_matrix"]
        out[chip] = dict(
            all_at_bf16_matrix_peak=round(mm / (matrix + vector)),
            per_dtype_peak=round(1 / (matrix / mm + vector / (utilisation * peak["fp32_vector"]))),
            realistic=round(1 / (matrix / mm + vector / (vector_efficiency * peak["fp32_vector"]))),
        )
    return out


def main(args: Args) -> None:
    unknown = sorted(set(args.rungs) - set(RUNGS))
    if unknown:
        raise ValueError(f"unknown rung(s) {unknown}; choose from {', '.join(RUNGS)}")
    env = envs.make(args.task)
    render = env.renderer(args.frame_size, args.frame_size)
    dtype = jnp.bfloat16 if args.bfloat16 else jnp.float32
    reward, reward_unrolled = vit_b32_reward(env, dtype)
    base = dict(bench="ladder", machine=machine(), task=args.task, frame_size=args.frame_size,
                clip_model="ViT-B/32 shape, random weights", clip_dtype_mm=jnp.dtype(dtype).name)

    key = jax.random.key(args.seed)
    pieces = piece_flops(env, render, reward_unrolled, args.frame_size, key)
    print(json.dumps(dict(base, measure="flops per env-step by piece", **pieces,
                          note="XLA cost analysis of loop-free pieces; physics is a lower bound (solver loop "
                               "counted once)")), flush=True)
    rung_pieces = {"physics": ["physics"], "render": ["physics", "render"], "reward": ["physics", "render", "clip"]}
    rung_fns = scan_rungs(env, render)

    projected = {}  # rung -> FLOPs per env-step by piece, for the projections
    for num_envs in sorted(args.num_envs):
        state = jax.jit(jax.vmap(env.reset))(jax.random.split(key, num_envs))
        actions = jax.random.uniform(jax.random.fold_in(key, 1), (args.steps, num_envs, env.action_size),
                                     minval=-1.0, maxval=1.0)
        for rung in args.rungs:
            line = dict(base, measure=rung, num_envs=num_envs)
            try:
                if rung == "update":
                    ppo = args.ppo
                    line.update(num_steps=ppo.num_steps, epochs=ppo.epochs, minibatches=ppo.minibatches,
                                hidden_sizes=list(ppo.hidden_sizes))
                    by_piece = {k: pieces[k] for k in rung_pieces["reward"]} | rl_flops(env, ppo, num_envs)
                    seconds, warmup = time_update(env, reward, args, num_envs)
                    env_steps = num_envs * ppo.num_steps
                else:
                    line.update(steps=args.steps)
                    by_piece = {k: pieces[k] for k in rung_pieces[rung]}
                    seconds, warmup = timed(rung_fns[rung], reward, state, actions, repeats=args.repeats)
                    env_steps = num_envs * args.steps
            except Exception as error:  # noqa: BLE001 - only running out of memory is reported and skipped
                if "RESOURCE_EXHAUSTED" not in str(error) and "out of memory" not in str(error).lower():
                    raise
                print(json.dumps(dict(line, error=f"out of device memory ({str(error).splitlines()[0][:200]}): "
                                                  "measure fewer envs")), flush=True)
                continue
            projected[rung] = by_piece
            flops_per_step = sum(by_piece.values())
            rate = env_steps / seconds
            print(json.dumps(dict(line, seconds_per_call=round(seconds, 4), warmup_s=round(warmup, 1),
                                  env_steps_per_s=round(rate, 2), flops_per_env_step=flops_per_step,
                                  achieved_gflops_per_s=round(flops_per_step * rate / 1e9, 2))), flush=True)

    for rung, by_piece in projected.items():
        print(json.dumps(dict(
            base, measure="projection", rung=rung, flops_per_env_step=sum(by_piece.values()), flops_by_piece=by_piece,
            projected_env_steps_per_s=projections(by_piece, args.utilisation, args.vector_efficiency),
            utilisation=args.utilisation, vector_efficiency=args.vector_efficiency,
            peaks_flops_per_s=CHIPS,
            note="FLOP-count projection, NOT a measurement. CLIP counted at bf16 matrix peak (tensor cores / MXU); "
                 "physics, render and policy/update MLPs are fp32. all_at_bf16_matrix_peak: every FLOP at "
                 "utilisation x bf16 peak; per_dtype_peak: fp32 pieces at utilisation x fp32 vector peak; "
                 "realistic: fp32 pieces at vector_efficiency x fp32 vector peak. TPU v5e fp32 vector peak is an "
                 "estimate.")), flush=True)


if __name__ == "__main__":
    main(tyro.cli(Args))
