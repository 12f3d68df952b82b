"""Learning curves: PPO trains tasks through the flagship's trainer with a ground-truth reward, or with a
yes-token reward model that starts knowing nothing and learns inside the step from the simulated teacher.

    python benchmarks/learning.py                                     # kneeling, splits, lotus; 30 min each
    python benchmarks/learning.py --tasks kneeling --minutes 5        # a quick look
    python benchmarks/learning.py --tasks kneeling --rewards oracle   # adds a run to runs/learning
    python benchmarks/learning.py --tasks cartpole --rewards learned --minutes 10 --out docs/learned
    python benchmarks/learning.py --tasks cartpole --rewards learned --mistake 0.1   # a teacher that errs
    python benchmarks/learning.py --tasks all --minutes 30                # the paper's eight humanoid tasks
    python benchmarks/learning.py --tasks kneeling --seed 1               # another seed, kept beside seed 0
    python benchmarks/learning.py --tasks kneeling --rewards learned --label-budget 20000 --frame-size 56 \
        --reward-every 2 --minutes 60                                     # the humanoid through a learned reward
    python benchmarks/learning.py --tasks cartpole --smoke --random-episodes 2 --out /tmp/l   # checks the script

``learned``: a tiny randomly initialised InternVL (`rewardax.models.write_random_vlm`: 56 px input; frames drawn at
``--frame-size`` and shrunk to it) scores the frames (the log-odds of "yes" against "no") and trains in the step
on the teacher's answers (``--train-reward`` with the preset's `rewardax.rl.reward_update.RewardLearning` and
`LEARNED_UPDATES`; ``--mistake``, ``--label-budget``, ``--frame-size`` and ``--reward-every`` change its teacher,
budget and frames, and name the run after what they change). Its curves add the
reward model's accuracy on the held-out frames and the labels spent.

Every run is `rewardax.train.train` (the same step, trainer, checkpoints and evaluation as
`experiments/humanoid_splits.py`) with the ``learning`` preset (``classic`` for CartPole and MountainCar), stopped
after ``--minutes`` of wall time. ``--smoke`` shrinks each run to the ``smoke`` preset's sizes (envs, iterations,
PPO, frame size, evaluation episodes; evaluated at its end) to check the script, not to measure learning.
The evaluation (every ``eval_every`` iterations) runs a batch of deterministic episodes and records the oracle
success on their last frame. Prints one JSON line per run (the curve: env-steps, seconds, success) and writes
``learning.json``, ``learning.png`` (success against env-steps, a panel per task, with the rate of a random
policy — uniform random actions — as a dashed baseline) and ``learning.md`` (the table: first >= 80%, best, the
mean of the last three evaluations) into ``--out``. Runs already in ``--out/learning.json`` are kept (a run of
the same task, reward and settings is replaced; a run is named after the settings it changes, its seed
included), so the runs of a table can be made in separate sessions.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import signal
import time

import jax
import tyro

from common import machine as describe_machine

import rewardax.envs as envs
from rewardax import cli
from rewardax.rewards import REWARD_CONFIGS, DenseRewardConfig, YesTokenRewardConfig
from rewardax.train.config import presets
from rewardax.train import train


@dataclasses.dataclass(frozen=True)
class Args:
    tasks: tuple[str, ...] = ("kneeling", "splits", "lotus")
    """Tasks to train (all: the eight humanoid tasks of the paper)."""
    rewards: tuple[str, ...] = ("dense",)
    """Rewards to train with: dense and/or oracle (the ground truth, dense or binary), learned (the yes-token model trained
    in the step from the simulated teacher)."""
    mistake: float = 0.0
    """learned: the teacher's probability of flipping a label (B-Pref's mistake)."""
    label_budget: int = 0
    """learned: the teacher's queries in the whole run (0: the preset's)."""
    frame_size: int = 112
    """learned: pixels the frames are drawn at, shrunk anti-aliased to the model's 56 (see `LEARNED_UPDATES`)."""
    reward_every: int = 1
    """learned: the model scores every n-th step and the reward holds in between (TrainConfig.reward_every)."""
    success_bonus: float | None = None
    """dense: added to the reward where the oracle passes (`rewardax.rewards.DenseRewardConfig.success_bonus`;
    default: the learning preset's, `rewardax.train.config.LEARNING_SUCCESS_BONUS` on the humanoid tasks, 0 on
    CartPole and MountainCar)."""
    minutes: float = 30.0
    """Wall-time budget of each run."""
    num_envs: int = 0
    """Envs per run (0: the learning preset's)."""
    seed: int = 0
    out: str = "runs/learning"
    """Where the runs, learning.json and learning.png go."""
    random_episodes: int = 256
    """Episodes of uniform random actions for the baseline rate."""
    smoke: bool = False
    """Check the script, measure nothing: each run at the smoke preset's sizes, evaluated once at its end."""


def random_policy_rate(task: str, episodes: int, seed: int = 0) -> float:
    """Oracle success on the last frame of episodes with uniform random actions in the actuator range."""
    env = envs.make(task)

    @jax.jit
    def run(key):
        reset_key, action_key = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(reset_key, episodes))

        def one(state, key):
            action = jax.random.uniform(key, (episodes, env.action_size), minval=-1.0, maxval=1.0)
            return jax.vmap(env.step)(state, action), None

        state, _ = jax.lax.scan(one, state, jax.random.split(action_key, env.episode_length))
        return state.metrics["success"].mean()

    return float(run(jax.random.key(seed)))


LEARNED = "learned"


def run_name(reward: str, args: Args, config) -> str:
    """The run's name in the results: the reward, with the settings it changes (a learned run's teacher and
    frames; any run's seed), so that runs of one task with different settings are kept side by side."""
    changes = []
    if reward == LEARNED:
        changes += [f"mistake {args.mistake:g}"] if args.mistake else []
        changes += [f"{args.label_budget} labels"] if args.label_budget else []
        changes += [f"{args.frame_size} px"] if args.frame_size != Args.frame_size else []
        changes += [f"reward every {args.reward_every}"] if args.reward_every != 1 else []
    bonus = getattr(config.reward, "success_bonus", 0.0)
    changes += [f"success bonus {bonus:g}"] if reward == "dense" and bonus else []
    changes += [f"seed {args.seed}"] if args.seed else []
    return f"{reward} ({', '.join(changes)})" if changes else reward


def reward_settings(reward: str, args: Args, config) -> dict:
    """The config fields that make ``reward``: a ground-truth reward by name, or the yes-token model learning."""
    if reward == "dense":
        return {} if args.success_bonus is None else {"reward": DenseRewardConfig(success_bonus=args.success_bonus)}
    if reward != LEARNED:
        return {"reward": REWARD_CONFIGS[reward]()}
    learning = config.reward_learning
    learning = dataclasses.replace(learning, teacher=dataclasses.replace(learning.teacher, mistake=args.mistake),
                                   label_budget=args.label_budget or learning.label_budget, **LEARNED_UPDATES)
    return {"reward": YesTokenRewardConfig(checkpoint="random", bfloat16=False, score="log_odds"),
            "train_reward": True, "reward_learning": learning,
            "frame_size": args.frame_size, "reward_every": args.reward_every,
            "ppo": dataclasses.replace(config.ppo, scale_reward=True)}


LEARNED_UPDATES = {"updates": 8, "learning_rate": 1e-3}
"""For a model that starts from random weights: more and larger steps than the defaults. Measured on CartPole
together with 112 px frames (below): held-out pairwise accuracy 0.95 after 2,900 labels and 0.97 after 6,000,
against 0.90 and 0.92 with 4 steps of 3e-4 on 56 px frames. The reward is the log-odds of "yes", which orders
every pose (P("yes") is ~0 for every fallen one), scaled by PPO's return normaliser (the log-odds span tens of
units). Frames are drawn at 112 px and shrunk, anti-aliased, to the model's 56 px: drawn at 56 px the pole is a
jagged line."""


def run_one(task: str, reward: str, args: Args, out: pathlib.Path) -> dict:
    config = presets(task)["learning"]
    if args.smoke:
        smoke = presets(task)["smoke"]
        config = dataclasses.replace(config, **{name: getattr(smoke, name) for name in (
            "num_envs", "iterations", "frame_size", "eval_episodes", "ppo", "reward_learning")}, eval_every=0,
            checkpoint_every=1)
    config = dataclasses.replace(config, task=task, seed=args.seed, **reward_settings(reward, args, config))
    name = run_name(reward, args, config)
    config = dataclasses.replace(config, run_dir=str(out / f"{task}-{name}".replace(" ", "_").replace(",", "")),
                                 **({"num_envs": args.num_envs} if args.num_envs else {}))
    deadline = time.perf_counter() + 60 * args.minutes
    curve = []

    def on_iteration(iteration, metrics):
        if "eval/success" in metrics:
            curve.append({"iteration": iteration, "env_steps": metrics["env_steps"],
                          "seconds": round(60 * args.minutes - (deadline - time.perf_counter()), 1),
                          "success": metrics["eval/success"], "dense": metrics.get("eval/dense"),
                          **{key: metrics[f"reward_model/{key}"] for key in ("held_out_accuracy", "labels")
                             if f"reward_model/{key}" in metrics}})
        if time.perf_counter() > deadline:
            signal.raise_signal(signal.SIGTERM)  # the trainer saves and stops after this iteration

    summary = train(config, callback=on_iteration)
    return {"task": task, "reward": name, "num_envs": config.num_envs, "iterations": summary["iterations"],
            "final_success": curve[-1]["success"] if curve else None,
            "best_success": max((p["success"] for p in curve), default=None), "curve": curve}


REWARD_COLOURS = {"dense": "C0", "oracle": "C1", LEARNED: "C2"}
PANELS_PER_ROW = 4


def plot(results: list[dict], baselines: dict[str, float], path: pathlib.Path, title: str) -> None:
    """One column per task: oracle success against env-steps for every run, and where a reward model learned,
    rows below with its held-out accuracy and the labels it was given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in results}, key=[r["task"] for r in results].index)
    rows = [("success", "oracle success, last frame\n(deterministic evaluation)")]
    if any("labels" in p for r in results for p in r["curve"]):
        rows += [("held_out_accuracy", "reward model: held-out\npairwise accuracy"), ("labels", "labels spent")]
    columns = min(len(tasks), PANELS_PER_ROW)
    bands = -(-len(tasks) // columns)  # tasks wrap onto further bands of panels
    size = (max(6.0, 4.2 * columns), 3.0 * len(rows) * bands)
    fig, axes = plt.subplots(len(rows) * bands, columns, figsize=size, squeeze=False)
    for index in range(len(tasks), bands * columns):  # the last band's empty panels
        band, column = divmod(index, columns)
        for row in range(len(rows)):
            axes[band * len(rows) + row][column].set_visible(False)
    names = list(dict.fromkeys(r["reward"] for r in results))
    spare = iter(f"C{i % 10}" for i in range(3, 100))
    colours = {name: REWARD_COLOURS.get(name) or next(spare) for name in names}
    for index, task in enumerate(tasks):
        band, column = divmod(index, columns)
        runs = [r for r in results if r["task"] == task and r["curve"]]
        for row, (key, label) in enumerate(rows):
            ax = axes[band * len(rows) + row][column]
            for result in runs:
                points = [p for p in result["curve"] if key in p]
                if points:
                    ax.plot([p["env_steps"] / 1e6 for p in points], [p[key] for p in points], marker=".",
                            label=f"{result['reward']} reward", color=colours[result["reward"]])
            if runs:  # the env-steps every run of the task reached: a fast run does not squeeze the others
                ax.set_xlim(0, 1.03 * min(r["curve"][-1]["env_steps"] for r in runs) / 1e6)
            if key == "success":
                ax.axhline(baselines[task], color="grey", linestyle="--", label="random policy")
                ax.axhline(0.8, color="green", linestyle=":", linewidth=0.8)
                ax.set(title=task, ylim=(-0.02, 1.02))
            if column == 0:
                ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[band * len(rows) + len(rows) - 1][column].set_xlabel("env-steps (millions)")
    legend = {}  # every series of every panel, once
    for ax in axes[0]:
        legend.update(zip(ax.get_legend_handles_labels()[1], ax.get_legend_handles_labels()[0]))
    axes[0][-1].legend(legend.values(), legend.keys(), loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(results: list[dict]) -> str:
    """The runs as a markdown table: when each first reached 80% oracle success, its best, the mean of its last
    three evaluations (what a user keeps at the end of the run), and how far it got."""
    lines = ["| task | reward | random policy | first ≥ 80% (env-steps, minutes) | best | mean of last three | "
             "env-steps | minutes |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        curve = r["curve"] or [{"env_steps": 0, "seconds": 0, "success": 0.0}]
        first = next((p for p in curve if p["success"] >= 0.8), None)
        last = [p["success"] for p in curve[-3:]]
        reached = f"{first['env_steps'] / 1e6:.2f} M, {first['seconds'] / 60:.1f} min" if first else "not reached"
        lines.append(f"| {r['task']} | {r['reward']} | {r['random_policy_success']:.0%} | {reached} | "
                     f"{max(p['success'] for p in curve):.0%} | {sum(last) / len(last):.0%} | "
                     f"{curve[-1]['env_steps'] / 1e6:.2f} M | {r['minutes']:g} |")
    return "\n".join(lines)


def main(args: Args) -> None:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    tasks = tuple(envs.TASKS) if args.tasks == ("all",) else args.tasks
    baselines = {task: random_policy_rate(task, args.random_episodes, args.seed) for task in tasks}
    saved = out / "learning.json"
    results = json.loads(saved.read_text()) if saved.exists() else []
    for result in results:
        baselines.setdefault(result["task"], result["random_policy_success"])
    for task in tasks:
        for reward in args.rewards:
            result = {"machine": machine, "minutes": args.minutes, "random_policy_success": baselines[task],
                      **run_one(task, reward, args, out)}
            print(json.dumps(result), flush=True)
            results = [r for r in results if (r["task"], r["reward"]) != (task, result["reward"])] + [result]
            saved.write_text(json.dumps(results, indent=1))
            kinds = "ground-truth and learned rewards" if any(LEARNED in r["reward"] for r in results) \
                else "ground-truth rewards"
            minutes = sorted({r["minutes"] for r in results})
            budget = f"{minutes[0]:g}" if len(minutes) == 1 else f"{minutes[0]:g}–{minutes[-1]:g}"
            plot(results, baselines, out / "learning.png",
                 f"PPO, {kinds}, {budget} min per run on {machine['cpu_count']} CPU cores ({machine['backend']})")
            (out / "learning.md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    cli.run(lambda: main(tyro.cli(Args)))
