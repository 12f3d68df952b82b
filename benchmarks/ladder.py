"""The end-to-end ladder: physics → + render → + reward model → + PPO update → + reward-model update, in JSON
lines; no assertions.

    python benchmarks/ladder.py                                # CPU: 1, 4 and 16 envs
    python benchmarks/ladder.py --num-envs 1 4 --steps 2 --ppo.num-steps 2 --ppo.epochs 1 --ppo.minibatches 1
    python benchmarks/ladder.py --num-envs 1 --steps 1 --repeats 1 --frame-size 16 --clip tiny \
        --ppo.num-steps 2 --ppo.epochs 1 --ppo.minibatches 1 --ppo.hidden-sizes 8   # checks the script only
    python benchmarks/ladder.py --num-envs 256 1024 4096 --bfloat16    # one GPU / TPU chip
    python benchmarks/ladder.py --reward yes-token --num-envs 256 1024 --bfloat16   # InternVL3-1B, with rung 5
    python benchmarks/ladder.py --reward yes-token --checkpoint random --rungs reward_update --num-envs 2 --steps 1 \
        --repeats 1 --frame-size 16 --ppo.num-steps 2 --ppo.epochs 1 --ppo.minibatches 1 --ppo.hidden-sizes 8 \
        --learning.updates 1 --learning.batch 2 --learning.labels-per-iteration 1 --learning.capacity 2 \
        --learning.held-out 0   # checks rung 5 only

Every rung is one jitted program on ONE device (rungs 4-5 run `make_train_step` on a one-device mesh), so all
numbers are per chip, like the projections. env-steps/s = envs × steps / seconds, best of ``--repeats`` calls after
a warm-up call that compiles (`common.timed`; the median is reported too). Rungs 1–3 are a `lax.scan` over
``--steps`` steps of a vmapped batch, with fixed random actions:

1. ``physics``: `env.step` (the MJX humanoid of the task, frame_skip 5);
2. ``render``:  + every env's frame rendered by the task camera at ``--frame-size``² (224);
3. ``reward``:  + every frame scored by the reward model (``--reward``; float32 matmuls, or bfloat16 with
   ``--bfloat16``, for accelerators):

   - ``clip`` (the default): the VLM-RM goal–baseline `ClipReward` with a ViT-B/32-shaped CLIP (vision width
     768 × 12 layers, patch 32, 224 px; text 512 × 12; projection 512) with random weights (speed does not depend
     on the weights); ``--clip tiny`` swaps in the tiny random CLIP of the tests (width 64, 2 layers) to check
     the script quickly;
   - ``yes-token``: the pointwise `YesTokenReward` the trainer builds (`YesTokenRewardConfig`) from
     ``--checkpoint``: InternVL3-1B by default, a local directory (e.g. the 1B-shaped random weights
     benchmarks/yes_token.py writes under outputs/yes_token_bench/1b), or ``random``, the tests' tiny random
     InternVL (56 px), to check the script;
4. ``update``:  one whole `rewardax.rl.step.make_train_step` iteration: a rollout of ``ppo.num_steps`` steps
   (policy, physics, render, reward, auto-reset), reward scaling, GAE and ``ppo.epochs × ppo.minibatches`` PPO
   steps; its env-steps are num_envs × ppo.num_steps;
5. ``reward_update`` (yes-token only: CLIP cannot learn in the step): the same iteration with the reward model
   learning in it (``--learning``, `rewardax.rl.reward_update.RewardLearning`, which makes the model trainable:
   full fine-tuning, or LoRA with ``--learning.lora-rank``): the teacher's labelling of the rollout's frames,
   ``learning.updates`` reward-model steps after PPO's and the held-out test. It is timed beside rung 4's frozen
   iteration (the same program, timed once when both rungs run): ``frozen_s`` and ``learning_s`` (best calls;
   ``*_median_s`` too) and the reward-model update's share of the learning iteration, ``reward_update_share`` =
   (learning − frozen) / learning (from best calls, so noise can push it outside [0, 1] when the update is
   cheap), with the settings used in ``learning``. ``labels_per_iteration`` is capped at num_envs // 2 (a query
   pairs two envs' frames); below 2 envs the rung prints a ``skipped`` line. No FLOPs or projection here.

``--rungs`` picks rungs; by default every rung the reward model allows (all five for yes-token, 1-4 for CLIP).

``--shape`` counts and projects, for a reward model too large to run here (``internvl3-1b``, ``-2b``, ``-8b``,
``clip-bigg``: `common.SIZED_REWARDS`; ``tiny`` checks the script): its weights are abstract (bfloat16), nothing
is timed, and it prints the FLOP line (with one labelled pair's loss gradient, LoRA rank 16 and every weight) and
a projection per ``--num-envs`` (envs per chip) and training: rung ``update`` frozen, ``reward_update`` learning in
the step, whose piece ``yes_token_update`` = (updates × batch × pair gradient + held_out × forward) ÷ (envs ×
ppo.num_steps), per chip (the simulated teacher costs no model FLOPs). The reward model's pieces are counted from
the program as lowered (`common.flops` with ``compile=False``: compiling an unrolled billion-parameter model takes
an hour on this CPU). docs/ladder_sized.jsonl was made with, for each shape::

    python benchmarks/ladder.py --shape internvl3-8b --num-envs 512 1024 --ppo.num-steps 20 \
        --ppo.hidden-sizes 128 128 --task kneeling                 # the humanoid presets' PPO rollout and policy

FLOPs per env-step come from XLA's cost analysis of loop-free pieces, since it counts a loop body once whatever
its trip count (see benchmarks/env_render.py and benchmarks/clip_tower.py):

- ``physics``: one `mjx.step` × frame_skip. MJX's constraint solver iterates inside a step and its loop body
  counts once, so this is a lower bound;
- ``render``: one frame (the renderer has no loops: exact);
- ``clip`` or ``yes_token`` (the reward model): preprocessing + image embedding + reward of one frame, with the
  layer `lax.scan`s fully unrolled (``scan_unroll=True``, as clip_tower.py does; ~8.8 GFLOPs for CLIP B/32; the
  yes-token model's prompt prefix is encoded once, when the reward is built, so it is not counted);
- ``policy`` (rung 4): the policy sample and two value evaluations of one env-step;
- ``update`` (rung 4): one minibatch step of `rewardax.rl.ppo.update` (gradient + Adam), on a batch built by the
  library's own `rollout` and `make_batch`, × epochs × minibatches ÷ env-steps per iteration (GAE and reward
  scaling, scans of a few FLOPs per step, are left out).

``projection`` lines are FLOP-count ARITHMETIC, NOT MEASUREMENTS: env-steps/s a chip would reach if each piece
ran at a stated fraction of a peak, time per env-step = Σ FLOPs(piece) / rate(piece) (no overlap between pieces).
The reward model is assumed to run in bfloat16 on the matrix units (tensor cores / MXU) whatever this run used;
physics, render and the small policy MLPs are float32 and not matmul-heavy, so they will run far below any matmul
peak.
Three views per chip:

- ``all_at_bf16_matrix_peak``: everything at utilisation × the bf16 matrix peak (the naive upper bound);
- ``per_dtype_peak``: the reward model at utilisation × bf16 matrix peak, the float32 pieces at utilisation ×
  fp32 vector peak;
- ``realistic``: the reward model at utilisation × bf16 matrix peak, the float32 pieces at `VECTOR_EFFICIENCY` ×
  fp32 vector peak (an assumption: MJX and the ray caster are gather/branch-heavy and far from dense arithmetic).

None of them models memory bandwidth, kernel launches or compilation choices, and physics FLOPs are a lower bound,
so even the realistic view is optimistic for the physics-heavy rungs. The assumptions are the named constants
below (peaks, utilisation, vector efficiency); rung 4's projection uses the FLOPs counted at the largest
``--num-envs`` (the update's share per env-step barely depends on it). A measurement that runs out of device memory
prints an ``error`` line and the ladder goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import tempfile
from typing import Literal

import jax
import jax.numpy as jnp
import tyro
from flax import nnx

from common import (emit, env_piece_flops, env_rungs, flops, machine, reset_envs, scan_steps, sized_reward, time_calls,
                    timed)
from rewardax import cli

with contextlib.redirect_stdout(sys.stderr):  # mujoco.mjx prints "Failed to import warp" to stdout: keep it JSON
    import rewardax.envs as envs
    from rewardax.models import CLIP, InternVL, load_tokenizer
    from rewardax.models.clip_checkpoints import tiny_clip_config_dict, tiny_clip_vocab, write_clip_tokenizer
    from rewardax.rewards import ClipReward, YesTokenRewardConfig
    from rewardax.rewards.config import PAPER_VLM
    from rewardax.rl import PPOConfig, init_carry, make_batch, make_optimizer, rollout, update
    from rewardax.rl.label_buffer import LabelBuffer
    from rewardax.rl.reward_update import RewardLearning, labelled_loss_sum
    from rewardax.rl.step import agent_for, init, make_mesh, make_train_step

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
CLIP_SHAPES = {"b32": VIT_B32, "tiny": {}}
"""CLIP shapes by ``--clip`` name (overrides of `tiny_clip_config_dict`: tiny is the tests' random CLIP)."""
CLIP_NAMES = {"b32": "ViT-B/32 shape, random weights", "tiny": "tiny random CLIP (width 64, 2 layers)"}

MODEL_PIECES = {"clip": "clip", "yes-token": "yes_token"}
"""The reward model's FLOP piece by ``--reward``: matrix work, counted at the bf16 matrix peak in projections."""

RUNGS = ("physics", "render", "reward", "update", "reward_update")
FLOP_RUNGS = RUNGS[:4]
"""The rungs with FLOP counts and projections (and all CLIP can run: it cannot learn in the step)."""


@dataclasses.dataclass(frozen=True)
class Args:
    num_envs: tuple[int, ...] = (1, 4, 16)
    """Env counts to measure (on an accelerator: e.g. 256 1024 4096)."""
    steps: int = 10
    """Env steps per compiled call of rungs 1-3 (a `lax.scan`)."""
    repeats: int = 3
    """Timed calls per measurement (after one warm-up call that compiles)."""
    rungs: tuple[str, ...] = ()
    """Which rungs to run (physics, render, reward, update, reward_update; default: all the reward model allows)."""
    task: str = "splits"
    """Task: the env, its camera and the CLIP prompts."""
    frame_size: int = 224
    """Rendered frame side in pixels."""
    bfloat16: bool = False
    """CLIP matmuls in bfloat16 (for accelerators; float32 on CPU)."""
    reward: Literal["clip", "yes-token"] = "clip"
    """Reward model of rungs 3-5: a random-weight CLIP (``--clip``) or the yes-token InternVL (``--checkpoint``)."""
    clip: Literal["b32", "tiny"] = "b32"
    """CLIP shape: ViT-B/32's, or the tests' tiny one (to check the script, not to measure)."""
    checkpoint: str = PAPER_VLM
    """yes-token: InternVL checkpoint (hub id or local directory), or "random" (the tests' tiny one, to check)."""
    ppo: PPOConfig = PPOConfig(num_steps=8, epochs=4, minibatches=4, hidden_sizes=(256, 256))
    """PPO settings of rungs 4-5 (their rollout length is ppo.num_steps, not --steps)."""
    learning: RewardLearning = RewardLearning()
    """How the yes-token model learns in rung 5 (labels_per_iteration capped at num_envs // 2)."""
    utilisation: float = UTILISATION
    """Fraction of peak assumed in the projections (matrix work; all work in the naive view)."""
    vector_efficiency: float = VECTOR_EFFICIENCY
    """Fraction of the fp32 vector peak assumed for physics/render in the realistic projection."""
    seed: int = 0
    shape: str = ""
    """Count and project, do not time: a reward model too large to run here, by `common.SIZED_REWARDS` name
    (internvl3-1b, -2b, -8b, clip-bigg; tiny checks the script). Its weights are abstract (bfloat16), so only
    the FLOP and projection lines are printed, per ``--num-envs`` (envs per chip), for the yes-token shapes
    frozen and learning in the step (LoRA rank 16 and full, ``--learning``'s other settings)."""


# ---- The reward model -------------------------------------------------------------------------------------------


def reward_model(env, args: Args, dtype_mm):
    """``--reward``'s model and its twin with the layer scans unrolled (same weights, for the FLOP count)."""
    if args.reward == "clip":
        return clip_reward(env, args.clip, dtype_mm)
    reward = YesTokenRewardConfig(checkpoint=args.checkpoint, bfloat16=dtype_mm == jnp.bfloat16).build(env)
    spec = nnx.merge(reward.graphdef, reward.params).spec
    unrolled = nnx.eval_shape(lambda: InternVL(spec, dtype_mm=dtype_mm, scan_unroll=True, rngs=nnx.Rngs(0)))
    return reward, reward.replace(graphdef=nnx.split(unrolled)[0])


def clip_reward(env, shape: str, dtype_mm) -> tuple[ClipReward, ClipReward]:
    """A `ClipReward` with a random CLIP of ``shape`` (`CLIP_SHAPES`), and its twin with the layer scans unrolled
    (same weights, for the FLOP count). The text side uses the tiny CLIP BPE of `write_random_clip` (its
    end-of-text id is set as the config's, so the text tower pools at the right token); B/32's text vocabulary
    keeps its 49408 rows. Text embeddings are computed once, so neither affects speed."""
    vocab, merges = tiny_clip_vocab()
    config = tiny_clip_config_dict(len(vocab), **CLIP_SHAPES[shape])  # keeps the tiny tokenizer's bos/eos/pad ids
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer(tmp, vocab, merges)
        tokenizer = load_tokenizer(tmp)
    model = CLIP(config, dtype_mm=dtype_mm, rngs=nnx.Rngs(0))
    reward = ClipReward.create(model, tokenizer, env.task.goal, env.task.baseline)
    unrolled = nnx.eval_shape(lambda: CLIP(config, dtype_mm=dtype_mm, scan_unroll=True, rngs=nnx.Rngs(0)))
    return reward, reward.replace(graphdef=nnx.split(unrolled.vision)[0])


# ---- FLOPs of loop-free pieces ------------------------------------------------------------------------------------


def piece_flops(env, render, reward_unrolled, model_piece: str, frame_size: int, key,
                compile: bool = True) -> dict[str, float]:
    """FLOPs of one env-step of physics, render and the reward model (named ``model_piece``; counted as lowered
    with ``compile=False``, see `common.flops`)."""
    data = jax.eval_shape(env.reset, key).pipeline_state  # shapes are all XLA's count needs: nothing to compile
    frame = jax.ShapeDtypeStruct((1, frame_size, frame_size, 3), jnp.uint8)
    return {**env_piece_flops(env, render, data),
            model_piece: flops(lambda r, f: r(f)[0], reward_unrolled, frame, compile=compile)}


def rl_flops(env, ppo: PPOConfig, num_envs: int) -> dict[str, float]:
    """FLOPs per env-step of the policy (sample + 2 value evaluations) and of the PPO update's share.

    The update's share is one minibatch step of `rewardax.rl.ppo.update`, run as an update of one epoch over one
    minibatch (its loops then run once, so XLA counts them exactly) on a batch of one minibatch's time steps made
    by the library's own `rollout` and `make_batch` (traced for shapes only), × epochs × minibatches."""
    agent, params = agent_for(env, ppo, jax.random.key(0))
    obs = jax.ShapeDtypeStruct((1, env.observation_size), jnp.float32)
    keys = jax.random.split(jax.random.key(0), 1)
    policy = (flops(agent.act, params, obs, keys)
              + 2 * flops(agent.value, params, obs))

    one_minibatch = dataclasses.replace(ppo, num_steps=ppo.num_steps // ppo.minibatches, epochs=1, minibatches=1)

    def collect(params, key):
        def no_reward(reached, first, memory):
            return jnp.zeros(first.shape), {}, memory

        carry = init_carry(env, key, num_envs)
        _, transitions = rollout(env, functools.partial(agent.act, params), functools.partial(agent.value, params),
                                 no_reward, carry, one_minibatch.num_steps, env.episode_length)
        return make_batch(transitions, transitions.reward, one_minibatch)

    key = jax.random.key(0)
    batch = jax.eval_shape(collect, params, key)
    optimizer = make_optimizer(ppo, total_updates=1)
    opt_state = optimizer.init(params)
    step = flops(lambda p, o, b, k: update(agent, optimizer, p, o, b, k, one_minibatch)[:2], params, opt_state,
                 batch, key)
    return dict(policy=policy, update=ppo.epochs * ppo.minibatches * step / (ppo.num_steps * num_envs))


def pair_gradient_flops(reward_unrolled, learning: RewardLearning, frame_size: int) -> float:
    """FLOPs of the reward model's gradient on one labelled pair (`labelled_loss_sum`: Bradley–Terry and the
    answers' cross-entropy), trained as ``learning`` says (LoRA adapters or every weight), counted as lowered."""
    frozen, params = jax.eval_shape(learning.make_trainable, reward_unrolled).split()
    examples = jax.eval_shape(lambda: LabelBuffer.create(1, 2, (frame_size, frame_size, 3)))

    def gradient(frozen, params, examples):
        return jax.grad(lambda p: labelled_loss_sum(frozen.merge(p), examples, learning.ce_weight)[0])(params)

    return flops(gradient, frozen, params, examples, compile=False)


def reward_update_piece(pair_gradient: float, frame: float, learning: RewardLearning, env_steps: int) -> float:
    """FLOPs per env-step of the reward model learning in the step on one chip: ``learning.updates`` gradient
    steps on ``learning.batch`` pairs and the held-out frames scored, once per iteration of ``env_steps``
    (the simulated teacher's labels cost no model FLOPs)."""
    examples = learning.batch or learning.capacity
    return (learning.updates * examples * pair_gradient + learning.held_out * frame) / env_steps


# ---- Rungs ------------------------------------------------------------------------------------------------------


def scan_rungs(env, render):
    """Rungs 1-3 as functions ``(state, actions [T, B, A], *reward) -> [T, B]`` whose output needs all the rung's
    work: physics and render are `common.env_rungs` (env_render.py times the same programs); the reward model is
    an argument of the reward rung (as in `make_train_step`), not a closed-over constant."""
    return env_rungs(env, render) | {
        "reward": scan_steps(env, lambda s, reward: reward(render(s.pipeline_state).rgb, s)[0])}


def time_update(env, reward, args: Args, num_envs: int, learning: RewardLearning | None = None):
    """`common.Timing` of one training iteration on a one-device mesh (the warm-up call compiles); with
    ``learning`` the reward model, made trainable, learns in it."""
    one_device = make_mesh(devices=jax.devices()[:1])
    total_updates = (args.repeats + 1) * args.ppo.epochs * args.ppo.minibatches
    if learning is not None:
        reward = learning.make_trainable(reward)
    train_step = make_train_step(env, args.ppo, num_envs, total_updates, args.frame_size, mesh=one_device,
                                 learning=learning)
    carry = init(env, jax.random.key(args.seed), args.ppo, num_envs, total_updates, mesh=one_device, reward=reward,
                 learning=learning, frame_size=args.frame_size)
    frozen = reward.split()[0]

    def iteration():  # state and envs are donated: feed each iteration's output to the next
        nonlocal carry
        *carry, metrics = train_step(*carry, frozen)
        return metrics

    return time_calls(iteration, args.repeats)


def reward_update_fields(env, reward, args: Args, num_envs: int, frozen_iteration) -> dict:
    """Rung 5's numbers: the iteration frozen (``frozen_iteration(num_envs)``, rung 4's timing) and learning, the
    reward-model update's share of the learning one, and the learning settings used."""
    learning = dataclasses.replace(args.learning,
                                   labels_per_iteration=min(args.learning.labels_per_iteration, num_envs // 2))
    frozen = frozen_iteration(num_envs)
    learned = time_update(env, reward, args, num_envs, learning)
    return dict(frozen_s=round(frozen.best_s, 4), learning_s=round(learned.best_s, 4),
                frozen_median_s=round(frozen.median_s, 4), learning_median_s=round(learned.median_s, 4),
                repeats=args.repeats, learning_warmup_s=round(learned.warmup_s, 1),
                reward_update_share=round((learned.best_s - frozen.best_s) / learned.best_s, 4),
                learning=dataclasses.asdict(learning))


# ---- Projections --------------------------------------------------------------------------------------------------


def projections(pieces: dict[str, float], utilisation: float, vector_efficiency: float) -> dict[str, dict]:
    """Projected env-steps/s per chip (see the module docstring). ``pieces``: FLOPs per env-step by piece."""
    is_model = tuple(MODEL_PIECES.values())  # the model's pieces: its forward, and its update when it learns
    matrix = sum(v for k, v in pieces.items() if k.startswith(is_model))
    vector = sum(v for k, v in pieces.items() if not k.startswith(is_model))
    out = {}
    for chip, peak in CHIPS.items():
        mm = utilisation * peak["bf16_matrix"]
        out[chip] = dict(
            all_at_bf16_matrix_peak=round(mm / (matrix + vector)),
            per_dtype_peak=round(1 / (matrix / mm + vector / (utilisation * peak["fp32_vector"]))),
            realistic=round(1 / (matrix / mm + vector / (vector_efficiency * peak["fp32_vector"]))),
        )
    return out


def projection_line(base: dict, rung: str, by_piece: dict[str, float], args: Args, **fields) -> dict:
    """The ``projection`` JSON line of a rung whose FLOPs per env-step are ``by_piece``."""
    model = next(k for k in MODEL_PIECES.values() if f"{k}_model" in base)
    return dict(
        base, measure="projection", rung=rung, **fields, flops_per_env_step=sum(by_piece.values()),
        flops_by_piece=by_piece,
        projected_env_steps_per_s=projections(by_piece, args.utilisation, args.vector_efficiency),
        utilisation=args.utilisation, vector_efficiency=args.vector_efficiency, peaks_flops_per_s=CHIPS,
        note=f"FLOP-count projection, NOT a measurement. The reward model ({model}, and its update when it "
             "learns) counted at bf16 matrix peak (tensor cores / MXU); physics, render and policy/update MLPs are "
             "fp32. all_at_bf16_matrix_peak: every FLOP at utilisation x bf16 peak; per_dtype_peak: fp32 pieces at "
             "utilisation x fp32 vector peak; realistic: fp32 pieces at vector_efficiency x fp32 vector peak. "
             "TPU v5e fp32 vector peak is an estimate.")


def project_sized(args: Args) -> None:
    """``--shape``: FLOPs per env-step and projections for a reward model of a named size (see `Args.shape`)."""
    env = envs.make(args.task)
    render = env.renderer(args.frame_size, args.frame_size)
    with tempfile.TemporaryDirectory() as tmp:
        reward = sized_reward(env, args.shape, tmp, scan_unroll=True)
    model_piece = "clip" if args.shape == "clip-bigg" else "yes_token"
    base = dict(bench="ladder", machine=machine(), task=args.task, frame_size=args.frame_size,
                **{f"{model_piece}_model": f"{args.shape} (abstract weights)", f"{model_piece}_dtype_mm": "bfloat16"})
    pieces = piece_flops(env, render, reward, model_piece, args.frame_size, jax.random.key(args.seed),
                         compile=False)
    trainings = {"frozen": None}
    if model_piece == "yes_token":  # CLIP cannot learn in the step
        trainings |= {"lora16": dataclasses.replace(args.learning, lora_rank=16),
                      "full": dataclasses.replace(args.learning, lora_rank=0)}
    pair = {name: pair_gradient_flops(reward, learning, args.frame_size)
            for name, learning in trainings.items() if learning is not None}
    emit(dict(base, measure="flops per env-step by piece", **pieces,
              **{f"{model_piece}_pair_gradient_{name}": value for name, value in pair.items()},
              note="XLA cost analysis of loop-free pieces (layer scans unrolled; the reward model's as lowered, before "
                   "optimisation); physics is a lower bound (solver loop counted once); *_pair_gradient_*: one "
                   "labelled pair's loss gradient"))
    for num_envs in sorted(args.num_envs):
        rl = rl_flops(env, args.ppo, num_envs)
        for training, learning in trainings.items():
            by_piece = pieces | rl
            fields = dict(num_envs=num_envs, training=training, num_steps=args.ppo.num_steps)
            if learning is not None:
                by_piece[f"{model_piece}_update"] = reward_update_piece(pair[training], pieces[model_piece], learning,
                                                                        num_envs * args.ppo.num_steps)
                fields["learning"] = dataclasses.asdict(learning)
            emit(projection_line(base, "update" if learning is None else "reward_update", by_piece, args, **fields))


def main(args: Args) -> None:
    if args.shape:
        return project_sized(args)
    allowed = RUNGS if args.reward == "yes-token" else FLOP_RUNGS
    rungs = args.rungs or allowed
    unknown = sorted(set(rungs) - set(allowed))
    if unknown:
        raise ValueError(f"rung(s) {unknown} not available with --reward {args.reward}; choose from "
                         f"{', '.join(allowed)}")
    env = envs.make(args.task)
    render = env.renderer(args.frame_size, args.frame_size)
    dtype = jnp.bfloat16 if args.bfloat16 else jnp.float32
    reward, reward_unrolled = reward_model(env, args, dtype)
    model_piece = MODEL_PIECES[args.reward]
    model_name = CLIP_NAMES[args.clip] if args.reward == "clip" else args.checkpoint
    base = dict(bench="ladder", machine=machine(), task=args.task, frame_size=args.frame_size,
                **{f"{model_piece}_model": model_name, f"{model_piece}_dtype_mm": jnp.dtype(dtype).name})

    key = jax.random.key(args.seed)
    pieces = piece_flops(env, render, reward_unrolled, model_piece, args.frame_size, key)
    emit(dict(base, measure="flops per env-step by piece", **pieces,
              note="XLA cost analysis of loop-free pieces; physics is a lower bound (solver loop counted once)"))
    rung_pieces = {"physics": ["physics"], "render": ["physics", "render"],
                   "reward": ["physics", "render", model_piece]}
    rung_fns = scan_rungs(env, render)
    frozen_iteration = functools.cache(functools.partial(time_update, env, reward, args))  # rungs 4 and 5 share it
    ppo = args.ppo
    ppo_settings = dict(num_steps=ppo.num_steps, epochs=ppo.epochs, minibatches=ppo.minibatches,
                        hidden_sizes=list(ppo.hidden_sizes))

    projected = {}  # rung -> FLOPs per env-step by piece, for the projections
    for num_envs in sorted(args.num_envs):
        state = reset_envs(env, key, num_envs)
        actions = jax.random.uniform(jax.random.fold_in(key, 1), (args.steps, num_envs, env.action_size),
                                     minval=-1.0, maxval=1.0)
        for rung in rungs:
            line = dict(base, measure=rung, num_envs=num_envs)
            if rung in ("update", "reward_update"):
                line.update(ppo_settings)
            try:
                if rung == "reward_update":
                    if num_envs < 2:
                        emit(dict(line, skipped="the teacher pairs two envs' frames: needs at least 2 envs"))
                    else:
                        emit(dict(line, **reward_update_fields(env, reward, args, num_envs, frozen_iteration)))
                    continue
                if rung == "update":
                    by_piece = {k: pieces[k] for k in rung_pieces["reward"]} | rl_flops(env, ppo, num_envs)
                    timing = frozen_iteration(num_envs)
                    env_steps = num_envs * ppo.num_steps
                else:
                    line.update(steps=args.steps)
                    by_piece = {k: pieces[k] for k in rung_pieces[rung]}
                    extra = (reward,) if rung == "reward" else ()
                    timing = timed(rung_fns[rung], state, actions, *extra, repeats=args.repeats)
                    env_steps = num_envs * args.steps
            except Exception as error:  # noqa: BLE001 - only running out of memory is reported and skipped
                if "RESOURCE_EXHAUSTED" not in str(error) and "out of memory" not in str(error).lower():
                    raise
                emit(dict(line, error=f"out of device memory ({str(error).splitlines()[0][:200]}): "
                                      "measure fewer envs"))
                continue
            projected[rung] = by_piece
            flops_per_step = sum(by_piece.values())
            rate = env_steps / timing.best_s
            emit(dict(line, seconds_per_call=round(timing.best_s, 4), median_s=round(timing.median_s, 4),
                      repeats=timing.repeats, warmup_s=round(timing.warmup_s, 1), env_steps_per_s=round(rate, 2),
                      flops_per_env_step=flops_per_step, achieved_gflops_per_s=round(flops_per_step * rate / 1e9, 2)))

    for rung, by_piece in projected.items():
        emit(projection_line(base, rung, by_piece, args))

if __name__ == "__main__":
    cli.run(lambda: main(tyro.cli(Args)))
