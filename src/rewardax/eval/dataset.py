"""Labelled frames for judging reward models: frames rendered by the task camera, each with the task's oracle
success, its dense ground truth and the physics state it shows.

    python -m rewardax.eval.dataset --env cartpole --out data/cartpole            # random episodes + the path
    python -m rewardax.eval.dataset --policy runs/cartpole --out data/cartpole    # + a trained policy's, noisy too
    data = rewardax.eval.dataset.load("data/cartpole")                           # validated; names what is wrong

Every dataset holds random episodes and states along the env's path; with ``--policy RUN_DIR`` (a trained run)
also that policy's episodes, plain and perturbed. The format, its sources, the reader (`load`) and
`DatasetError` live in `rewardax.labelled_frames`, so that training reads datasets without importing the
evaluation; they are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np
from tqdm import tqdm

from rewardax import cli
from rewardax.labelled_frames import FORMAT, SOURCES, VERSION, DatasetError, load

__all__ = ["FORMAT", "SOURCES", "VERSION", "DatasetError", "generate", "load", "main", "physics_arrays"]


def physics_arrays(pipeline_state) -> dict[str, jax.Array]:
    """The physics variables worth saving: qpos and qvel of an MJX state, every field of a classic one."""
    if hasattr(pipeline_state, "qpos"):
        return {"qpos": pipeline_state.qpos, "qvel": pipeline_state.qvel}
    return {f.name: getattr(pipeline_state, f.name) for f in dataclasses.fields(pipeline_state)}


def generate(env, env_name: str, out, *, episodes: int = 16, every: int = 5, path_frames: int = 64,
             frame_size: int = 224, seed: int = 0, look: str = "paper", policy=None, noise: float = 0.5) -> dict:
    """Writes a labelled dataset of ``env`` into ``out`` and returns its manifest: ``episodes`` episodes of each
    policy filmed every ``every`` steps — uniform random actions, and with ``policy`` (``act(obs, key, noise)``
    of a trained agent, `rewardax.train.load_agent`) its mean actions and those with Gaussian noise of std
    ``noise`` — and ``path_frames`` states along the env's state path."""
    render = jax.jit(env.renderer(frame_size, frame_size))
    policies = {"random": lambda obs, key: jax.random.uniform(key, (obs.shape[0], env.action_size), minval=-1.0,
                                                              maxval=1.0)}
    if policy is not None:
        policies["trained"] = lambda obs, key: policy(obs, key, 0.0)
        policies["perturbed"] = lambda obs, key: policy(obs, key, noise)

    def play(act, key):
        reset_key, act_key = jax.random.split(key)
        states = jax.vmap(env.reset)(jax.random.split(reset_key, episodes))

        def one(states, key):
            states = jax.vmap(env.step)(states, act(states.obs, key))
            return states, states

        _, trajectory = jax.lax.scan(one, states, jax.random.split(act_key, env.episode_length))
        return jax.tree.map(lambda x: x[every - 1::every], trajectory)  # [T / every, episodes, ...]

    parts = {name: [] for name in ("frames", "success", "dense", "source", "episode", "step")}
    states_saved = []

    def add(physics, success, dense, source, episode, step):
        parts["frames"].append(np.asarray(render(physics).rgb))
        parts["success"].append(np.asarray(success).astype(np.uint8))
        parts["dense"].append(np.asarray(dense, np.float32))
        n = len(parts["success"][-1])
        parts["source"].append(np.full(n, SOURCES.index(source), np.int8))
        parts["episode"].append(np.broadcast_to(np.asarray(episode, np.int32), (n,)).copy())
        parts["step"].append(np.broadcast_to(np.asarray(step, np.int32), (n,)).copy())
        states_saved.append(jax.device_get(physics_arrays(physics)))

    for i, (source, act) in enumerate(policies.items()):
        trajectory = jax.jit(play, static_argnums=0)(act, jax.random.fold_in(jax.random.key(seed), i))
        for t in tqdm(range(trajectory.obs.shape[0]), desc=f"{env_name}: {source} episodes", leave=False):
            states = jax.tree.map(lambda x: x[t], trajectory)
            add(states.pipeline_state, states.metrics["success"], states.metrics["dense"], source,
                np.arange(episodes), (t + 1) * every)
    path = env.state_path(path_frames)
    if path is not None:
        physics = path[2]
        add(physics, env.task.success(physics), env.task.dense(physics), "path", -1, -1)

    arrays = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    for name in states_saved[0]:
        arrays[f"state/{name}"] = np.concatenate([np.asarray(s[name], np.float32) for s in states_saved])
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "data.npz", **arrays)
    counts = {source: int((arrays["source"] == i).sum()) for i, source in enumerate(SOURCES)}
    manifest = {"format": FORMAT, "version": VERSION, "env": env_name, "look": look, "frame_size": frame_size,
                "count": int(len(arrays["success"])), "sources": list(SOURCES), "counts": counts,
                "success_rate": float(arrays["success"].mean()), "seed": seed,
                "goal": list(env.task.goal), "baseline": list(env.task.baseline),
                "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in arrays.items()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv=None) -> dict:
    from rewardax import envs

    parser = cli.ArgumentParser(prog="python -m rewardax.eval.dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", choices=envs.names(), help="the env (default: the --policy run's)")
    parser.add_argument("--policy", help="a trained run directory: its policy's episodes, plain and with noise")
    parser.add_argument("--noise", type=float, default=0.5, help="std of the action noise of perturbed episodes")
    parser.add_argument("--out", required=True, help="directory to write manifest.json and data.npz into")
    parser.add_argument("--look", default="paper", choices=envs.LOOKS)
    parser.add_argument("--episodes", type=int, default=16, help="episodes of each policy")
    parser.add_argument("--every", type=int, default=5, help="film every k-th step of an episode")
    parser.add_argument("--path-frames", type=int, default=64, help="states along the env's state path")
    parser.add_argument("--frame-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    policy, name, look = None, args.env, args.look
    if args.policy:
        from rewardax.train import load_agent

        env, policy = load_agent(args.policy)
        saved = json.loads((pathlib.Path(args.policy) / "config.json").read_text())["config"]
        if args.env not in (None, saved["task"]):
            parser.error(f"--env {args.env} but the --policy run trained {saved['task']}: leave --env out")
        name, look = saved["task"], saved["look"]
    elif args.env is None:
        parser.error("give --env (or --policy, a trained run directory)")
    else:
        env = envs.make(args.env, look=args.look)
    manifest = generate(env, name, args.out, episodes=args.episodes, every=args.every, path_frames=args.path_frames,
                        frame_size=args.frame_size, seed=args.seed, look=look, policy=policy, noise=args.noise)
    print(json.dumps({k: manifest[k] for k in ("env", "count", "counts", "success_rate")}))
    return manifest


if __name__ == "__main__":
    cli.run(main)
