"""Reward landscapes (the VLM-RM paper's Figure 2): a reward model's score of frames rendered along one
coordinate that leads to the goal (`TaskEnv.state_path`: the pole angle, the car position, standing → a
humanoid pose), with the region where the oracle passes shaded."""

from __future__ import annotations

import numpy as np
import jax
from tqdm import tqdm


def render_path(env, n: int, frame_size: int, batch: int = 32):
    """``(values [n], label, frames uint8 [n, S, S, 3], success [n])`` along the env's state path."""
    path = env.state_path(n)
    if path is None:
        raise ValueError(f"{type(env).__name__} has no state path (TaskEnv.state_path) to draw a landscape along")
    values, label, physics = path
    render = jax.jit(env.renderer(frame_size, frame_size))
    frames = np.concatenate([np.asarray(render(jax.tree.map(lambda x: x[i:i + batch], physics)).rgb)
                             for i in range(0, n, batch)])
    return np.asarray(values), label, frames, np.asarray(env.task.success(physics), bool)


def score_frames(reward, frames: np.ndarray, batch: int = 32, desc: str = "scoring") -> np.ndarray:
    """A frame-reading reward model's scores of ``frames``, in jitted batches (the last one padded)."""
    score = jax.jit(lambda r, f: r(f, None)[0])
    out = []
    for i in tqdm(range(0, len(frames), batch), desc=desc, leave=False):
        chunk = frames[i:i + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)]) if len(chunk) < batch else chunk
        out.append(np.asarray(score(reward, padded))[:len(chunk)])
    return np.concatenate(out)


def landscape(env, rewards: dict, n: int = 64, frame_size: int = 224, batch: int = 32) -> dict:
    """Every reward model of ``rewards`` ({name: Reward}) scored along the env's state path."""
    values, label, frames, success = render_path(env, n, frame_size, batch)
    return {"label": label, "values": values.tolist(), "success": success.tolist(),
            "rewards": {name: score_frames(reward, frames, batch, name).tolist() for name, reward in rewards.items()}}


def plot_landscapes(results: dict, path, title: str = "") -> None:
    """One panel per env of ``results`` ({env name: `landscape`}); each reward min-max normalised, as in the
    paper's figure, so that models of different scales share an axis; the success region shaded green."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline backend stays as it is

    fig = Figure(figsize=(4.6 * len(results), 3.4))
    axes = fig.subplots(1, len(results), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items()):
        x, success = np.asarray(result["values"]), np.asarray(result["success"])
        step = (x[1] - x[0]) / 2 if len(x) > 1 else 0.5
        for i in np.flatnonzero(success):
            ax.axvspan(x[i] - step, x[i] + step, color="green", alpha=0.15, linewidth=0,
                       label="oracle success" if i == np.flatnonzero(success)[0] else None)
        for label, scores in result["rewards"].items():
            scores = np.asarray(scores)
            span = scores.max() - scores.min()
            ax.plot(x, (scores - scores.min()) / (span if span > 0 else 1.0), label=label)
        ax.set(title=name, xlabel=result["label"], ylabel="reward (min-max normalised)", ylim=(-0.05, 1.05))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
