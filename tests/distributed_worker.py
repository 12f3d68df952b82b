"""One process of a two-process training run on CPU, started by tests/test_distributed.py.

    python tests/distributed_worker.py OUT --coordinator HOST:PORT --num-processes N --process-id I [--via env]

Joins the job through `rewardax.distributed.initialize` (from arguments, or with ``--via env`` from the
``REWARDAX_*`` environment variables), runs `step.init` + 2 iterations of the shared train step on
`probes.Reach()` with 8 envs over the global mesh of every process's devices, and writes what it saw to
``OUT/process_<I>.npz``: the replicated final params (this process's copy), observation statistics, the
metrics of each iteration and the global env batch gathered from all processes. The environment must set
``JAX_PLATFORMS=cpu`` and the virtual device count before Python starts.
"""

import argparse
import os
import pathlib
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--local-devices", type=int, default=2)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--via", choices=["args", "env"], default="args")
    args = parser.parse_args(argv)

    from rewardax import distributed

    if args.via == "env":
        os.environ[distributed.ENV_COORDINATOR] = args.coordinator
        os.environ[distributed.ENV_NUM_PROCESSES] = str(args.num_processes)
        os.environ[distributed.ENV_PROCESS_ID] = str(args.process_id)
        started = distributed.initialize(local_device_count=args.local_devices)
    else:
        started = distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                         local_device_count=args.local_devices)
    assert started, "initialize() should have joined a multi-process job"
    assert distributed.initialize(), "a second initialize() is a no-op that reports the running job"

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils

    from rewardax.envs import probes
    from rewardax.rewards import EnvReward
    from rewardax.rl import PPOConfig
    from rewardax.rl import step as rl_step

    assert jax.process_count() == args.num_processes and jax.process_index() == args.process_id
    assert jax.local_device_count() == args.local_devices, jax.local_devices()
    print(f"process {jax.process_index()}/{jax.process_count()}: local {jax.local_devices()}, "
          f"global {jax.devices()}", flush=True)

    # The same as tests/test_step.py's SMALL config.
    config = PPOConfig(learning_rate=3e-3, num_steps=8, minibatches=2, epochs=2, hidden_sizes=(16,), gamma=0.9)
    env = probes.Reach()
    mesh = rl_step.mesh()
    state, batch = rl_step.init(env, jax.random.PRNGKey(0), config, args.num_envs, args.iterations, mesh)
    train_step = rl_step.make_train_step(env, config, args.num_envs, args.iterations, frame_size=16, mesh_=mesh)
    reward = distributed.replicate(EnvReward(), mesh)
    rewards = []
    for _ in range(args.iterations):
        state, batch, metrics = train_step(state, batch, reward)
        rewards.append(float(jax.device_get(metrics)["reward"]))  # metrics are replicated: readable anywhere

    # replicate() takes an array committed to one local device, which a multi-process step cannot.
    local = jax.device_put(jnp.arange(3.0), jax.local_devices()[0])
    placed = distributed.replicate({"w": local}, mesh)["w"]
    assert placed.sharding.is_fully_replicated and len(placed.sharding.device_set) == jax.device_count()

    out = {f"param_{i}": np.asarray(leaf.addressable_data(0)) for i, leaf in enumerate(jax.tree.leaves(state.params))}
    out["obs_mean"] = np.asarray(state.obs_stats.mean.addressable_data(0))
    out["rewards"] = np.asarray(rewards)
    out["env_obs"] = np.asarray(multihost_utils.process_allgather(batch.state.obs, tiled=True))
    out["env_steps"] = np.asarray(multihost_utils.process_allgather(batch.steps, tiled=True))
    out["is_main"] = np.asarray(distributed.is_main_process())
    out["replicated"] = np.asarray(placed.addressable_data(0))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"process_{args.process_id}.npz", **out)
    print(f"process {args.process_id}: done, rewards {rewards}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
