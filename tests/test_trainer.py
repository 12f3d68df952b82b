"""The host trainer: exact resume, preemption, divergence, hangs, refusing a different config, logs."""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from rewardax.envs import probes
from rewardax.rewards import EnvReward, Reward
from rewardax.rl import PPOConfig
from rewardax.rewards import ClipRewardConfig
from rewardax.train.config import TrainConfig
from rewardax.train import CheckpointCorrupt, TrainingDiverged, TrainingStalled, train
from rewardax.train.checkpoints import CheckpointMismatch, Checkpoints
from rewardax.train.watchdog import GDB_TIMEOUT_S

CONFIG = TrainConfig(num_envs=8, iterations=4, checkpoint_every=2, eval_every=0,
                     ppo=PPOConfig(learning_rate=3e-3, num_steps=8, minibatches=2, epochs=2, hidden_sizes=(16,),
                                   lr_schedule="linear"))


def reach(config, run_dir, **kwargs):
    return train(dataclasses.replace(config, run_dir=str(run_dir)), env=probes.Reach(),
                 reward=kwargs.pop("reward", EnvReward()), progress=False, **kwargs)


def restored_params(run_dir):
    """The latest checkpoint's step and leaves by name."""
    store = Checkpoints(run_dir / "checkpoints")
    return store.latest(), store.read()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    summary = reach(CONFIG, run_dir)
    return run_dir, summary


def test_a_resumed_run_equals_the_uninterrupted_run_bit_for_bit(uninterrupted, tmp_path):
    def interrupt_after_two(iteration, metrics):
        if iteration == 2:
            signal.raise_signal(signal.SIGTERM)

    first = reach(CONFIG, tmp_path, callback=interrupt_after_two)
    assert first["stopped"] == "signal SIGTERM" and first["iterations"] == 2
    resumed = reach(CONFIG, tmp_path)
    assert resumed["iterations"] == 4 and resumed["stopped"] == "finished"
    step_a, a = restored_params(uninterrupted[0])
    step_b, b = restored_params(tmp_path)
    assert step_a == step_b == 4 and a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=f"leaf {key}")
    assert uninterrupted[1]["metrics"]["reward"] == resumed["metrics"]["reward"]


def test_logs_config_and_tensorboard(uninterrupted):
    run_dir, summary = uninterrupted
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [1, 2, 3, 4]
    assert {"reward", "loss", "approx_kl", "env_steps_per_s", "param_norm"} <= set(lines[0])
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["num_envs"] == 8 and "git_revision" in saved
    assert any(p.name.startswith("events.out.tfevents") for p in (run_dir / "tb").iterdir())
    assert summary["learning_curve"] == str(run_dir / "learning_curve.png")
    assert (run_dir / "learning_curve.png").stat().st_size > 0


def test_the_learning_curve_keeps_the_last_row_of_an_iteration_logged_twice(tmp_path):
    from PIL import Image

    from rewardax.train.curve import plot_learning_curve, read_metrics

    rows = [{"iteration": 1, "env_steps": 10, "reward": 0.5, "oracle/success": 0.0},
            {"iteration": 2, "env_steps": 20, "reward": 0.7, "oracle/success": 0.5, "eval/success": 0.25},
            {"iteration": 2, "env_steps": 20, "reward": 0.9, "oracle/success": 1.0, "eval/success": 1.0},  # resumed
            {"iteration": 3, "env_steps": 30, "reward": 1.0, "reward_model/held_out_accuracy": 0.75}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert [row["reward"] for row in read_metrics(tmp_path)] == [0.5, 0.9, 1.0]
    with Image.open(plot_learning_curve(tmp_path)) as image:
        assert image.size == (1000, 360)


def test_a_run_directory_with_a_different_config_is_refused(uninterrupted):
    run_dir, _ = uninterrupted
    before = (run_dir / "config.json").read_text()
    with pytest.raises(ValueError, match=r"different config \(num_envs differ\).*Nothing was changed"):
        reach(dataclasses.replace(CONFIG, num_envs=16), run_dir)
    assert (run_dir / "config.json").read_text() == before


@struct.dataclass
class ScaledEnvReward(Reward):
    """The env's reward times ``scale`` (a NaN scale poisons training)."""

    scale: jax.Array
    needs_frames = False

    def __call__(self, frames, state):
        return state.reward * self.scale, {}


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    config = dataclasses.replace(CONFIG, iterations=6)
    reach(config, tmp_path, reward=ScaledEnvReward(jnp.float32(1.0)),
          callback=lambda i, m: signal.raise_signal(signal.SIGTERM) if i == 2 else None)
    with pytest.raises(TrainingDiverged, match=r"iteration 3: non-finite .*last good checkpoint \(iteration 2\)"):
        reach(config, tmp_path, reward=ScaledEnvReward(jnp.float32(jnp.nan)))
    assert restored_params(tmp_path)[0] == 2


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="num_envs=6 must be a positive multiple of the 4 devices"):
        reach(dataclasses.replace(CONFIG, num_envs=6), tmp_path / "run")
    with pytest.raises(ValueError, match=r"unknown env 'cartwheel'"):
        train(dataclasses.replace(CONFIG, task="cartwheel", run_dir=str(tmp_path / "run")), progress=False)
    with pytest.raises(Exception, match="/nonexistent/clip"):  # the CLIP is loaded before the run directory exists
        train(dataclasses.replace(CONFIG, reward=ClipRewardConfig("/nonexistent/clip"), run_dir=str(tmp_path / "run")),
              progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, message", [
    ({"frame_size": 0}, "frame_size must be an integer of at least 1, got 0"),
    ({"eval_episodes": 0, "iterations": -1}, "iterations must be .* eval_episodes must be"),  # every problem at once
    ({"reward": "clip"}, "reward must be one of ClipRewardConfig, OracleRewardConfig, DenseRewardConfig, "
                          "YesTokenRewardConfig, got 'clip'"),
])
def test_every_config_value_is_checked_when_the_config_is_made(change, message):
    with pytest.raises(ValueError, match=f"invalid training config: .*{message}"):
        dataclasses.replace(CONFIG, **change)


def test_a_reward_config_checks_its_values_when_made():
    with pytest.raises(ValueError, match=r"invalid clip reward: alpha must be in \[0, 1\]"):
        ClipRewardConfig(alpha=2.0)


@pytest.mark.parametrize("change, message", [
    ({"learning_rate": -1.0}, "learning_rate must be positive, got -1.0"),
    ({"minibatches": 3}, "minibatches=3 must divide num_steps=8"),
    ({"gamma": 1.5}, r"gamma must be in \[0, 1\]"),
    ({"hidden_sizes": (16, 0)}, "hidden_sizes must be one or more positive widths"),
    ({"activation": "tanhh"}, "activation must name a jax.nn function"),
])
def test_every_ppo_value_is_checked_when_the_config_is_made(change, message):
    with pytest.raises(ValueError, match=f"invalid PPO config: .*{message}"):
        dataclasses.replace(CONFIG.ppo, **change)


def test_a_run_directory_binds_its_config_only_once_it_holds_a_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged):  # fails in iteration 1: config.json written, no checkpoint
        reach(CONFIG, tmp_path, reward=ScaledEnvReward(jnp.float32(jnp.nan)))
    assert (tmp_path / "config.json").exists() and not list((tmp_path / "checkpoints").glob("[0-9]*"))
    corrected = dataclasses.replace(CONFIG, iterations=2, num_envs=4)
    assert reach(corrected, tmp_path)["iterations"] == 2
    assert json.loads((tmp_path / "config.json").read_text())["config"]["num_envs"] == 4


def test_a_finished_run_is_extended_by_more_iterations(uninterrupted, tmp_path):
    shutil.copytree(uninterrupted[0], tmp_path, dirs_exist_ok=True)
    summary = reach(dataclasses.replace(CONFIG, iterations=6), tmp_path)
    assert summary["iterations"] == 6 and summary["stopped"] == "finished"
    lines = [json.loads(line)["iteration"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [1, 2, 3, 4, 5, 6]
    assert json.loads((tmp_path / "config.json").read_text())["config"]["iterations"] == 6
    assert reach(CONFIG, tmp_path)["iterations"] == 6  # asking for fewer iterations than done: nothing to do


def overwrite_data_files(checkpoint):
    files = [f for f in (checkpoint / "state").rglob("*") if f.is_file() and f.parent.name == "d"]
    assert files
    rng = np.random.default_rng(0)
    for f in files:
        f.write_bytes(rng.integers(0, 256, f.stat().st_size, dtype=np.uint8).tobytes())


def test_a_damaged_latest_checkpoint_is_set_aside_for_the_one_before_it(uninterrupted, tmp_path, capsys):
    shutil.copytree(uninterrupted[0], tmp_path, dirs_exist_ok=True)
    overwrite_data_files(tmp_path / "checkpoints" / "4")
    summary = reach(dataclasses.replace(CONFIG, iterations=6), tmp_path)
    said = capsys.readouterr().err
    assert f"warning: checkpoint 4 in {tmp_path / 'checkpoints'} is damaged" in said, said
    assert "resuming from checkpoint 2 instead" in said and (tmp_path / "corrupt" / "4").is_dir()
    assert summary["iterations"] == 6
    lines = [json.loads(line)["iteration"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [1, 2, 3, 4, 3, 4, 5, 6]  # iterations 3 and 4 were taken again


def test_a_run_whose_every_checkpoint_is_damaged_stops_with_one_error(uninterrupted, tmp_path):
    shutil.copytree(uninterrupted[0], tmp_path, dirs_exist_ok=True)
    for checkpoint in (tmp_path / "checkpoints").glob("[0-9]*"):
        overwrite_data_files(checkpoint)
    with pytest.raises(CheckpointCorrupt, match="every checkpoint in .* is damaged"):
        reach(CONFIG, tmp_path)


class Stall:
    """The host side of `StallingReward`: while ``seconds`` is set, every reward callback waits that long (or
    until ``release``), like a kernel that hangs; announces the first wait on stdout."""

    def __init__(self):
        self.seconds, self.began, self.release = 0.0, None, threading.Event()

    def __call__(self):
        if self.seconds:
            if self.began is None:
                self.began = time.monotonic()
                print("STALLING", flush=True)
            self.release.wait(self.seconds)
        return np.float32(0.0)

    def end(self):
        """Lets the waiting callbacks (and the stuck iteration) finish, for the tests that follow."""
        self.seconds = 0.0
        self.release.set()


STALL = Stall()


@struct.dataclass
class StallingReward(Reward):
    """The env's reward, computed through a host callback that STALL can make slow."""

    needs_frames = False

    def __call__(self, frames, state):
        return state.reward + jax.pure_callback(STALL, jax.ShapeDtypeStruct((), jnp.float32)), {}


def stall_after_two(seconds):
    """A trainer callback: from iteration 3 on, every reward callback waits ``seconds``."""
    def callback(iteration, metrics):
        if iteration == 2:
            STALL.seconds = seconds
    return callback


@pytest.mark.timeout(300)
def test_a_hung_iteration_stops_the_run_with_the_stacks_and_keeps_the_last_checkpoint(tmp_path, capsys):
    config = dataclasses.replace(CONFIG, iterations=6, watchdog_min_s=3.0, watchdog_factor=0.1)
    try:
        with pytest.raises(TrainingStalled) as stalled:
            reach(config, tmp_path, reward=StallingReward(), callback=stall_after_two(300.0))
        waited = time.monotonic() - STALL.began
    finally:
        STALL.end()
    assert waited < 3 + GDB_TIMEOUT_S + 20  # the limit, then the stack dumps (gdb: ~20 s here), not the wait
    dump, checkpoints = tmp_path / "stall-3.txt", tmp_path / "checkpoints"
    assert re.match(r"iteration 3 stalled: no result after [\d.]+ s, past its limit of [\d.]+ s "
                    r"\(max\(watchdog_min_s=3, watchdog_factor=0.1 ", str(stalled.value))
    assert f"stacks of every thread are in {dump}; the last checkpoint (iteration 2) in {checkpoints} is kept" \
        in str(stalled.value)
    stacks = dump.read_text()
    main_thread = stacks[stacks.index("Current thread"):].split("\n\n")[0]  # faulthandler's name for the dumper
    assert re.search(r"trainer\.py\", line \d+ in train\n", main_thread), stacks
    assert re.search(r"test_trainer\.py\", line \d+ in __call__\n", stacks)  # the waiting reward callback
    assert "Native stacks:" in stacks and stacks in capsys.readouterr().err  # gdb's output, or why there is none
    assert restored_params(tmp_path)[0] == 2


@pytest.fixture
def stalling_worker(tmp_path):
    """``start(seconds)``: a trainer in a subprocess, checkpointing every iteration, whose reward callbacks
    wait ``seconds`` each from iteration 3 on; returned once that wait has begun. Killed after the test."""
    run_dir, workers = tmp_path / "run", []

    def start(seconds):
        workers.append(_start_stalling_worker(run_dir, seconds))
        return workers[-1], run_dir

    yield start
    for worker in workers:
        worker.kill()
        worker.wait()


def _start_stalling_worker(run_dir, seconds):
    script = textwrap.dedent(f"""
        import dataclasses, pathlib, sys
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from test_trainer import CONFIG, StallingReward, reach, stall_after_two
        summary = reach(dataclasses.replace(CONFIG, iterations=1000, checkpoint_every=1),
                        pathlib.Path({str(run_dir)!r}), reward=StallingReward(), callback=stall_after_two({seconds}))
        print("STOPPED", summary["stopped"], summary["iterations"], flush=True)
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    with open(run_dir.parent / f"{run_dir.name}.stderr", "w") as stderr:
        worker = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=stderr,
                                  text=True)
    for line in worker.stdout:  # (mujoco prints to stdout when it imports)
        if line == "STALLING\n":
            return worker
    pytest.fail(f"the worker ended (exit code {worker.wait()}) before its iteration 3: {stderr_of(run_dir)[-2000:]}")


def stderr_of(run_dir):
    return (run_dir.parent / f"{run_dir.name}.stderr").read_text()


@pytest.mark.timeout(300)
def test_sigterm_during_a_slow_iteration_finishes_it_saves_and_exits_zero(stalling_worker):
    worker, run_dir = stalling_worker(0.5)  # iteration 3 takes 8 steps × 0.5 s
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=120) == 0, stderr_of(run_dir)[-2000:]
    assert worker.stdout.read().splitlines()[-1] == "STOPPED signal SIGTERM 3"
    assert restored_params(run_dir)[0] == 3


@pytest.mark.timeout(300)
def test_a_second_sigterm_exits_at_once_without_saving(stalling_worker):
    worker, run_dir = stalling_worker(60.0)
    worker.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert worker.poll() is None  # the first one waits for the iteration to finish
    sent = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 128 + signal.SIGTERM
    assert time.monotonic() - sent < 5
    said = [line for line in stderr_of(run_dir).splitlines() if "SIGTERM" in line]
    assert said == [f"second SIGTERM: exiting now without saving; the last checkpoint (iteration 2) in "
                    f"{run_dir / 'checkpoints'} is kept"], said
    assert restored_params(run_dir)[0] == 2 and "STOPPED" not in worker.stdout.read()


def test_a_reward_model_blind_to_the_task_is_reported_once():
    from rewardax.train.monitor import RewardModelCheck

    check = RewardModelCheck(enabled=True)
    blind = {"reward_model/pearson_dense": 0.02, "reward_model/auc_success": 0.51}
    warnings = [check(blind) for _ in range(8)]
    assert warnings[:4] == [None] * 4 and "Pearson correlation" in warnings[4] and warnings[5:] == [None] * 3
    seeing = RewardModelCheck(enabled=True)
    assert all(seeing({"reward_model/pearson_dense": r}) is None for r in (0.02, 0.01, 0.4, 0.03, 0.0, 0.05))
    undefined = RewardModelCheck(enabled=True)
    assert all(undefined({"reward_model/pearson_dense": float("nan")}) is None for _ in range(8))
    assert all(RewardModelCheck(enabled=False)(blind) is None for _ in range(8))


@struct.dataclass
class LearnedScale(Reward):
    """The env's reward times a trainable ``scale``: a reward model with a frozen and a trainable part."""

    scale: jax.Array | None = None
    optimizer = optax.adam(1e-3)

    def split(self):
        return self.replace(scale=None), {"scale": self.scale}

    def merge(self, params):
        return self.replace(scale=params["scale"])

    def __call__(self, frames, state):
        return state.reward * self.scale, {}


def test_a_trainable_reward_model_lives_in_the_train_state_and_its_checkpoints_by_name(uninterrupted, tmp_path):
    frozen, params = LearnedScale(jnp.float32(2.0)).split()
    assert frozen.scale is None and float(params["scale"]) == 2.0  # only the frozen part is passed to the step
    first = []
    reach(dataclasses.replace(CONFIG, iterations=2), tmp_path, reward=LearnedScale(jnp.float32(2.0)),
          callback=lambda i, m: first.append(m["reward"]) if i == 1 else None)
    plain = json.loads((uninterrupted[0] / "metrics.jsonl").read_text().splitlines()[0])
    assert first[0] == pytest.approx(2.0 * plain["reward"], rel=1e-6)  # the step scored with the state's scale
    _, leaves = restored_params(tmp_path)
    assert float(leaves["state/reward_params/scale"]) == 2.0
    assert any(name.startswith("state/reward_opt_state/") for name in leaves)
    # A run saved without the trainable part cannot silently take one: the new fields are named.
    with pytest.raises(CheckpointMismatch, match="reward_params/scale"):
        reach(CONFIG, uninterrupted[0], reward=LearnedScale(jnp.float32(2.0)))


@struct.dataclass
class UnusedScale(LearnedScale):
    """The env's reward, with a trainable scale it does not read: only the reward model's norm can diverge."""

    def __call__(self, frames, state):
        return state.reward, {}


def test_a_diverging_reward_model_stops_the_run_like_a_diverging_agent(tmp_path):
    from rewardax.train.monitor import non_finite

    with pytest.raises(TrainingDiverged, match=r"iteration 1: non-finite reward_model/param_norm"):
        reach(CONFIG, tmp_path, reward=UnusedScale(jnp.float32(jnp.nan)))
    # Agreement with the ground truth is undefined before any success (NaN): that alone is no divergence.
    nan = float("nan")
    assert non_finite({"reward_model/auc_success": nan, "reward_model/pearson_dense": nan, "loss": 1.0}) == []
    assert non_finite({"reward_model/auc_success": nan, "reward_model/loss": nan}) == ["reward_model/loss"]


def test_a_checkpoint_saved_by_position_before_names_resumes_exactly(uninterrupted, tmp_path):
    """Checkpoints written before 2026-12-03 held the pair (state, envs) as 0/... and 1/...: they resume as
    state/... and envs/... (`rewardax.train.checkpoints.OLD_NAMES`), and the run goes on as if never stopped."""
    from rewardax.trees import nest

    reach(CONFIG, tmp_path, callback=lambda i, m: signal.raise_signal(signal.SIGTERM) if i == 2 else None)
    store = Checkpoints(tmp_path / "checkpoints")
    leaves = store.read(2)
    old = {"0": nest({k[len("state/"):]: v for k, v in leaves.items() if k.startswith("state/")}),
           "1": nest({k[len("envs/"):]: v for k, v in leaves.items() if k.startswith("envs/")})}
    shutil.rmtree(tmp_path / "checkpoints")
    store = Checkpoints(tmp_path / "checkpoints")
    store.save(2, old)
    store.wait()
    assert any(name.startswith("0/params/") for name in store._saved_leaves(2))  # written the old way
    assert store.read(2).keys() == leaves.keys()  # and read under today's names
    resumed = reach(CONFIG, tmp_path)
    assert resumed["iterations"] == 4
    _, a = restored_params(uninterrupted[0])
    _, b = restored_params(tmp_path)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=f"leaf {key}")


def test_a_config_json_from_before_a_field_was_added_resumes_under_todays_names(tmp_path):
    """Fields added since a run was saved (train_reward, a reward's success_bonus) take the defaults it ran with,
    and scale_reward is read where it moved (into ppo): the run resumes; a real change is still refused."""
    from rewardax.rewards import DenseRewardConfig
    from rewardax.train.run_dir import as_json, check_resumable

    config = dataclasses.replace(CONFIG, reward=DenseRewardConfig())
    old = as_json(config)
    del old["reward"]["success_bonus"], old["train_reward"]
    old["scale_reward"] = old["ppo"].pop("scale_reward")
    (tmp_path / "config.json").write_text(json.dumps({"config": old}))
    check_resumable(tmp_path, config)
    with pytest.raises(ValueError, match="reward differ"):
        check_resumable(tmp_path, dataclasses.replace(config, reward=DenseRewardConfig(success_bonus=1.0)))
