"""Multi-process runs: the flagship on two local CPU processes of 2 devices each trains like one process of 4
devices, bit for bit, its reward model split over each process's two devices (``--mesh envs=2,model=2``); a signal to either process stops both, and the rerun resumes exactly; a process that
dies stops the other."""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rewardax import distributed
from rewardax.train.checkpoints import Checkpoints

ROOT = pathlib.Path(__file__).parents[1]
FLAGSHIP = ROOT / "experiments" / "humanoid_splits.py"
PROCESSES, DEVICES_EACH, ITERATIONS = 2, 2, 3
MESH = "envs=2,model=2"  # the smoke preset's CLIP split over each process's two devices (a model group per process)
TIMEOUT = 600.0  # seconds a two-process job may take: both compile from cold (~180 s), on 2 shared cores


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Job:
    """``experiments/humanoid_splits.py ARGS`` on two local processes of two CPU devices each, configured the
    way a user would: the REWARDAX_* variables and ``--distributed``."""

    def __init__(self, out: pathlib.Path, args: list[str], name: str, command: list[str] | None = None):
        port = free_port()
        self.logs = [(out / f"{name}_{pid}.out", out / f"{name}_{pid}.err") for pid in range(PROCESSES)]
        self.procs = []
        for pid, (stdout, stderr) in enumerate(self.logs):
            with open(stdout, "wb") as o, open(stderr, "wb") as e:
                command = command or [str(FLAGSHIP), "--distributed", *args]
                self.procs.append(subprocess.Popen([sys.executable, *command], stdout=o, stderr=e,
                                                   env=self.environment(port, pid), cwd=ROOT))

    @staticmethod
    def environment(port: int, pid: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if "_proxy" not in k.lower() and not k.startswith(("REWARDAX_", "JAX_COORDINATOR"))}
        flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform")]
        env.update(XLA_FLAGS=" ".join(flags + [f"--xla_force_host_platform_device_count={DEVICES_EACH}"]),
                   JAX_PLATFORMS="cpu", JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}")  # loopback only
        env[distributed.ENV_COORDINATOR] = f"127.0.0.1:{port}"
        env[distributed.ENV_NUM_PROCESSES] = str(PROCESSES)
        env[distributed.ENV_PROCESS_ID] = str(pid)
        return env

    def wait(self, timeout: float = TIMEOUT) -> list[int | None]:
        """Exit codes (None: still running at the deadline, then killed)."""
        deadline, codes = time.monotonic() + timeout, []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
        self.kill()
        return codes

    def kill(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def summaries(self) -> list[dict]:
        return [json.loads(stdout.read_text().splitlines()[-1]) for stdout, _ in self.logs]

    def report(self, codes) -> str:
        return "\n".join(f"--- process {pid}: exit code {code}\nstdout:\n{tail(out, 5)}\nstderr:\n{tail(err)}"
                         for pid, (code, (out, err)) in enumerate(zip(codes, self.logs)))


def tail(path: pathlib.Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.exists() else "<no output>"
    return "\n".join(text.splitlines()[-lines:])


def wait_for_iteration(run: pathlib.Path, job: Job, iteration: int = 1):
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and all(p.poll() is None for p in job.procs):
        if metrics.exists() and len(metrics.read_text().splitlines()) >= iteration:
            return
        time.sleep(0.02)
    pytest.fail(f"no iteration {iteration} logged:\n{job.report([p.poll() for p in job.procs])}")


def logged_iterations(run: pathlib.Path) -> list[int]:
    return [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    """The flagship's smoke preset for ITERATIONS iterations in this process: one process, the same 4 devices."""
    sys.path.insert(0, str(FLAGSHIP.parent))
    import train

    run = tmp_path_factory.mktemp("one_process")
    summary = train.main(["--preset", "smoke", "--run-dir", str(run), "--iterations", str(ITERATIONS), "--mesh", MESH],
                         task="splits")
    assert summary["iterations"] == ITERATIONS
    return run


def test_the_flagship_smoke_run_leaves_checkpoints_logs_tensorboard_and_a_video(one_process_run):
    run = one_process_run
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2", "3"]
    assert logged_iterations(run) == [1, 2, 3]
    assert any((run / "tb").iterdir())
    assert (run / "videos" / f"iteration_{ITERATIONS:06d}.mp4").stat().st_size > 0


@pytest.mark.timeout(900)
def test_two_processes_run_the_flagship_like_one_process(one_process_run, tmp_path):
    assert jax.device_count() == PROCESSES * DEVICES_EACH, "tests run with 4 virtual CPU devices (tests/conftest.py)"
    run = tmp_path / "run"
    job = Job(tmp_path, ["--preset", "smoke", "--run-dir", str(run), "--iterations", str(ITERATIONS), "--mesh", MESH],
              "flagship")
    codes = job.wait()
    assert codes == [0, 0], job.report(codes)
    assert [(s["stopped"], s["iterations"], s["run_dir"]) for s in job.summaries()] == \
        [("finished", ITERATIONS, str(run))] * 2
    assert logged_iterations(run) == list(range(1, ITERATIONS + 1))  # logged once, by process 0
    assert json.loads((run / "config.json").read_text())["processes"] == PROCESSES
    assert (run / "videos" / f"iteration_{ITERATIONS:06d}.mp4").stat().st_size > 0  # both evaluated; 0 filmed
    # Every leaf of the final checkpoint (agent, optimiser, statistics, keys, every env's physics) equals the
    # one-process run's, bit for bit (device sums add in device order: rewardax.stats.device_sum).
    assert_same_checkpoints(run, one_process_run)


def assert_same_checkpoints(run, reference):
    two, one = Checkpoints(run / "checkpoints").read(), Checkpoints(reference / "checkpoints").read()
    assert two.keys() == one.keys() and any(k.startswith("state/params/") for k in one)
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)


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


PROBE_WORKER = """
import json, os, sys
from rewardax.envs import probes
from rewardax.rewards import EnvReward
from rewardax.rl import PPOConfig
from rewardax.train import ProcessLost, TrainConfig, train
config = TrainConfig(num_envs=8, iterations=int(sys.argv[2]), checkpoint_every=5, eval_every=0,
                     run_dir=sys.argv[1], ppo=PPOConfig(num_steps=8, minibatches=2, epochs=1, hidden_sizes=(8,)))
try:
    summary = train(config, env=probes.Reach(), reward=EnvReward(), progress=False)
except ProcessLost as error:  # as experiments/train.py does: say why, exit without JAX's shutdown barrier
    print(f"error: {error}", file=sys.stderr, flush=True)
    os._exit(1)
print(json.dumps(summary), flush=True)
"""
PROBE_ITERATIONS = 40


def probe_job(out, run, name, iterations):
    return Job(out, [], name, command=["-c", PROBE_WORKER, str(run), str(iterations)])


@pytest.mark.timeout(600)
def test_a_sigterm_to_one_process_stops_both_after_the_same_iteration_and_the_rerun_resumes_exactly(tmp_path):
    """The trainer's multi-process stop and resume, on the probe env (the flagship's launches cost minutes of
    compiling each; the code path is the same `train`)."""
    from rewardax.envs import probes
    from rewardax.rewards import EnvReward
    from rewardax.rl import PPOConfig
    from rewardax.train import TrainConfig, train

    run = tmp_path / "run"
    job = probe_job(tmp_path, run, "first", PROBE_ITERATIONS)
    wait_for_iteration(run, job, 3)
    job.procs[1].send_signal(signal.SIGTERM)  # to one process only, as a preemption notice may arrive
    codes = job.wait()
    assert codes == [0, 0], job.report(codes)
    first = job.summaries()
    stopped_at = first[0]["iterations"]
    assert [s["stopped"] for s in first] == ["signal SIGTERM"] * 2 and first[1]["iterations"] == stopped_at, first
    assert 3 <= stopped_at < PROBE_ITERATIONS and Checkpoints(run / "checkpoints").latest() == stopped_at

    resumed = probe_job(tmp_path, run, "resumed", PROBE_ITERATIONS)
    codes = resumed.wait()
    assert codes == [0, 0], resumed.report(codes)
    assert [(s["stopped"], s["iterations"]) for s in resumed.summaries()] == [("finished", PROBE_ITERATIONS)] * 2
    assert logged_iterations(run) == list(range(1, PROBE_ITERATIONS + 1))

    reference = tmp_path / "one_process"  # uninterrupted, one process of 4 devices
    train(TrainConfig(num_envs=8, iterations=PROBE_ITERATIONS, checkpoint_every=5, eval_every=0,
                      run_dir=str(reference), ppo=PPOConfig(num_steps=8, minibatches=2, epochs=1, hidden_sizes=(8,))),
          env=probes.Reach(), reward=EnvReward(), progress=False)
    assert_same_checkpoints(run, reference)


@pytest.mark.timeout(600)
def test_a_process_that_dies_stops_the_others_at_once_with_a_clear_error(tmp_path):
    run = tmp_path / "run"
    job = probe_job(tmp_path, run, "probe", 100_000)
    wait_for_iteration(run, job, 3)
    job.procs[1].kill()
    killed = time.monotonic()
    codes = job.wait(timeout=200)
    waited = time.monotonic() - killed
    said = job.logs[0][1].read_text()
    # Either the survivor's next collective with the dead process fails at once (ProcessLost), or, where it
    # waits without noticing (a gloo receive from another peer, a checkpoint's barrier), JAX's coordination
    # service misses the dead process's heartbeats and aborts it within its 100 s timeout. Both were seen.
    assert codes[1] == -signal.SIGKILL and codes[0] in (1, -signal.SIGABRT), job.report(codes)
    assert waited < 150, f"{waited:.0f} s"
    if codes[0] == 1:
        assert re.search(r"error: iteration \d+: a collective across the job's processes failed \(.*\): another "
                         r"process has died or stopped; its log says why. Rerun every process with the same "
                         r"command to resume \((the last checkpoint \(iteration \d+\) in .* is kept|no checkpoint "
                         r"in .*)\)", said), said
    else:
        assert "This most likely indicates that another task died" in said, said[-3000:]
