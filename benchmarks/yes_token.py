"""Yes-token reward throughput: rewardax (JAX, jitted, batched, shared-prefix KV cache) vs transformers' PyTorch
``InternVLForConditionalGeneration`` scoring one frame at a time, as VQAScore's reference code (t2v_metrics) does.

What is measured, on this machine's CPU (or whatever JAX's default device is), for one model shape:

- rewardax, P("yes") of a batch of ``--batch`` frames (random uint8 ``--frame-size``² frames), four ways:
  ``pointwise`` / ``pairwise``, each without the prefix cache (the whole prompt through
  `InternVL.last_token_logits`, batched; pairwise puts the reference and the frame in every row, so the reference
  is encoded again for every frame) and with it (`YesTokenReward`, whose chat header, and for pairwise the
  reference image and its text, are decoded once when the reward is built). Compile time (lower + compile), the
  first call, then ``--repeats`` timed calls (`common.timed`: best reported, and the median); FLOPs per frame
  from XLA's cost analysis of the same function (`flops_by_depth`: XLA counts a scanned layer once, so the count
  is taken on unrolled twins of one and two layers per tower and extended to the full depth, exactly: a tower's
  layers are identical).
- transformers, the same frames one at a time: build one row's inputs (rewardax's `VLMProcessor`: transformers'
  InternVLProcessor needs torchvision, which is not installed), ``model.generate(..., max_new_tokens=1,
  output_scores=True, return_dict_in_generate=True)`` under ``torch.no_grad()``, P(yes) = the softmax of the
  scores summed over the yes spellings (`VLMProcessor.answer_ids`, as rewardax). One warm-up sample, then
  ``--repeats`` passes over the frames (best reported, and the median). float32 always; torch threads = CPU count. Its
  ``flops_per_frame`` is XLA's count of the same computation (rewardax without the cache), not a measurement.
- agreement: rewardax's P(yes) (both paths) against transformers' on the same frames. In float32 they should agree
  to ~1e-4 relative. Random weights give a near-uniform next-token distribution, so at the 1B vocabulary
  (151674) P(yes) is ~1e-5 and only the *relative* difference (and that of log P(yes)) means anything.
- ratios: rewardax cached frames/s over transformers' per-sample frames/s, pairwise and pointwise.

One JSON object per line on stdout (progress bars on stderr); ``--out`` also writes them to a file.

    python benchmarks/yes_token.py --shape tiny --repeats 2            # ~1 min on 2 cores: a smoke run
    python benchmarks/yes_token.py --shape tiny --batch 2 --repeats 1 --frame-size 32 --no-flops  # quicker still
    python benchmarks/yes_token.py --shape 1b --out outputs/yes_token_bench/1b.jsonl   # ~10 min here, +2 the first time
    python benchmarks/yes_token.py --shape 1b --bfloat16                # rewardax in bf16 (transformers stays f32)

Shapes (random weights written by `write_random_vlm`, cached under ``outputs/yes_token_bench/<shape>``, which
.gitignore ignores, so later runs reuse them; the 1B one is ~3.8 GB of float32):

- ``tiny``: `tiny_vlm_config_dict` (56 px, width 32, 2 + 2 layers) — checks the script, measures nothing useful.
- ``1b``: shaped like ``OpenGVLab/InternVL3-1B-hf`` (`rewardax.models.INTERNVL3_SHAPES`). Vision InternViT-300M: hidden 1024, 24 layers, 16 heads,
  MLP 4096, 448 px, patch 14, q/k/v bias, LayerNorm (eps 1e-6), layer scale, mean pooling (no final norm).
  Text Qwen2.5-0.5B: hidden 896, 24 layers, 14 heads, 2 kv heads, MLP 4864, vocab 151674, rope theta 1e6,
  max positions 32768. 256 image tokens (downsample 0.5), projector LayerNorm(4096) -> 4096x896 -> GELU ->
  896x896. Sources: the vision numbers, 448 / 14, 256 tokens and 0.5 are transformers' own InternVL config
  defaults (documented as the InternVL3-1B-hf configuration), except the q/k/v bias (default False). The q/k/v
  bias, the text numbers, the projector and an untied ``lm_head`` (a separate 896x151674 Linear, top-level
  ``tie_word_embeddings: false``) are from a printed module tree and config of the original
  ``OpenGVLab/InternVL3-1B`` (found in a public repository, not the hub itself); the -hf repo's
  config.json was not seen. The tokenizer is write_random_vlm's tiny one (the real Qwen tokenizer is not
  available offline), so the prompt's text tokens are about, not exactly, the real count; the 256 (pointwise) or
  2 x 258 (pairwise) image tokens dominate the sequence either way. Tied or not changes parameters, not FLOPs.

Goals (at the 1B shape, on CPU, float32): pairwise cached >= 1.8x the per-sample PyTorch rate (the cache skips
the reference image's 300M-parameter tower pass and its 258 decoder tokens, about half the work), pointwise
cached >= 1.0x (the cache saves only the chat header: the speed must come from batching and XLA).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import pathlib
import shutil
import statistics
import sys
import time
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from flax import nnx
from tqdm import tqdm

from common import emit, flops as count_flops, machine, timed
from rewardax import cli

with contextlib.redirect_stdout(sys.stderr):  # mujoco.mjx prints "Failed to import warp" to stdout: keep it JSON
    from rewardax.models import INTERNVL3_SHAPES, load_vlm, write_random_vlm
    from rewardax.models.internvl import InternVL
    from rewardax.rewards.yes_token import PAIRWISE, POINTWISE, YesTokenReward, answer_score

GOAL = "a humanoid robot kneeling"  # words the tiny tokenizer has as single tokens
CACHE = pathlib.Path(__file__).resolve().parents[1] / "outputs" / "yes_token_bench"
GOALS = {"pairwise": 1.8, "pointwise": 1.0}  # rewardax cached / transformers per-sample, at the 1B shape

SHAPES = {"tiny": {}, "1b": INTERNVL3_SHAPES["internvl3-1b"]}


@dataclasses.dataclass(frozen=True)
class Args:
    shape: Literal["tiny", "1b"] = "tiny"
    """Model shape (random weights): tiny, or InternVL3-1B's."""
    batch: int = 0
    """Frames per rewardax call (and frames scored one at a time by transformers); 0 = 8 for tiny, 2 for 1b."""
    repeats: int = 3
    """Timed calls (rewardax) / passes over the frames (transformers) after one warm-up."""
    frame_size: int = 224
    """Side of the random uint8 frames (resized to the model's input in JAX)."""
    bfloat16: bool = False
    """rewardax matmuls in bfloat16 (transformers stays float32)."""
    flops: bool = True
    """Count FLOPs (compiles each function for three shallow random twins of the model: about a minute at 1b)."""
    threads: int = 0
    """Torch intra-op threads; 0 = CPU count."""
    out: str | None = None
    """Also write the JSON lines to this file."""
    seed: int = 0


def checkpoint(shape: str) -> pathlib.Path:
    """The random checkpoint of ``shape``, written once under `CACHE` (atomically: a killed write is redone)."""
    path = CACHE / shape
    if not (path / "model.safetensors").is_file():
        tmp = CACHE / f"{shape}.writing"
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"writing the random {shape} checkpoint to {path} ...", file=sys.stderr, flush=True)
        write_random_vlm(tmp, config=SHAPES[shape])
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    return path


def make_frames(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def per(value: float | None, by: float) -> float | None:
    return None if value is None else value / by


def shallow(spec, vision_layers: int, text_layers: int):
    """``spec`` with other tower depths."""
    return dataclasses.replace(spec, vision=dataclasses.replace(spec.vision, depth=vision_layers),
                               text=dataclasses.replace(spec.text, depth=text_layers))


def unrolled_twin(spec, dtype=jnp.float32) -> InternVL:
    """An `InternVL` of ``spec`` with its layer scans unrolled and every weight zero (FLOPs do not depend on the
    values, and random initialisation is slow)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: InternVL(spec, dtype_mm=dtype, scan_unroll=True,
                                                                rngs=nnx.Rngs(0))))
    return nnx.merge(graphdef, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), state))


def flops_by_depth(count, spec, dtype=jnp.float32) -> dict[str, float]:
    """``count(model) -> {name: FLOPs}`` for the full-depth model of ``spec``, taken on unrolled twins with one or
    two layers per tower. A tower's layers are identical, so FLOPs are affine in each depth and three shallow
    counts give the full one (to XLA's rounding of a count, ~1e-7; XLA counts a scanned layer once, and unrolling
    24 + 24 layers of a 1 B model compiles for many minutes)."""
    if spec.vision_feature_layer != -1:
        raise ValueError("flops_by_depth needs every vision layer run (vision_feature_layer = -1)")
    counts = {}
    for depths in ((1, 1), (2, 1), (1, 2)):
        counts[depths] = count(unrolled_twin(shallow(spec, *depths), dtype))
        gc.collect()
    base, vision, text = counts[1, 1], counts[2, 1], counts[1, 2]
    return {name: base[name] + (spec.vision.depth - 1) * (vision[name] - base[name])
            + (spec.text.depth - 1) * (text[name] - base[name]) for name in base}


def timing(fn, args, repeats: int, desc: str) -> dict:
    """Compile seconds, first-call seconds, best and median seconds of ``repeats`` calls (`common.timed`), and
    the first output."""
    print(f"{desc} ...", file=sys.stderr, flush=True)
    t = timed(fn, *args, repeats=repeats)
    return dict(compile_s=t.compile_s, first_call_s=t.first_call_s, best_s=t.best_s, median_s=t.median_s,
                output=np.asarray(t.output))


# ---- rewardax ---------------------------------------------------------------------------------------------------


def full_prompt_fn(graphdef, processor, yes_ids, no_ids, pairwise: bool):
    """``(params, frames, ids, mask, reference) -> P(yes) [B]``: the whole prompt through `last_token_logits`; for
    pairwise, row b holds the reference then frame b (images 2b, 2b + 1 in splice order)."""

    def fn(params, frames, ids, mask, reference):
        model = nnx.merge(graphdef, params)
        pixels = processor.preprocess(frames)
        if pairwise:
            ref = jnp.broadcast_to(processor.preprocess(reference[None]), pixels.shape)
            pixels = jnp.stack([ref, pixels], axis=1).reshape(-1, *pixels.shape[1:])
        return answer_score(model.last_token_logits(pixels, ids, mask), yes_ids, no_ids)[1]

    return fn


def full_prompt_args(model, processor, frames, reference, pairwise: bool):
    question = (PAIRWISE if pairwise else POINTWISE).format(goal=GOAL)
    ids, mask = processor.tokenize([processor.prompt(question, 2 if pairwise else 1)] * len(frames))
    yes, no = tuple(processor.answer_ids("yes")), tuple(processor.answer_ids("no"))
    graphdef, params = nnx.split(model)
    fn = full_prompt_fn(graphdef, processor, yes, no, pairwise)
    return fn, (params, jnp.asarray(frames), jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(reference))


def cached_args(model, processor, frames, reference, pairwise: bool):
    reward = YesTokenReward.create(model, processor, GOAL, reference=reference if pairwise else None)

    def fn(reward, frames):
        return reward(frames)[1]["yes_token/p_yes"]

    return fn, (reward, jnp.asarray(frames))


def rewardax_uncached(model, processor, frames, reference, mode: str, args: Args) -> dict:
    fn, call_args = full_prompt_args(model, processor, frames, reference, mode == "pairwise")
    result = timing(fn, call_args, args.repeats, f"rewardax {mode} full prompt")
    result["sequence"] = call_args[2].shape[1]
    return result


def rewardax_cached(model, processor, frames, reference, mode: str, args: Args) -> dict:
    start = time.perf_counter()
    fn, call_args = cached_args(model, processor, frames, reference, mode == "pairwise")
    reward = call_args[0]
    jax.block_until_ready(reward.prefix)
    create_s = time.perf_counter() - start
    result = timing(fn, call_args, args.repeats, f"rewardax {mode} cached")
    result.update(create_s=create_s, prefix=reward.prefix.length, sequence=reward.suffix_ids.shape[0])
    return result


def flops_per_call(model, processor, frames, reference, modes=("pointwise", "pairwise")) -> dict[str, float]:
    """XLA's FLOP count of the rewardax functions for ``model`` (``"pointwise/cached"``, ...)."""
    counts = {}
    for mode in modes:
        for cache, make in (("full_prompt", full_prompt_args), ("cached", cached_args)):
            fn, call_args = make(model, processor, frames, reference, mode == "pairwise")
            counts[f"{mode}/{cache}"] = count_flops(fn, *call_args)
    return counts


# ---- transformers, one frame at a time ----------------------------------------------------------------------------


def transformers_per_sample(directory, processor, frames, reference, mode: str, args: Args) -> dict:
    """t2v_metrics' way: per (image, question) pair, build the inputs and ``generate`` one token."""
    import torch
    import transformers

    model, info = transformers.InternVLForConditionalGeneration.from_pretrained(
        str(directory), dtype=torch.float32, output_loading_info=True)
    if info["missing_keys"] or info["unexpected_keys"]:
        raise RuntimeError(f"transformers did not load {directory} exactly: {info}")
    model.eval()
    pairwise = mode == "pairwise"
    question = (PAIRWISE if pairwise else POINTWISE).format(goal=GOAL)
    yes = processor.answer_ids("yes")
    pad = processor.tokenizer.pad_token_id

    def score(frame) -> tuple[float, float]:
        """(P(yes), seconds in generate) of one frame, inputs built here."""
        images = [reference, frame] if pairwise else [frame]
        ids, mask = processor.tokenize([processor.prompt(question, len(images))])
        pixels = np.array(processor.preprocess(jnp.asarray(np.stack(images))))  # a writable copy, for torch
        inputs = dict(input_ids=torch.from_numpy(ids.astype(np.int64)),
                      attention_mask=torch.from_numpy(mask.astype(np.int64)), pixel_values=torch.from_numpy(pixels))
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True, pad_token_id=pad)
        seconds = time.perf_counter() - start
        probs = torch.softmax(out.scores[0].float(), dim=-1)[0]
        return float(probs[yes].sum()), seconds

    start = time.perf_counter()
    score(frames[0])  # warm-up
    first_s = time.perf_counter() - start
    passes, generate, p_yes = [], [], []
    bar = tqdm(total=args.repeats * len(frames), desc=f"transformers {mode} per sample", file=sys.stderr,
               leave=False)
    for r in range(args.repeats):
        start, in_generate = time.perf_counter(), 0.0
        for frame in frames:
            p, seconds = score(frame)
            in_generate += seconds
            if r == 0:
                p_yes.append(p)
            bar.update()
        passes.append(time.perf_counter() - start)
        generate.append(in_generate)
    bar.close()
    return dict(first_call_s=first_s, best_s=min(passes), median_s=statistics.median(passes),
                generate_best_s=min(generate), output=np.asarray(p_yes))


# ---- main ---------------------------------------------------------------------------------------------------------


def main(args: Args) -> None:
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    batch = args.batch or (8 if args.shape == "tiny" else 2)
    dtype = jnp.bfloat16 if args.bfloat16 else jnp.float32
    directory = checkpoint(args.shape)
    frames = make_frames(batch, args.frame_size, args.seed)
    reference = make_frames(1, args.frame_size, args.seed + 1)[0]
    base = dict(measure="yes_token_reward", shape=args.shape, batch=batch, frame_size=args.frame_size,
                machine=machine(), devices=[str(d) for d in jax.devices()], torch_threads=torch.get_num_threads())
    out = open(args.out, "w") if args.out else None

    model, processor = load_vlm(directory, dtype_mm=dtype)
    flops = {}
    if args.flops:
        flops = flops_by_depth(lambda twin: flops_per_call(twin, processor, frames, reference), model.spec, dtype)
    results = {}
    for mode in ("pointwise", "pairwise"):
        for cache, measure in ((False, rewardax_uncached), (True, rewardax_cached)):
            r = measure(model, processor, frames, reference, mode, args)
            r["flops"] = flops.get(f"{mode}/{'cached' if cache else 'full_prompt'}")
            results["rewardax", mode, cache] = r
            emit(dict(base, engine="rewardax", mode=mode, cache=cache, dtype=jnp.dtype(dtype).name,
                      frames_per_s=batch / r["best_s"], flops_per_frame=per(r.get("flops"), batch),
                      achieved_gflops_per_s=per(r.get("flops"), r["best_s"] * 1e9),
                      seconds_per_call=r["best_s"], median_s=r["median_s"], compile_s=r["compile_s"],
                      first_call_s=r["first_call_s"], repeats=args.repeats, sequence=r["sequence"],
                      **({"prefix": r["prefix"], "create_s": r["create_s"]} if cache else {})), out)
    del model
    gc.collect()

    for mode in ("pointwise", "pairwise"):
        r = transformers_per_sample(directory, processor, frames, reference, mode, args)
        results["transformers", mode, False] = r
        gc.collect()  # the torch model
        flops = per(results["rewardax", mode, False].get("flops"), batch)
        emit(dict(base, engine="transformers", mode=mode, cache=False, dtype="float32",
                  frames_per_s=batch / r["best_s"], frames_per_s_generate_only=batch / r["generate_best_s"],
                  flops_per_frame=flops, flops_note="XLA's count of the same full-prompt computation",
                  seconds_per_pass=r["best_s"], median_s=r["median_s"], first_call_s=r["first_call_s"],
                  repeats=args.repeats, per_sample=True), out)

    for mode in ("pointwise", "pairwise"):
        hf = results["transformers", mode, False]["output"]
        line = dict(measure="agreement", shape=args.shape, mode=mode, dtype=jnp.dtype(dtype).name,
                    p_yes_transformers_min=float(hf.min()), p_yes_transformers_max=float(hf.max()))
        for cache in (False, True):
            ours = results["rewardax", mode, cache]["output"]
            key = "cached" if cache else "full_prompt"
            line[f"max_abs_diff_{key}"] = float(np.max(np.abs(ours - hf)))
            line[f"max_rel_diff_{key}"] = float(np.max(np.abs(ours - hf) / np.abs(hf)))
            line[f"max_abs_diff_log_p_{key}"] = float(np.max(np.abs(np.log(ours) - np.log(hf))))
        emit(line, out)

    for mode in ("pairwise", "pointwise"):
        ratio = (results["transformers", mode, False]["best_s"] / results["rewardax", mode, True]["best_s"])
        emit(dict(measure="ratio", shape=args.shape, mode=mode, dtype=jnp.dtype(dtype).name,
                  what="rewardax cached frames/s / transformers per-sample frames/s", ratio=ratio,
                  goal=GOALS[mode], meets_goal=ratio >= GOALS[mode],
                  goal_note="the goals are for the 1b shape"), out)
    if out is not None:
        out.close()


if __name__ == "__main__":
    cli.run(lambda: main(tyro.cli(Args)))
