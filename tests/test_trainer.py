"""The host trainer: exact resume, preemption, divergence, refusing a different config, logs."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import struct

from rewardax.envs import probes
from rewardax.rewards import EnvReward
from rewardax.rl import PPOConfig
from rewardax.rl.config import TrainConfig, presets
from rewardax.rl.trainer import TrainingDiverged, train

CONFIG = TrainConfig(reward="oracle", num_envs=8, iterations=4, checkpoint_every=2, eval_every=0,
                     ppo=PPOConfig(learning_rate=3e-3, num_steps=8, minibatches=2, epochs=2, hidden_sizes=(16,),
                                   lr_schedule="linear"))


def reach(config, run_dir, **kwargs):
    return train(dataclasses.replace(config, run_dir=str(run_dir)), env=probes.Reach(),
                 reward=kwargs.pop("reward", EnvReward()), progress=False, **kwargs)


def restored_params(run_dir):
    """The latest checkpoint's leaves (flattened)."""
    with ocp.CheckpointManager((run_dir / "checkpoints").absolute()) as manager:
        step = manager.latest_step()
        return step, manager.restore(step)


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


def test_a_run_directory_with_a_different_config_is_refused(uninterrupted):
    run_dir, _ = uninterrupted
    before = (run_dir / "config.json").read_text()
    with pytest.raises(ValueError, match=r"different config \(num_envs differ\).*Nothing was changed"):
        reach(dataclasses.replace(CONFIG, num_envs=16), run_dir)
    assert (run_dir / "config.json").read_text() == before


@struct.dataclass
class ScaledEnvReward:
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
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        reach(dataclasses.replace(CONFIG, alpha=2.0), tmp_path / "run")
    with pytest.raises(ValueError, match="must divide ppo.num_steps=8"):
        reach(dataclasses.replace(CONFIG, ppo=dataclasses.replace(CONFIG.ppo, minibatches=3)), tmp_path / "run")
    with pytest.raises(ValueError, match="unknown env 'cartwheel'"):
        train(dataclasses.replace(CONFIG, task="cartwheel", run_dir=str(tmp_path / "run")), progress=False)
    assert not (tmp_path / "run").exists()


def test_sigterm_from_outside_saves_and_exits_zero(tmp_path):
    script = textwrap.dedent(f"""
        import dataclasses, sys
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from test_trainer import CONFIG, reach
        import pathlib
        summary = reach(dataclasses.replace(CONFIG, iterations=100000, checkpoint_every=100000),
                        pathlib.Path({str(tmp_path)!r}))
        print("STOPPED", summary["stopped"], summary["iterations"])
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    worker = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert worker.poll() is None, worker.stderr.read()[-2000:]
        assert time.time() < deadline, "the worker never logged an iteration"
        time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err[-2000:]
    stopped_at = int(out.split("STOPPED signal SIGTERM ")[1].split()[0])
    assert restored_params(tmp_path)[0] == stopped_at >= 2


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu", "tpu", "paper"])
def test_every_preset_is_a_consistent_config(name):
    config = presets()[name]
    assert config.num_envs % jax.device_count() == 0
    assert config.ppo.num_steps % config.ppo.minibatches == 0
    assert 0.0 <= config.alpha <= 1.0 and config.task == "splits"
