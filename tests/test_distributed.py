"""Multi-process runs: two local CPU processes of 2 devices each train like one process of 4 devices."""

import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rewardax import distributed
from rewardax.envs import probes
from rewardax.rewards import EnvReward
from rewardax.rl import PPOConfig
from rewardax.rl import step as rl_step

WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")
SMALL = PPOConfig(learning_rate=3e-3, num_steps=8, minibatches=2, epochs=2, hidden_sizes=(16,), gamma=0.9)
NUM_ENVS, ITERATIONS, PROCESSES, DEVICES_EACH = 8, 2, 2, 2
TIMEOUT = 240.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if "_proxy" not in k.lower() and not k.startswith("REWARDAX_") and not k.startswith("JAX_COORDINATOR")}
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={DEVICES_EACH}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COORDINATOR_BIND_ADDRESS"] = f"127.0.0.1:{port}"  # the coordinator listens on loopback only
    return env


def tail(path: pathlib.Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else "<no output>"
    return "\n".join(text.splitlines()[-lines:])


def run_workers(out: pathlib.Path) -> list[dict[str, np.ndarray]]:
    """Start the processes (process 1 configured through REWARDAX_* variables), wait for all of them."""
    port = free_port()
    procs, logs = [], []
    for pid in range(PROCESSES):
        stdout, stderr = out / f"worker_{pid}.out", out / f"worker_{pid}.err"
        command = [sys.executable, str(WORKER), str(out), "--coordinator", f"127.0.0.1:{port}",
                   "--num-processes", str(PROCESSES), "--process-id", str(pid), "--local-devices", str(DEVICES_EACH),
                   "--num-envs", str(NUM_ENVS), "--iterations", str(ITERATIONS), "--via", ["args", "env"][pid % 2]]
        with open(stdout, "wb") as o, open(stderr, "wb") as e:
            procs.append(subprocess.Popen(command, stdout=o, stderr=e, env=worker_env(port), cwd=WORKER.parents[1]))
        logs.append((stdout, stderr))
    deadline = time.monotonic() + TIMEOUT
    codes = []
    try:
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failed = [(pid, code) for pid, code in enumerate(codes) if code != 0]
    if failed:
        report = "\n".join(
            f"--- process {pid}: " + ("timed out after %.0f s" % TIMEOUT if code is None else f"exit code {code}")
            + f"\nstdout tail:\n{tail(logs[pid][0], 10)}\nstderr tail:\n{tail(logs[pid][1])}" for pid, code in failed)
        pytest.fail(f"{len(failed)} of {PROCESSES} worker processes failed:\n{report}")
    return [dict(np.load(out / f"process_{pid}.npz")) for pid in range(PROCESSES)]


def test_two_processes_train_like_one_process_with_the_same_devices(tmp_path):
    assert jax.device_count() == PROCESSES * DEVICES_EACH, "tests run with 4 virtual CPU devices (tests/conftest.py)"
    results = run_workers(tmp_path)

    # The reference: one process with the same 4 devices, the same seed and envs.
    mesh = rl_step.mesh()
    state, batch = rl_step.init(probes.Reach(), jax.random.PRNGKey(0), SMALL, NUM_ENVS, ITERATIONS, mesh)
    train_step = rl_step.make_train_step(probes.Reach(), SMALL, NUM_ENVS, ITERATIONS, frame_size=16, mesh_=mesh)
    rewards = []
    for _ in range(ITERATIONS):
        state, batch, metrics = train_step(state, batch, EnvReward())
        rewards.append(float(jax.device_get(metrics)["reward"]))
    params = [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]

    first, second = results
    assert [bool(r["is_main"]) for r in results] == [True, False]
    for key in set(first) - {"is_main"}:  # the same replicated state and the same global env batch on both
        np.testing.assert_array_equal(first[key], second[key], err_msg=f"{key} differs between the two processes")
    assert len([k for k in first if k.startswith("param_")]) == len(params)
    for i, expected in enumerate(params):
        np.testing.assert_allclose(first[f"param_{i}"], expected, rtol=1e-5, atol=1e-6,
                                   err_msg=f"param leaf {i}: two processes vs one")
    np.testing.assert_allclose(first["obs_mean"], np.asarray(state.obs_stats.mean), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first["rewards"], rewards, rtol=1e-5)
    np.testing.assert_allclose(first["env_obs"], np.asarray(batch.state.obs), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(first["env_steps"], np.asarray(batch.steps))
    np.testing.assert_array_equal(first["replicated"], np.arange(3.0))


@pytest.mark.parametrize("kwargs,message", [
    (dict(coordinator_address="127.0.0.1:1234"), r"not num_processes \(or REWARDAX_NUM_PROCESSES\), process_id"),
    (dict(num_processes=2, process_id=1), r"not coordinator_address \(or REWARDAX_COORDINATOR\)"),
    (dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2), r"process_id=2 must be in 0 … 1"),
    (dict(coordinator_address="127.0.0.1", num_processes=2, process_id=0), "must be host:port"),
    (dict(num_processes=0), "must be at least 1"),
    (dict(num_processes=1, process_id=1), "the only process is 0"),
])
def test_half_specified_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distributed.initialize(**kwargs)


def test_half_specified_environment_is_refused(monkeypatch):
    monkeypatch.setenv(distributed.ENV_COORDINATOR, "127.0.0.1:1234")
    with pytest.raises(ValueError, match="REWARDAX_NUM_PROCESSES"):
        distributed.initialize()
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "two")
    with pytest.raises(ValueError, match="REWARDAX_NUM_PROCESSES='two' must be an integer"):
        distributed.initialize()


def test_a_single_process_needs_nothing(monkeypatch):
    for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize() is False
    assert distributed.initialize(num_processes=1) is False
    assert distributed.initialize(num_processes=1, process_id=0) is False
    assert not jax.distributed.is_initialized()
    assert distributed.is_main_process()


def test_device_count_cannot_change_once_jax_runs():
    assert jax.device_count() == 4  # the backend is running
    with pytest.raises(RuntimeError, match="first thing in the program"):
        distributed.initialize(local_device_count=3)
    assert jax.device_count() == 4
