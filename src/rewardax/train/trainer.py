"""The host loop around the shared training step: run directory, logs, checkpoints, evaluation videos.

    summary = train(presets("kneeling")["smoke"])

- Every value is checked and the reward model built before the run directory is touched: a start that
  fails leaves nothing behind. The run directory holds config.json (with the git revision), metrics.jsonl,
  TensorBoard events (tb/), checkpoints (`rewardax.train.checkpoints`: by name, verified, the last few kept,
  written asynchronously), evaluation videos and, redrawn when the run ends, learning_curve.png (`curve`).
- The best evaluation is kept: each time the evaluation's oracle success beats every earlier one (ties: the
  higher dense ground truth), the train state is saved to ``best/`` with ``best.json`` (iteration, success),
  so a run whose policy later slips still hands over its best one (`load_agent(run_dir, which="best")`).
- Resuming is exact: the checkpoint holds the agent, optimiser, normalisers, keys and every env's
  physics state, so an interrupted run continued from its checkpoint takes the same steps as one that
  never stopped. Once a run directory holds a checkpoint, it is bound to its config: another config is
  refused (nothing is overwritten), except the fields in `RESUMABLE_CHANGES` (`rewardax.train.run_dir`); a
  larger ``iterations`` extends a run. A damaged latest checkpoint is set aside, with a warning, for the one before it.
- Many processes, one run: every process of a job calls `train` with the same config (checked); process 0
  names the run directory and writes the logs, checkpoints are written and restored collectively,
  evaluation runs on all of them, and a signal to any process stops all of them after the same iteration.
- SIGTERM/SIGINT (preemptible TPU VMs, Ctrl-C) finish the current iteration, save, and return normally; a
  second one ends the process at once, without saving.
- Every iteration and evaluation runs under `rewardax.train.watchdog`: one far slower than its limit (a hang,
  or a process of the job that died) stops the run with `TrainingStalled`, every thread's Python and native
  stacks in ``stall-<iteration>.txt``.
- A non-finite loss or parameter, the agent's or a trainable reward model's, stops the run with
  `TrainingDiverged` (`rewardax.train.monitor`); the bad state is not saved.

The trainer's other jobs live beside it: `config` (the config and presets), `run_dir` (config.json and the
checks that bind a directory to its config), `checkpoints`, `logger`, `signals`, `watchdog`, `monitor`,
`evaluation` (episodes and their `video`) and `agent` (a trained policy out of its run directory).
"""
from __future__ import annotations

import functools
import importlib.util
import math
import pathlib
import signal
import sys
import time
from typing import Callable

import jax
from tqdm import tqdm

import rewardax.envs as envs
from rewardax import distributed, labelled_frames
from rewardax.mesh import make_mesh, mesh_shape, model_size
from rewardax.models.sharding import specs
from rewardax.rewards import Reward, check_reward
from rewardax.rl import step as rl_step
from rewardax.rl.evaluate import can_evaluate
from rewardax.rl.label_buffer import from_dataset
from rewardax.train.checkpoints import BestPolicy, Checkpoints
from rewardax.train.config import TrainConfig
from rewardax.train.curve import plot_learning_curve
from rewardax.train.evaluation import make_evaluation
from rewardax.train.logger import Logger
from rewardax.train.monitor import HackingMonitor, RewardModelCheck, non_finite
from rewardax.train.run_dir import check_resumable, check_same_config_everywhere, run_dir_for, write_config
from rewardax.train.signals import StopOnSignal
from rewardax.train.watchdog import TrainingStalled, Watchdog

__all__ = ["ProcessLost", "TrainingDiverged", "TrainingStalled", "train"]


class TrainingDiverged(RuntimeError):
    """A loss or parameter became NaN or infinite."""


class ProcessLost(RuntimeError):
    """A collective of a multi-process job failed: another process died or was stopped."""


def train(config: TrainConfig, env: envs.TaskEnv | None = None, reward: Reward | None = None, progress: bool = True,
          callback: Callable[[int, dict], None] | None = None) -> dict:
    """Train (or resume) as ``config`` says; ``env``/``reward`` override the ones the config names.

    ``callback(iteration, metrics)`` runs on the host after every iteration (custom logging, early stops by
    raising a signal). Returns a summary: run directory, iterations done, last metrics, why it stopped.
    In a multi-process job every process calls it with the same config (it joins the job first).
    """
    distributed.initialize(required=config.distributed)
    mesh = make_mesh(mesh_shape(config.mesh, jax.device_count()))
    # Everything is checked, and the reward model built, before the run directory is touched.
    per_device = rl_step.check_num_envs(config.num_envs, mesh)
    rl_step.check_reward_chunk(config.reward_chunk, per_device, config.eval_episodes)
    if config.wandb and importlib.util.find_spec("wandb") is None:
        raise ValueError("--wandb needs the wandb package: pip install wandb (then wandb login)")
    check_same_config_everywhere(config)
    env = envs.check_env(envs.make(config.task, look=config.look) if env is None else env)
    reward = check_reward(config.reward.build(env) if reward is None else reward)
    learning = config.reward_learning if config.train_reward else None
    if learning is not None and reward.split()[1] is None:
        reward = learning.make_trainable(reward)
    reward = reward.shard(model_size(mesh))  # its weights split over the mesh's model axis (a no-op at model=1)
    dataset = labelled_frames.load(learning.labels_from) if learning and learning.labels_from else None
    frozen_reward = reward.split()[0]  # on the devices once, not copied every step
    frozen_reward = distributed.place(frozen_reward, mesh, specs(frozen_reward))
    run_dir = pathlib.Path(distributed.from_main(str(run_dir_for(config))))
    main = distributed.is_main_process()

    total_updates = config.iterations * config.ppo.epochs * config.ppo.minibatches
    state, env_batch, labels = rl_step.init(env, jax.random.PRNGKey(config.seed), config.ppo, config.num_envs,
                                            total_updates, mesh, reward, learning, config.frame_size)
    if dataset is not None:  # a resumed run's rings come from its checkpoint instead
        labels = jax.device_put(
            from_dataset(dataset, learning.teacher, jax.random.PRNGKey(config.seed),
                         learning.per_device(mesh.devices.size)[1], mesh.devices.size, config.frame_size),
            jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(rl_step.AXIS)))
    store = Checkpoints(run_dir / "checkpoints", config.keep_checkpoints)
    start = 0
    if store.latest() is not None:  # the run directory is bound to its config once it holds a checkpoint
        if not config.resume:
            raise ValueError(f"{run_dir} holds a run (checkpoints up to iteration {store.latest()}) and resume is "
                             f"off: choose another --run-dir, or resume it. Nothing was changed.")
        check_resumable(run_dir, config)
        restored = store.restore_latest(_saved(state, env_batch, labels))
        if restored is not None:
            start, saved = restored
            state, env_batch, labels = saved["state"], saved["envs"], saved.get("labels")
    distributed.barrier("run directory checked")  # every process has read it before process 0 writes
    if main:
        write_config(run_dir, config)
    train_step = rl_step.make_train_step(env, config.ppo, config.num_envs, total_updates, config.frame_size, mesh,
                                         config.reward_every, learning, config.reward_chunk)
    evaluate = make_evaluation(env, config, mesh) if can_evaluate(env) else None
    check_reward_model = RewardModelCheck(enabled=reward.needs_frames)
    watch_hacking = HackingMonitor(enabled=reward.needs_frames)

    def save(iteration):
        store.save(iteration, _saved(state, env_batch, labels))

    best = BestPolicy(run_dir)

    def keep_if_best(iteration):
        if best.improves(metrics):
            best.save(iteration, state, metrics, main)
        metrics["eval/best_success"] = best.score[0]

    def on_stall():
        # With one process, a pending save only writes host copies of an earlier state to disk; with several,
        # it ends with a barrier that is a device computation, queued behind the stuck one.
        if jax.process_count() == 1:
            store.wait()
        return _kept(store)

    watch_steps, watch_evals, watch_stops = (Watchdog(config, on_stall) for _ in range(3))

    def evaluate_now(iteration):
        return watch_evals(lambda: evaluate(state, frozen_reward, run_dir, iteration),
                           f"evaluation after iteration {iteration}", run_dir / f"stall-evaluation-{iteration}.txt")

    def stop_asked(signals, iteration):
        """The signal any process received (all processes stop after the same iteration), or None."""
        asked = watch_stops(lambda: distributed.gather(signal.Signals[signals.received] if signals.received else 0),
                            f"the processes' agreement after iteration {iteration}", run_dir / f"stall-{iteration}.txt")
        return next((signal.Signals(s).name for s in asked if s), None)

    env_steps_per_iteration = config.num_envs * config.ppo.num_steps
    stop_reason, metrics = "finished", {}
    with Logger(run_dir, config, enabled=main) as log, StopOnSignal(lambda: _kept(store)) as signals, \
            tqdm(total=config.iterations, initial=min(start, config.iterations), disable=not (progress and main),
                 unit="it", desc=f"{config.task}") as bar:
        def loop():
            nonlocal state, env_batch, labels, metrics, iteration, stop_reason
            while iteration < config.iterations:
                began = time.perf_counter()
                new_state, new_env_batch, new_labels, metrics = watch_steps(
                    functools.partial(_run_step, train_step, state, env_batch, labels, frozen_reward),
                    f"iteration {iteration + 1}", run_dir / f"stall-{iteration + 1}.txt")
                bad = non_finite(metrics)
                if bad:
                    store.wait()
                    raise TrainingDiverged(
                        f"iteration {iteration + 1}: non-finite {', '.join(bad)}; the run stopped and the last good "
                        f"checkpoint (iteration {store.latest()}) in {store.directory} is kept. Lower "
                        f"the learning rate or check the reward model's outputs.")
                state, env_batch, labels, iteration = new_state, new_env_batch, new_labels, iteration + 1
                seconds = time.perf_counter() - began
                metrics.update(iteration=iteration, env_steps=iteration * env_steps_per_iteration,
                               env_steps_per_s=env_steps_per_iteration / seconds)
                if evaluate and ((config.eval_every and iteration % config.eval_every == 0)
                                 or iteration == config.iterations):
                    metrics.update(evaluate_now(iteration))
                    keep_if_best(iteration)
                hacking, warnings = watch_hacking(metrics)
                metrics.update(hacking)
                log.scalars(metrics)
                if callback is not None:
                    callback(iteration, metrics)
                bar.update(1)
                bar.set_postfix(_progress(metrics))
                for warning in [check_reward_model(metrics), *warnings]:
                    if warning and main:
                        tqdm.write(warning, file=sys.stderr)
                stop = stop_asked(signals, iteration)
                if stop:
                    stop_reason = f"signal {stop}"
                    return
                if iteration % config.checkpoint_every == 0:
                    save(iteration)

        iteration = start
        if progress and main:
            tqdm.write(f"run directory: {run_dir}" + (f", resumed at iteration {start}" if start else "")
                       + f" (watch it: tensorboard --logdir {run_dir / 'tb'})", file=sys.stderr)
        try:
            loop()
        except jax.errors.JaxRuntimeError as error:
            if jax.process_count() == 1:
                raise
            raise ProcessLost(
                f"iteration {iteration + 1}: a collective across the job's processes failed "
                f"({str(error).splitlines()[0][:200]}): another process has died or stopped; its log says why. "
                f"Rerun every process with the same command to resume ({_kept(store)}).") from error
        if store.latest() != iteration:
            save(iteration)
        store.wait()
        best.close()
    summary = {"run_dir": str(run_dir), "iterations": iteration, "stopped": stop_reason, "metrics": metrics,
               **({"best": best.record()} if best.record() is not None else {})}
    if main and (run_dir / "metrics.jsonl").exists():
        summary["learning_curve"] = str(plot_learning_curve(run_dir))
    return summary


def _progress(metrics: dict) -> dict:
    """The progress bar's numbers: speed, reward, oracle success, the reward model's agreement with the ground
    truth (r: Pearson vs the dense reward) and the latest evaluation."""
    shown = {"steps/s": f"{metrics['env_steps_per_s']:.0f}", "reward": f"{metrics['reward']:.4g}"}
    for key, name in (("oracle/success", "success"), ("reward_model/pearson_dense", "r"),
                      ("reward_model/held_out_accuracy", "rm_acc"), ("eval/success", "eval")):
        if key in metrics and math.isfinite(metrics[key]):
            shown[name] = f"{metrics[key]:.2f}"
    if "reward_model/labels" in metrics:
        shown["labels"] = f"{metrics['reward_model/labels']:.0f}"
    return shown


def _run_step(train_step, state, env_batch, labels, reward):
    """One iteration, compiled if need be and run to completion, its metrics on the host: everything that
    waits on the device, for the watchdog to run off the main thread."""
    state, env_batch, labels, metrics = jax.block_until_ready(train_step(state, env_batch, labels, reward))
    return state, env_batch, labels, {k: float(v) for k, v in jax.device_get(metrics).items()}


def _saved(state, env_batch, labels) -> dict:
    """What a checkpoint holds, by name: the train state, the envs and, when the reward model learns, its
    labelled frames."""
    return {"state": state, "envs": env_batch} | ({} if labels is None else {"labels": labels})


def _kept(store: Checkpoints) -> str:
    """Names the newest complete checkpoint: one still being written would be lost if the process ended now."""
    steps = store.steps()[:-1] if store.saving() else store.steps()
    where = store.directory
    return f"the last checkpoint (iteration {steps[-1]}) in {where} is kept" if steps else f"no checkpoint in {where}"
