"""The host loop around the shared training step: run directory, logs, checkpoints, evaluation videos.

    summary = train(presets()["smoke"])

- Every value is checked and the reward model built before the run directory is touched: a start that
  fails leaves nothing behind. The run directory holds config.json (with the git revision), metrics.jsonl,
  TensorBoard events (tb/), checkpoints (`rewardax.train.checkpoints`: by name, verified, the last few kept,
  written asynchronously) and evaluation videos.
- Resuming is exact: the checkpoint holds the agent, optimiser, normalisers, keys and every env's
  physics state, so an interrupted run continued from its checkpoint takes the same steps as one that
  never stopped. Once a run directory holds a checkpoint, it is bound to its config: another config is
  refused (nothing is overwritten), except the fields in `RESUMABLE_CHANGES`; a larger ``iterations``
  extends a run. A damaged latest checkpoint is set aside, with a warning, for the one before it.
- Many processes, one run: every process of a job calls `train` with the same config (checked); process 0
  names the run directory and writes the logs, checkpoints are written and restored collectively,
  evaluation runs on all of them, and a signal to any process stops all of them after the same iteration.
- SIGTERM/SIGINT (preemptible TPU VMs, Ctrl-C) finish the current iteration, save, and return normally; a
  second one ends the process at once, without saving.
- Every iteration and evaluation runs under `rewardax.train.watchdog`: one far slower than its limit (a hang,
  or a process of the job that died) stops the run with `TrainingStalled`, every thread's Python and native
  stacks in ``stall-<iteration>.txt``.
- A non-finite loss or parameter stops the run with `TrainingDiverged`; the bad state is not saved.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Callable

import jax
from tqdm import tqdm

import rewardax.envs as envs
from rewardax import distributed
from rewardax.rewards import Reward, check_reward
from rewardax.rl import step as rl_step
from rewardax.rl.evaluate import can_evaluate
from rewardax.train.checkpoints import Checkpoints
from rewardax.train.config import RESUMABLE_CHANGES, TrainConfig
from rewardax.train.watchdog import TrainingStalled, Watchdog

__all__ = ["ProcessLost", "TrainingDiverged", "TrainingStalled", "load_agent", "train"]


VIDEO_MIN_SIZE = 160  # evaluation videos are enlarged to at least this width to stay legible


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
    mesh = rl_step.mesh()
    # Everything is checked, and the reward model built, before the run directory is touched.
    rl_step.check_num_envs(config.num_envs, mesh)
    if config.wandb and importlib.util.find_spec("wandb") is None:
        raise ValueError("--wandb needs the wandb package: pip install wandb (then wandb login)")
    _check_same_config_everywhere(config)
    env = envs.check_env(envs.make(config.task, look=config.look) if env is None else env)
    reward = check_reward(config.reward.build(env) if reward is None else reward)
    frozen_reward = distributed.replicate(reward.split()[0], mesh)  # on every device once, not copied every step
    run_dir = pathlib.Path(distributed.from_main(str(_run_dir(config))))
    main = distributed.is_main_process()

    total_updates = config.iterations * config.ppo.epochs * config.ppo.minibatches
    state, batch = rl_step.init(env, jax.random.PRNGKey(config.seed), config.ppo, config.num_envs, total_updates, mesh,
                                reward)
    store = Checkpoints(run_dir / "checkpoints", config.keep_checkpoints)
    start = 0
    if store.latest() is not None:  # the run directory is bound to its config once it holds a checkpoint
        if not config.resume:
            raise ValueError(f"{run_dir} holds a run (checkpoints up to iteration {store.latest()}) and resume is "
                             f"off: choose another --run-dir, or resume it. Nothing was changed.")
        _check_resumable(run_dir, config)
        restored = store.restore_latest((state, batch))
        if restored is not None:
            start, (state, batch) = restored
    distributed.barrier("run directory checked")  # every process has read it before process 0 writes
    if main:
        _write_config(run_dir, config)
    train_step = rl_step.make_train_step(env, config.ppo, config.num_envs, total_updates, config.frame_size,
                                         config.scale_reward, mesh, config.reward_every)
    evaluate = _evaluator(env, config, mesh) if can_evaluate(env) else None
    check_reward_model = _RewardModelCheck(enabled=reward.needs_frames)

    def save(iteration):
        store.save(iteration, (state, batch))

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
    with _Logger(run_dir, config, enabled=main) as log, _StopOnSignal(lambda: _kept(store)) as signals, \
            tqdm(total=config.iterations, initial=min(start, config.iterations), disable=not (progress and main),
                 unit="it", desc=f"{config.task}") as bar:
        def loop():
            nonlocal state, batch, metrics, iteration, stop_reason
            while iteration < config.iterations:
                began = time.perf_counter()
                new_state, new_batch, metrics = watch_steps(
                    functools.partial(_run_step, train_step, state, batch, frozen_reward), f"iteration {iteration + 1}",
                    run_dir / f"stall-{iteration + 1}.txt")
                # The reward-model agreement is NaN where undefined (no success yet), not a sign of divergence.
                bad = sorted(k for k, v in metrics.items()
                             if not math.isfinite(v) and not k.startswith("reward_model/"))
                if bad:
                    store.wait()
                    raise TrainingDiverged(
                        f"iteration {iteration + 1}: non-finite {', '.join(bad)}; the run stopped and the last good "
                        f"checkpoint (iteration {store.latest()}) in {store.directory} is kept. Lower "
                        f"the learning rate or check the reward model's outputs.")
                state, batch, iteration = new_state, new_batch, iteration + 1
                seconds = time.perf_counter() - began
                metrics.update(iteration=iteration, env_steps=iteration * env_steps_per_iteration,
                               env_steps_per_s=env_steps_per_iteration / seconds)
                if evaluate and ((config.eval_every and iteration % config.eval_every == 0)
                                 or iteration == config.iterations):
                    metrics.update(evaluate_now(iteration))
                log.scalars(metrics)
                if callback is not None:
                    callback(iteration, metrics)
                bar.update(1)
                bar.set_postfix(_progress(metrics))
                warning = check_reward_model(metrics)
                if warning and main:
                    tqdm.write(warning, file=sys.stderr)
                stop = stop_asked(signals, iteration)
                if stop:
                    stop_reason = f"signal {stop}"
                    return
                if iteration % config.checkpoint_every == 0:
                    save(iteration)

        iteration = start
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
    return {"run_dir": str(run_dir), "iterations": iteration, "stopped": stop_reason, "metrics": metrics}


def _progress(metrics: dict) -> dict:
    """The progress bar's numbers: speed, reward, oracle success, the reward model's agreement with the ground
    truth (r: Pearson vs the dense reward) and the latest evaluation."""
    shown = {"steps/s": f"{metrics['env_steps_per_s']:.0f}", "reward": f"{metrics['reward']:.4g}"}
    for key, name in (("oracle/success", "success"), ("reward_model/pearson_dense", "r"), ("eval/success", "eval")):
        if key in metrics and math.isfinite(metrics[key]):
            shown[name] = f"{metrics[key]:.2f}"
    return shown


def _run_step(train_step, state, batch, reward):
    """One iteration, compiled if need be and run to completion, its metrics on the host: everything that
    waits on the device, for the watchdog to run off the main thread."""
    state, batch, metrics = jax.block_until_ready(train_step(state, batch, reward))
    return state, batch, {k: float(v) for k, v in jax.device_get(metrics).items()}


def _kept(store: Checkpoints) -> str:
    """Names the newest complete checkpoint: one still being written would be lost if the process ended now."""
    steps = store.steps()[:-1] if store.saving() else store.steps()
    where = store.directory
    return f"the last checkpoint (iteration {steps[-1]}) in {where} is kept" if steps else f"no checkpoint in {where}"


def _run_dir(config: TrainConfig) -> pathlib.Path:
    if config.run_dir:
        return pathlib.Path(config.run_dir)
    return pathlib.Path("runs") / f"{config.task}-{time.strftime('%Y%m%d-%H%M%S')}"


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}


def _as_json(config: TrainConfig) -> dict:
    """The config as JSON, with the reward config's name (configs without fields look alike otherwise)."""
    fields = {**dataclasses.asdict(config), "reward": {"kind": config.reward.kind, **dataclasses.asdict(config.reward)}}
    return json.loads(json.dumps(fields))


def _differences(a: dict, b: dict) -> list[str]:
    a, b = _comparable(a), _comparable(b)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _check_same_config_everywhere(config: TrainConfig) -> None:
    """Every process of a job must run the same config; all of them raise together if one differs."""
    if jax.process_count() == 1:
        return
    mine = _as_json(config)
    main = json.loads(distributed.from_main(json.dumps(mine), limit=1 << 16))
    agree = distributed.gather(not _differences(main, mine))
    if not all(agree):
        others = [i for i, same in enumerate(agree) if not same]
        raise ValueError(f"process(es) {others} run another config than process 0"
                         + (f" ({', '.join(_differences(main, mine))} differ here)" if not agree[jax.process_index()]
                            else "") + ": start every process with the same command")


def load_agent(run_dir):
    """``(env, act)`` of a run directory's latest checkpoint, for rolling its policy out elsewhere (labelled
    datasets): ``act(obs [B, O], key, noise) -> action [B, A]`` is the policy's mean action plus Gaussian noise
    of std ``noise``, clipped to [-1, 1]. Reads config.json (task, look, PPO) and only the checkpoint's agent
    parameters and observation statistics."""
    from rewardax.rl.normalize import RunningMeanStd
    from rewardax.rl.ppo import PPOConfig
    from rewardax.train.checkpoints import unflatten_like

    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "config.json").is_file() or Checkpoints(run_dir / "checkpoints").latest() is None:
        raise ValueError(f"{run_dir}: not a run directory with a checkpoint (config.json and checkpoints/); "
                         f"train one first, e.g. python experiments/train.py --run-dir {run_dir}")
    saved = json.loads((run_dir / "config.json").read_text())["config"]
    ppo = PPOConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["ppo"].items()})
    env = envs.make(saved["task"], look=saved["look"])
    agent, params = rl_step.agent_for(env, ppo, jax.random.key(0))
    leaves = Checkpoints(run_dir / "checkpoints").read()
    template = {"params": params, "obs_stats": RunningMeanStd.create((env.observation_size,))}
    restored = unflatten_like(template, {name[2:]: v for name, v in leaves.items() if name.startswith("0/")})

    def act(obs, key, noise: float = 0.0):
        mean, _ = agent.distribution(restored["params"], restored["obs_stats"].normalize(obs))
        return jax.numpy.clip(mean + noise * jax.random.normal(key, mean.shape), -1.0, 1.0)

    return env, act


def _check_resumable(run_dir: pathlib.Path, config: TrainConfig) -> None:
    """Refuse to resume a run with a config that would change the steps it takes."""
    path = run_dir / "config.json"
    if not path.exists():
        return
    changed = _differences(json.loads(path.read_text())["config"], _as_json(config))
    if changed:
        raise ValueError(f"{run_dir} holds a run with a different config ({', '.join(changed)} differ); "
                         f"choose another --run-dir or resume with the same settings. Nothing was changed.")


def _write_config(run_dir: pathlib.Path, config: TrainConfig) -> None:
    """config.json with the git revision (a run directory without a checkpoint takes the new config)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(
        {"config": _as_json(config), "git_revision": _git_revision(), "devices": jax.device_count(),
         "processes": jax.process_count(), "backend": jax.default_backend()}, indent=2))


def _git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=pathlib.Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


class _StopOnSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each iteration; a second signal, for a run that
    does not finish its iteration (a hang, an impatient Ctrl-C), ends the process at once.

    ``kept()`` names the checkpoint that survives that exit.
    """

    def __init__(self, kept: Callable[[], str]):
        self.kept = kept

    def __enter__(self):
        self.received = None
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received:
            print(f"second {name}: exiting now without saving; {self.kept()}", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.received = name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Logger:
    """metrics.jsonl, TensorBoard and (optionally) Weights & Biases, on the main process only."""

    def __init__(self, run_dir: pathlib.Path, config: TrainConfig, enabled: bool):
        self.run_dir, self.config, self.enabled = run_dir, config, enabled

    def __enter__(self):
        if self.enabled:
            from tensorboardX import SummaryWriter

            self.jsonl = open(self.run_dir / "metrics.jsonl", "a")
            self.tensorboard = SummaryWriter(str(self.run_dir / "tb"))
            self.wandb = None
            if self.config.wandb:
                import wandb

                self.wandb = wandb.init(project="rewardax", dir=str(self.run_dir),
                                        config=dataclasses.asdict(self.config), resume="allow")
        return self

    def scalars(self, metrics: dict) -> None:
        if not self.enabled:
            return
        step = int(metrics["iteration"])
        self.jsonl.write(json.dumps(metrics) + "\n")
        self.jsonl.flush()
        for name, value in metrics.items():
            if math.isfinite(value):  # undefined values (e.g. AUC before any success) stay in metrics.jsonl only
                self.tensorboard.add_scalar(name, value, step)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def __exit__(self, *exc):
        if self.enabled:
            self.jsonl.close()
            self.tensorboard.close()
            if self.wandb is not None:
                self.wandb.finish()


def _evaluator(env, config: TrainConfig, mesh):
    """A batch of deterministic episodes (`rewardax.rl.evaluate`) on every process: their metrics, and on the
    main process the first episode as an mp4 with the reward curve and a PNG strip."""
    from rewardax.eval.video import episode_video, frame_strip
    from rewardax.rl.evaluate import make_evaluator

    run = make_evaluator(env, config.ppo, config.frame_size, config.eval_episodes, config.reward_every)

    def evaluate(state, frozen_reward, run_dir, iteration):
        key = distributed.replicate(jax.random.fold_in(jax.random.key(config.seed), iteration), mesh)
        metrics, (frames, rewards, success) = run(state.params, state.obs_stats,
                                                  rl_step.current_reward(frozen_reward, state), key)
        if jax.process_index() == 0:
            enlarge = -(-VIDEO_MIN_SIZE // frames.shape[2])  # small training frames: nearest-neighbour zoom
            frames = frames.repeat(enlarge, axis=1).repeat(enlarge, axis=2)
            videos = run_dir / "videos"
            title = f"{config.task} · iteration {iteration}"
            episode_video(frames, rewards, success, videos / f"iteration_{iteration:06d}.mp4",
                          fps=round(1 / env.dt), title=title)
            frame_strip(frames, videos / f"iteration_{iteration:06d}.png", rewards=rewards)
        return metrics

    return evaluate


class _RewardModelCheck:
    """Warns once when the reward model's rewards stay uncorrelated with the task's ground truth: the VLM-RM
    failure users report as "the agent learns nothing" (a model too small, a prompt or look it cannot see)."""

    WINDOW, THRESHOLD = 5, 0.1

    def __init__(self, enabled: bool):
        """``enabled`` for models that look at frames (the VLMs): the ground-truth rewards agree by definition."""
        self.enabled, self.recent, self.warned = enabled, [], False

    def __call__(self, metrics: dict) -> str | None:
        pearson = metrics.get("reward_model/pearson_dense", math.nan)
        if not self.enabled or self.warned or not math.isfinite(pearson):
            return None
        self.recent = (self.recent + [pearson])[-self.WINDOW:]
        if len(self.recent) < self.WINDOW or max(abs(r) for r in self.recent) >= self.THRESHOLD:
            return None
        self.warned = True
        return (f"warning: the reward model's reward hardly follows the task: its Pearson correlation with the dense "
                f"ground truth stayed below {self.THRESHOLD} for {self.WINDOW} iterations (last {pearson:+.3f}, "
                f"ROC-AUC against oracle success {metrics.get('reward_model/auc_success', math.nan):.2f}). A larger "
                f"CLIP, another prompt or alpha, or the paper look may help; experiments/score_poses.py shows what "
                f"the model sees in the canonical poses.")
