"""Per-device memory of the training step with the reward model's weights split over the mesh's model axis, from
XLA's memory analysis of the step compiled ahead of time for abstract arrays (`jax.ShapeDtypeStruct`s with their
shardings): nothing is allocated, so an 8 B reward model is measured on a laptop. JSON lines, no assertions.

    python benchmarks/memory.py --shapes tiny --task cartpole --envs-per-device 2 --frame-size 32 \
        --meshes 4x1 2x2 --ppo.num-steps 2 --ppo.minibatches 1 --ppo.epochs 1        # checks the script
    python benchmarks/memory.py --target cpu                   # 8 virtual CPU devices (see the caveat below)
    PYTHONPATH=/tmp/libtpu python benchmarks/memory.py --target v5e-8   # a TPU v5e-8, compiled for on this CPU

Each line: the reward model (``--shapes``: ``tiny``, InternVL3 ``internvl3-1b``/``-2b``/``-8b`` with bfloat16
weights, CLIP ``clip-bigg`` frozen), how it is trained (``--training``: ``frozen``, ``lora16`` = rank-16 adapters on
the decoder's q k v o, ``full`` = every weight, with Adam), the mesh (``envs × model``), the frames per reward call
(``--chunks``; 0 = all of a device's envs at once), the envs per device, and per device: ``argument``,
``output``, ``alias`` (donated buffers reused for outputs), ``temp`` and ``peak`` = argument + output − alias +
temp bytes, against the target's ``budget``; ``fits`` says whether the peak is within it. A program that does not
fit a TPU fails at compile time; its line says ``"fits": false`` with XLA's message (the bytes it asked for).

Targets:

- ``v5e-8``: 8 TPU v5e chips (2 × 4, 16 GiB HBM each, 15.75 GiB usable), compiled on this CPU host through
  libtpu's compile-only client: ``pip install --target /tmp/libtpu libtpu==0.0.42.*`` (the version jax 0.10.2's
  ``[tpu]`` extra pins; 684 MB unpacked) and ``PYTHONPATH=/tmp/libtpu``. Real TPU executables: these numbers
  are the TPU's own.
- ``cpu``: 8 virtual CPU devices. Arguments are exact; temporaries are NOT a TPU's or GPU's: the CPU backend
  computes bfloat16 matmuls in float32 and converts whole weight stacks (an 8 B forward reports 25 GiB of
  temporaries for 2 frames). Use it for how the weights' bytes scale with the model axis, never for fit/no-fit.
- 8 × H100 needs the jax CUDA plugin for a deviceless compile (not installed here): for GPUs, the ``cpu`` target's
  argument bytes plus the arithmetic in the README.

The shapes are transformers configs (`VLM_SHAPES`): InternViT-300M (24 layers, width 1024, 448 px, 256 tokens per
image) with the decoders of Qwen2.5-0.5B, -1.5B and -7B (their config.json: widths 896 / 1536 / 3584, 24 / 28 / 28
layers, 14 / 12 / 28 query and 2 / 2 / 4 key-value heads, MLP 4864 / 8960 / 18944), InternVL3's vocabulary of
151,674 with an untied head (as InternVL3-1B-hf; the 2B and 8B -hf configs were not reachable here), and the
tiny tokenizer (the prompt's length is the real one ± a few tokens). CLIP ViT-bigG-14 is open_clip's
architecture; its reward keeps only the image tower.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from typing import Literal

TARGETS = {"cpu": ("cpu", None), "v5e-8": ("tpu", "v5e:2x4")}
if __name__ == "__main__":  # the device count and the platform are fixed when JAX starts
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["TPU_SKIP_MDS_QUERY"] = "1"
    os.environ["XLA_FLAGS"] = " ".join([f for f in os.environ.get("XLA_FLAGS", "").split()
                                        if not f.startswith("--xla_force_host_platform")]
                                       + ["--xla_force_host_platform_device_count=8"])

import contextlib  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
import tyro  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from common import emit, machine  # noqa: E402
from rewardax import cli  # noqa: E402

with contextlib.redirect_stdout(sys.stderr):  # mujoco.mjx prints "Failed to import warp" to stdout: keep it JSON
    import rewardax.envs as envs
    from rewardax.mesh import AXIS, MODEL, make_mesh
    from rewardax.models import CLIP, InternVL, load_tokenizer, write_random_vlm
    from rewardax.models.clip_checkpoints import open_clip_spec, tiny_clip_vocab, write_clip_tokenizer
    from rewardax.models.internvl import InternVLSpec
    from rewardax.models.internvl_checkpoints import tiny_vlm_config_dict
    from rewardax.models.sharding import specs
    from rewardax.models.vlm_processor import VLMProcessor
    from rewardax.platform import compiling_for
    from rewardax.rewards import ClipReward, YesTokenReward, YesTokenRewardConfig
    from rewardax.rl import PPOConfig
    from rewardax.rl import step as rl_step
    from rewardax.rl.reward_update import RewardLearning
    from rewardax.train.config import HUMANOID_PPO

_VISION_300M = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                    image_size=[448, 448], patch_size=[14, 14], attention_bias=True, use_qk_norm=False,
                    norm_type="layer_norm", layer_norm_eps=1e-6, use_mean_pooling=True, layer_scale_init_value=0.1,
                    hidden_act="gelu")
_DECODER = dict(vocab_size=151674, rms_norm_eps=1e-6, max_position_embeddings=32768, hidden_act="silu",
                rope_parameters={"rope_type": "default", "rope_theta": 1e6})
VLM_SHAPES = {
    name: dict(vision_config=_VISION_300M, text_config={**_DECODER, **text}, image_seq_length=256,
               downsample_ratio=0.5, projector_hidden_act="gelu", tie_word_embeddings=False)
    for name, text in {
        "internvl3-1b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                             intermediate_size=4864),
        "internvl3-2b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                             intermediate_size=8960),
        "internvl3-8b": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                             intermediate_size=18944),
    }.items()}
"""InternVL3 shapes as transformers config overrides (`rewardax.models.tiny_vlm_config_dict`); see the module
docstring for where each number comes from."""
SHAPES = ("tiny", *VLM_SHAPES, "clip-bigg")
BUDGETS = {"v5e-8": int(15.75 * 2**30), "cpu": None}
"""Usable bytes per device (v5e: 16 GiB of HBM less what the runtime keeps)."""


@dataclasses.dataclass(frozen=True)
class Args:
    target: Literal["cpu", "v5e-8"] = "cpu"
    shapes: tuple[str, ...] = ("internvl3-1b", "internvl3-2b", "internvl3-8b", "clip-bigg")
    training: tuple[Literal["frozen", "lora16", "full"], ...] = ("frozen", "lora16", "full")
    """How the yes-token model is trained in the step (CLIP is always frozen)."""
    meshes: tuple[str, ...] = ("8x1", "4x2", "2x4", "1x8")
    """envs × model."""
    chunks: tuple[int, ...] = (16,)
    """Frames per reward-model call (0: all of a device's envs at once)."""
    envs_per_device: int = 512
    """The tpu preset's (the gpu preset has 1024)."""
    frame_size: int = 224
    task: str = "kneeling"
    ppo: PPOConfig = HUMANOID_PPO
    learning: RewardLearning = RewardLearning()
    """The reward model's training in the step (for lora16 and full)."""
    out: str = ""
    """Also append the JSON lines to this file."""


def yes_token_reward(env, shape: str, tmp: str) -> YesTokenReward:
    """The pointwise yes-token reward at ``shape`` with abstract bfloat16 weights (the tiny one is concrete)."""
    if shape == "tiny":
        return YesTokenRewardConfig(checkpoint="random").build(env)
    processor_dir = write_random_vlm(os.path.join(tmp, "tokenizer"))  # the tiny tokenizer and chat template
    probe = VLMProcessor.from_directory(processor_dir, 56, 4)
    from transformers import InternVLConfig

    spec = InternVLSpec.from_hf_config(InternVLConfig.from_dict(
        tiny_vlm_config_dict(0, probe.image_token_id, **VLM_SHAPES[shape])))
    processor = VLMProcessor.from_directory(processor_dir, spec.vision.image_size, spec.tokens_per_image)
    graphdef, params = nnx.split(nnx.eval_shape(
        lambda: InternVL(spec, dtype_mm=jnp.bfloat16, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))))
    return jax.eval_shape(lambda p: YesTokenReward.create(nnx.merge(graphdef, p), processor, env.task.goal[0]),
                          params)


def clip_bigg_reward(env, tmp: str) -> ClipReward:
    """VLM-RM's CLIP ViT-bigG-14 reward with abstract bfloat16 weights (the tiny CLIP tokenizer for the prompts)."""
    spec = open_clip_spec("ViT-bigG-14")
    vocab, merges = tiny_clip_vocab()
    write_clip_tokenizer(os.path.join(tmp, "clip"), vocab, merges)
    tokenizer = load_tokenizer(os.path.join(tmp, "clip"))
    graphdef, params = nnx.split(nnx.eval_shape(
        lambda: CLIP(spec, dtype_mm=jnp.bfloat16, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))))
    return jax.eval_shape(lambda p: ClipReward.create(nnx.merge(graphdef, p), tokenizer, env.task.goal,
                                                      env.task.baseline), params)


def abstract(tree, shardings):
    """``tree`` as `jax.ShapeDtypeStruct`s placed as ``shardings`` (a tree prefix of it) says."""
    def place(sharding, subtree):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), subtree)

    return jax.tree.map(place, shardings, tree, is_leaf=lambda x: isinstance(x, NamedSharding))


def measure(env, reward, training: str, mesh, chunk: int, args: Args) -> dict:
    """The step's per-device bytes for ``reward`` (abstract) trained as ``training`` on ``mesh``."""
    model, devices = mesh.shape[MODEL], mesh.devices.size
    queries = max(1, min(args.learning.labels_per_iteration // devices, args.envs_per_device // 2))  # per device
    learning = None if training == "frozen" else dataclasses.replace(
        args.learning, lora_rank=16 if training == "lora16" else 0, labels_per_iteration=queries * devices,
        capacity=max(args.learning.capacity // devices, queries) * devices)

    def prepare(reward):
        if learning is not None:
            reward = learning.make_trainable(reward)
        return reward.shard(model)

    reward = jax.eval_shape(prepare, reward)
    num_envs = args.envs_per_device * mesh.devices.size
    total = 1000 * args.ppo.epochs * args.ppo.minibatches
    host_mesh = make_mesh(devices=jax.devices()[:devices])  # global shapes only: where they live is set below
    state, batch, labels = jax.eval_shape(
        lambda r: rl_step.init(env, jax.random.key(0), args.ppo, num_envs, total, host_mesh, r, learning,
                               args.frame_size), reward)
    frozen = reward.split()[0]
    envs_sharding = NamedSharding(mesh, P(AXIS))
    inputs = (abstract(state, rl_step.shardings(state, mesh)), abstract(batch, envs_sharding),
              None if labels is None else abstract(labels, envs_sharding),
              abstract(frozen, rl_step.shardings(frozen, mesh)))
    step = rl_step.make_train_step(env, args.ppo, num_envs, total, args.frame_size, mesh, learning=learning,
                                   reward_chunk=chunk)
    line = {"envs_per_device": args.envs_per_device, "num_envs": num_envs, "budget": BUDGETS[args.target]}
    try:
        with compiling_for(TARGETS[args.target][0]):
            jax.clear_caches()  # no trace made for this host's platform (e.g. of the prefix encoder) is reused
            analysis = step.lower(*inputs).compile().memory_analysis()
    except Exception as error:  # XLA refuses a program over the device's memory at compile time
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        return line | {"fits": False, "error": str(error).splitlines()[0][:400]}
    sizes = {name: int(getattr(analysis, f"{name}_size_in_bytes"))
             for name in ("argument", "output", "alias", "temp")}
    peak = sizes["argument"] + sizes["output"] - sizes["alias"] + sizes["temp"]
    return line | sizes | {"peak": peak, "fits": None if line["budget"] is None else peak <= line["budget"]}


def target_devices(target: str):
    platform, topology = TARGETS[target]
    if topology is None:
        return jax.devices()
    from jax.experimental.topologies import get_topology_desc

    return get_topology_desc(topology, platform).devices


def main(args: Args) -> None:
    devices = target_devices(args.target)
    env = envs.make(args.task)
    host = machine()
    out = open(args.out, "a") if args.out else None
    with tempfile.TemporaryDirectory() as tmp, out or contextlib.nullcontext():
        for shape in args.shapes:
            reward = clip_bigg_reward(env, tmp) if shape == "clip-bigg" else yes_token_reward(env, shape, tmp)
            for training in ("frozen",) if shape == "clip-bigg" else args.training:
                for text in args.meshes:
                    envs_size, model = (int(n) for n in text.split("x"))
                    mesh = make_mesh((envs_size, model), devices[:envs_size * model])
                    for chunk in args.chunks:
                        line = measure(env, reward, training, mesh, chunk, args)
                        emit({"target": args.target, "shape": shape, "training": training, "mesh": text,
                              "chunk": chunk, "task": args.task, "frame_size": args.frame_size, **line,
                              "machine": host}, out)


if __name__ == "__main__":
    cli.run(lambda: main(tyro.cli(Args)))
