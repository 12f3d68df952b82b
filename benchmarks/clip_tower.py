"""Image-tower throughput: Flax NNX CLIP vs transformers' PyTorch ``CLIPVisionModelWithProjection`` on CPU.

A ViT-B/32-shaped CLIP (transformers' default ``CLIPConfig``: 224 px, width 768, 12 layers) with random weights,
the same weights in both frameworks (checked to agree before timing), float32, torch limited to as many threads
as there are cores. Also reports FLOPs per image from XLA's cost analysis of the compiled image tower (B/32 is
~8.8 GFLOPs, counting a multiply-add as 2). Each framework's time per batch is the best of ``--reps`` calls after
a warm-up call (`common.time_calls`; the median is reported too). One JSON object per line on stdout.

    python benchmarks/clip_tower.py                 # batch 32 and 128
    python benchmarks/clip_tower.py --batch-sizes 8 --reps 2
    python benchmarks/clip_tower.py --shape tiny --batch-sizes 2 --reps 1   # the tests' tiny CLIP: checks the script
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro
from flax import nnx

from common import emit, flops, machine, time_calls
from rewardax import cli


@dataclasses.dataclass(frozen=True)
class Args:
    batch_sizes: tuple[int, ...] = (32, 128)
    """Batch sizes to time."""
    reps: int = 3
    """Timed repetitions per batch size (after one warm-up call)."""
    threads: int = 0
    """Torch intra-op threads; 0 = number of cores (XLA's CPU backend uses all cores)."""
    seed: int = 0
    """Seed of the random weights and inputs."""
    shape: Literal["b32", "tiny"] = "b32"
    """Model shape: ViT-B/32's (transformers' default CLIPConfig), or the tests' tiny CLIP (to check the script)."""


def main(args: Args) -> None:
    import torch
    import transformers

    from rewardax.models.clip_checkpoints import build_clip, hf_to_params, tiny_clip_config_dict, tiny_clip_vocab
    from rewardax.models.clip import CLIPSpec

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    if args.shape == "b32":
        config = transformers.CLIPConfig()  # OpenAI ViT-B/32 shapes
    else:
        config = transformers.CLIPConfig.from_dict(tiny_clip_config_dict(len(tiny_clip_vocab()[0])))
    full = transformers.CLIPModel(config).eval()
    state = {k: v.detach().numpy() for k, v in full.state_dict().items()}
    spec = CLIPSpec.from_hf_config(config)
    params_np = hf_to_params(state.__getitem__, spec)
    model = build_clip(spec, params_np, dtype_mm=jnp.float32)
    # XLA's cost analysis counts a while-loop (scan) body once: count FLOPs on the unrolled twin.
    unrolled = build_clip(spec, params_np, dtype_mm=jnp.float32, scan_unroll=True)
    tower = transformers.CLIPVisionModelWithProjection(config.vision_config).eval()
    missing, unexpected = tower.load_state_dict(
        {k: torch.from_numpy(v) for k, v in state.items() if k.startswith(("vision_model.", "visual_projection"))},
        strict=False)
    assert not [k for k in missing if not k.endswith("position_ids")], missing
    del full

    graphdef, params = nnx.split(model.vision)
    graphdef_u, params_u = nnx.split(unrolled.vision)

    @jax.jit
    def encode(params, pixels):
        return nnx.merge(graphdef, params)(pixels)

    @jax.jit
    def encode_unrolled(params, pixels):
        return nnx.merge(graphdef_u, params)(pixels)

    rng = np.random.default_rng(args.seed)
    s = spec.image_size
    check = rng.standard_normal((2, s, s, 3)).astype(np.float32)
    with torch.inference_mode():
        ref = tower(pixel_values=torch.from_numpy(check.transpose(0, 3, 1, 2).copy())).image_embeds.numpy()
    err = float(np.max(np.abs(np.asarray(encode(params, check)) - ref)) / np.max(np.abs(ref)))
    model_name = "ViT-B/32 (random weights)" if args.shape == "b32" else "tiny CLIP (random weights)"
    base = {"bench": "clip_image_tower", "model": model_name, "image_size": s, "dtype": "float32",
            "torch_threads": threads, "machine": machine()}
    emit({**base, "check": "flax vs torch image_embeds", "max_rel_err": err})

    for b in args.batch_sizes:
        pixels = jnp.asarray(rng.standard_normal((b, s, s, 3)).astype(np.float32))
        compiled = encode.lower(params, pixels).compile()
        count = flops(encode_unrolled, params_u, pixels)
        t_jax = time_calls(lambda: compiled(params, pixels), args.reps)
        tp = torch.from_numpy(np.asarray(pixels).transpose(0, 3, 1, 2).copy())

        def run_torch():
            with torch.inference_mode():
                tower(pixel_values=tp)

        t_torch = time_calls(run_torch, args.reps)
        for impl, t in (("flax-nnx (XLA)", t_jax), ("pytorch (transformers)", t_torch)):
            emit({**base, "impl": impl, "batch": b, "reps": args.reps, "seconds_per_batch": t.best_s,
                  "median_s": t.median_s, "images_per_s": b / t.best_s, "gflops_per_image_xla": count / b / 1e9,
                  "achieved_gflops_per_s": count / t.best_s / 1e9})


if __name__ == "__main__":
    cli.run(lambda: main(tyro.cli(Args)))
