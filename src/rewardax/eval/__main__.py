"""Compare reward models against the ground truth before spending accelerator hours on them.

    python -m rewardax.eval --reward clip:random --alpha 0 0.5 1 --dataset data/cartpole
    python -m rewardax.eval --reward clip:openai/clip-vit-base-patch32 yes-token:random \\
        --landscape cartpole mountaincar --alpha 0 0.25 0.5 0.75 1
    python -m rewardax.eval --reward run:runs/cartpole yes-token:random --dataset data/cartpole

``--reward`` takes ``clip:<checkpoint>`` (each with every ``--alpha``) and ``yes-token:<checkpoint>`` (pointwise
P("yes")), the names training uses (``reward:clip``, ``reward:yes-token``); a checkpoint is a hub id, a local
directory, or ``random`` (a tiny random model, offline). ``run:<run_dir>`` is the reward model a run trained
(``--train-reward``) as its latest checkpoint has it, built as the run built it (mode, question, score, dtype;
no ``--alpha``) and scoring its own task's frames only (`rewardax.train.agent.load_reward_model`). With
``--dataset`` (made by ``python -m rewardax.eval.dataset``) every model scores every frame: EPIC distance to the
dense ground truth, Pearson correlation, ROC-AUC as a detector of oracle success, and the success rate among
the 10% of frames each model scores highest; a table is printed and ``eval.json``, ``eval.png`` and
``scores.csv`` written to ``--out``. ``scores.csv`` holds every frame's score by every model, beside the frame's
index in the dataset, its oracle success and its dense ground truth, so that each number of the table can be
recomputed with any tool. With ``--landscape`` the models score frames along each env's state path (the
paper's Figure 2): ``landscape.json`` and ``landscape.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib

import numpy as np

from rewardax import cli, envs
from rewardax.eval import dataset as datasets
from rewardax.eval.landscape import landscape, plot_landscapes, score_frames
from rewardax.eval.metrics import epic_distance, pearson, roc_auc, success_rate_at_threshold

RUN = "run:"


@dataclasses.dataclass(frozen=True)
class TrainedReward:
    """``run:<run_dir>``: the reward model a run trained, loaded with the run's env (`load`) and built for that
    env's task only (its question names the task's goal)."""

    run_dir: str

    def name(self) -> str:
        return f"{RUN}{pathlib.Path(self.run_dir).absolute().name}"

    def load(self):
        from rewardax.train.agent import load_reward_model

        return load_reward_model(self.run_dir)

    def build(self, env, loaded):
        run_env, reward = loaded
        if env.task.name != run_env.task.name:
            raise ValueError(f"--reward {RUN}{self.run_dir}: the run trained its reward model for the "
                             f"{run_env.task.name} task, not {env.task.name}: score it on {run_env.task.name}'s "
                             f"frames only")
        return reward


def parse_rewards(specs: list[str]) -> list:
    """Every ``--reward`` spec as what loads and builds it: a `TrainedReward` for ``run:<run_dir>``, else its
    config (`rewardax.rewards.reward_from_spec`, the names training uses) in float32, only rewards that score
    frames."""
    from rewardax.rewards import reward_from_spec

    configs = []
    for spec in specs:
        if spec.startswith(RUN):
            if spec == RUN:
                raise ValueError(f"--reward {spec!r}: name the run directory, {RUN}<run_dir>")
            configs.append(TrainedReward(spec[len(RUN):]))
            continue
        config = reward_from_spec(spec)
        if not hasattr(config, "checkpoint"):
            raise ValueError(f"--reward {spec!r}: {config.cli_name()} reads the physics state, not frames: it is the "
                             f"ground truth this command compares reward models with")
        configs.append(dataclasses.replace(config, bfloat16=False))
    return configs


def build_rewards(configs, loaded, alphas, env) -> dict:
    """{name: Reward} for the env's task: one CLIP reward per (checkpoint, α), one yes-token reward per checkpoint,
    a run's trained model as it is; ``loaded``: each config's model (its ``load()``), loaded once for every env
    and α."""
    rewards = {}
    for config, model in zip(configs, loaded):
        if isinstance(config, TrainedReward):
            rewards[config.name()] = config.build(env, model)
            continue
        name = f"{config.cli_name()}:{config.checkpoint}"
        if config.kind == "clip":
            for alpha in alphas:
                rewards[f"{name} α={alpha:g}"] = dataclasses.replace(config, alpha=alpha).build(env, model)
        else:
            rewards[name] = config.build(env, model)
    return rewards


def score_dataset(rewards: dict, data: dict, batch: int) -> dict[str, np.ndarray]:
    """{name: every dataset frame's score [N]}."""
    return {name: score_frames(reward, data["frames"], batch, name) for name, reward in rewards.items()}


def evaluate_dataset(scores: dict[str, np.ndarray], data: dict) -> list[dict]:
    """The table's rows: each model's scores (`score_dataset`) against the frames' ground truth."""
    return [{"reward": name, "epic_dense": float(epic_distance(s, data["dense"])),
             "pearson_dense": float(pearson(s, data["dense"])), "auc_success": float(roc_auc(s, data["success"])),
             "success_rate_top10": float(success_rate_at_threshold(s, data["success"], float(np.quantile(s, 0.9))))}
            for name, s in scores.items()]


def write_scores(scores: dict[str, np.ndarray], data: dict, path) -> None:
    """One CSV row per frame: its index in the dataset, success, dense, then each model's score. CSV rather
    than npz so that anyone can check the table with any tool (a spreadsheet, pandas, R) without NumPy; a few
    columns of numbers are small either way. Floats with 9 significant digits: float32 read back exactly."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["index", "success", "dense", *scores])
        columns = [data["success"].astype(int), data["dense"], *scores.values()]
        for index, row in enumerate(zip(*columns)):
            writer.writerow([index, row[0], *(f"{x:.9g}" for x in row[1:])])


def plot_rows(rows: list[dict], base_rate: float, path, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline backend stays as it is

    fig = Figure(figsize=(12, 0.5 * len(rows) + 2))
    axes = fig.subplots(1, 3, sharey=True)
    names = [r["reward"] for r in rows]
    for ax, key, label, reference in ((axes[0], "epic_dense", "EPIC distance to dense (lower is better)", np.sqrt(0.5)),
                                      (axes[1], "auc_success", "ROC-AUC for oracle success", 0.5),
                                      (axes[2], "success_rate_top10", "success rate, top 10% of frames", base_rate)):
        ax.barh(names, [r[key] for r in rows])
        ax.axvline(reference, color="grey", linestyle="--", linewidth=0.8)
        ax.set(xlabel=label)
    fig.suptitle(title + " (dashed: a reward that sees nothing)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    parser = cli.ArgumentParser(prog="python -m rewardax.eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reward", nargs="+", required=True,
                        help="clip:<checkpoint>, yes-token:<checkpoint> and/or run:<run_dir> (the reward model a run "
                             "trained, from its latest checkpoint)")
    parser.add_argument("--alpha", nargs="+", type=float, default=[0.0], help="CLIP goal-baseline α values (clip: only)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--dataset", help="a labelled dataset directory (python -m rewardax.eval.dataset)")
    where.add_argument("--landscape", nargs="+", choices=envs.names(), help="envs to draw reward landscapes of")
    parser.add_argument("--out", default="runs/eval", help="where the JSON and the PNG go")
    parser.add_argument("--frames", type=int, default=64, help="landscape: states along each path")
    parser.add_argument("--frame-size", type=int, default=224, help="landscape: side of the rendered frames")
    parser.add_argument("--batch", type=int, default=32, help="frames per scoring call")
    args = parser.parse_args(argv)
    configs = parse_rewards(args.reward)  # a malformed spec stops before anything is loaded
    out = pathlib.Path(args.out)  # made once there are results to write: a mistake leaves nothing behind
    if args.dataset:
        data = datasets.load(args.dataset)
        manifest = data["manifest"]
        env = envs.make(manifest["env"], look=manifest["look"])
        loaded = [config.load() for config in configs]
        scores = score_dataset(build_rewards(configs, loaded, args.alpha, env), data, args.batch)
        rows = evaluate_dataset(scores, data)
        width = max(len(r["reward"]) for r in rows)
        print(f"{'reward':<{width}}  EPIC↓   Pearson  AUC    top-10% success  ({manifest['env']}, "
              f"{manifest['count']} frames, base rate {manifest['success_rate']:.2f})")
        for r in rows:
            print(f"{r['reward']:<{width}}  {r['epic_dense']:.3f}  {r['pearson_dense']:+.3f}   {r['auc_success']:.3f}  "
                  f"{r['success_rate_top10']:.2f}")
        result = {"dataset": str(args.dataset), "env": manifest["env"], "count": manifest["count"],
                  "base_success_rate": manifest["success_rate"], "rows": rows}
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(result, indent=1))
        write_scores(scores, data, out / "scores.csv")
        plot_rows(rows, manifest["success_rate"], out / "eval.png", f"{manifest['env']}: {args.dataset}")
        return result
    loaded, results = [config.load() for config in configs], {}
    for name in args.landscape:
        env = envs.make(name)
        results[name] = landscape(env, build_rewards(configs, loaded, args.alpha, env), args.frames, args.frame_size,
                                  args.batch)
    out.mkdir(parents=True, exist_ok=True)
    (out / "landscape.json").write_text(json.dumps(results, indent=1))
    plot_landscapes(results, out / "landscape.png", "reward along each env's state path")
    print(json.dumps({"landscape": str(out / "landscape.png"), "envs": list(results)}))
    return results


if __name__ == "__main__":
    cli.run(main)
