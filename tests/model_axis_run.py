"""One training iteration of CartPole on 8 virtual CPU devices, on each of the meshes ``envs × model`` 8 × 1, 4 × 2
and 2 × 4, for tests/test_model_axis.py: ``python tests/model_axis_run.py OUT_DIR`` writes ``OUT_DIR/8x1.npz`` etc.
(run in a fresh process: the device count is fixed when JAX starts).

Two reward models, each tiny and random: the yes-token InternVL trained in the step from the teacher (every weight,
so its rollout scores and its update both run on split weights) and CLIP frozen (its weights an argument of the
step). Saved for each: the rewards of 16 frames of noise scored under ``shard_map`` on this mesh, the
step's metrics, the agent's parameters after the update, the reward model's parameters after its update, the
labels it was given, and how many bytes of its weights one device holds.
"""

from __future__ import annotations

import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform")]
    + ["--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0"])  # tiny graphs: compile fast

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import rewardax.envs as envs  # noqa: E402
from rewardax import distributed  # noqa: E402
from rewardax.mesh import AXIS, MODEL, make_mesh  # noqa: E402
from rewardax.models.sharding import model_axis, specs  # noqa: E402
from rewardax.rewards import ClipRewardConfig, YesTokenRewardConfig  # noqa: E402
from rewardax.rl import PPOConfig  # noqa: E402
from rewardax.rl import step as rl_step  # noqa: E402
from rewardax.rl.reward_update import RewardLearning  # noqa: E402

NUM_ENVS, FRAME = 16, 32
PPO = PPOConfig(num_steps=8, minibatches=2, epochs=1, hidden_sizes=(16,))
LEARNING = RewardLearning(updates=2, batch=2, labels_per_iteration=8, capacity=16, held_out=8, label_budget=64)


def shard_bytes(tree) -> int:
    """Bytes of ``tree``'s arrays that the first device holds."""
    return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree) if isinstance(x, jax.Array))


def scores(reward, frames, mesh):
    """The model's rewards of ``frames``, split over every device as the rollout splits the envs."""

    def body(frames, reward):
        with model_axis(MODEL, mesh.shape[MODEL]):
            return jax.shard_map(lambda f, r: r(f, None)[0], mesh=mesh, in_specs=(P(AXIS), specs(reward)),
                                 out_specs=P(AXIS), check_vma=False)(frames, reward)

    return jax.jit(body)(frames, distributed.place(reward, mesh, specs(reward)))


def one_iteration(env, reward, learning, mesh) -> dict[str, np.ndarray]:
    if learning is not None:
        reward = learning.make_trainable(reward)
    reward = reward.shard(mesh.shape[MODEL])
    state, batch, labels = rl_step.init(env, jax.random.key(0), PPO, NUM_ENVS, 2, mesh, reward, learning, FRAME)
    frozen = reward.split()[0]
    frozen = distributed.place(frozen, mesh, specs(frozen))
    noise = jax.random.randint(jax.random.key(1), (NUM_ENVS, FRAME, FRAME, 3), 0, 256).astype(jax.numpy.uint8)
    out = {"scores": scores(reward, noise, mesh)}
    train_step = rl_step.make_train_step(env, PPO, NUM_ENVS, 2, FRAME, mesh, learning=learning)
    state, batch, labels, metrics = train_step(state, batch, labels, frozen)
    out |= {f"metric/{k}": v for k, v in metrics.items()}
    out |= {f"agent/{i}": x for i, x in enumerate(jax.tree.leaves(state.params))}
    if learning is not None:
        out |= {f"reward_params/{i}": x for i, x in enumerate(jax.tree.leaves(state.reward_params))}
        out |= {f"labels/{name}": getattr(labels, name) for name in ("frames", "label", "weight")}
    weights = state.reward_params if learning is not None else frozen.params
    out["bytes_per_device"] = np.asarray(shard_bytes(weights))
    return {k: np.asarray(jax.device_get(v)) for k, v in out.items()}


SHAPES = [(8, 1), (4, 2), (2, 4)]


def main(out: str) -> None:
    assert jax.device_count() == 8, jax.devices()
    env = envs.make("cartpole")
    runs = {"yes_token_trained": (YesTokenRewardConfig(checkpoint="random", bfloat16=False), LEARNING),
            "clip_frozen": (ClipRewardConfig(checkpoint="random", bfloat16=False), None)}
    for shape in SHAPES:
        mesh, saved = make_mesh(shape), {}
        for name, (config, learning) in runs.items():
            saved |= {f"{name}/{k}": v for k, v in one_iteration(env, config.build(env), learning, mesh).items()}
        np.savez(os.path.join(out, f"{shape[0]}x{shape[1]}.npz"), **saved)


if __name__ == "__main__":
    if os.environ.get("REWARDAX_JAX_CACHE"):
        jax.config.update("jax_compilation_cache_dir", os.environ["REWARDAX_JAX_CACHE"])
    main(sys.argv[1])
