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

The shapes are `common.SIZED_REWARDS`: the InternVL3 ones are `rewardax.models.INTERNVL3_SHAPES` (where each
number comes from is in its docstring), with the tiny tokenizer (the prompt's length is the real one ± a few
tokens); CLIP ViT-bigG-14 is open_clip's architecture, and its reward keeps only the image tower.
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
import tyro  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from common import SIZED_REWARDS, emit, machine, sized_reward  # noqa: E402
from rewardax import cli  # noqa: E402

with contextlib.redirect_stdout(sys.stderr):  # mujoco.mjx prints "Failed to import warp" to stdout: keep it JSON
    import rewardax.envs as envs
    from rewardax.mesh import AXIS, MODEL, make_mesh
    from rewardax.platform import compiling_for
    from rewardax.rl import PPOConfig
    from rewardax.rl import step as rl_step
    from rewardax.rl.reward_update import RewardLearning
    from rewardax.train.config import HUMANOID_PPO

BUDGETS = {"v5e-8": int(15.75 * 2**30), "cpu": None}
"""Usable bytes per device (v5e: 16 GiB of HBM less what the runtime keeps)."""


@dataclasses.dataclass(frozen=True)
class Args:
    target: Literal["cpu", "v5e-8"] = "cpu"
    shapes: tuple[str, ...] = SIZED_REWARDS[1:]
    """Reward models (`common.SIZED_REWARDS`; tiny checks the script)."""
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
            reward = sized_reward(env, shape, tmp)
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
