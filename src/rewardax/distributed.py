"""Running one training job over several processes (hosts): TPU pods, multi-GPU nodes, CPU machines.

Call :func:`initialize` first thing in the program, before any other JAX call, on every process::

    rewardax.distributed.initialize()          # reads the cluster / environment; no-op for one process
    mesh = rewardax.mesh.make_mesh()                # every device of every process
    state, envs, labels = step.init(env, jax.random.PRNGKey(seed), config, num_envs, total_updates, mesh)
    train_step = step.make_train_step(env, config, num_envs, total_updates, mesh)
    ...
    if rewardax.distributed.is_main_process():
        write logs

JAX on several processes is multi-controller: every process runs the same program and the compiled step
spans the devices of all of them. What is global, and what each process must do:

- **The mesh** is global: ``rewardax.mesh.make_mesh()`` is built from ``jax.devices()``, every device of every
  process, in the same order everywhere; a model group (``--mesh ...,model=M``) lies within one process. ``num_envs``
  is the global env count and must split over all devices.
- **The seed** is global: every process passes the same key to ``step.init``. The agent's parameters, the
  optimiser state and the minibatch key are computed identically on each process and placed on the mesh
  replicated; JAX checks that they really are equal on every process (a different seed on one process
  raises ``... passed to device_put is not the same on each process``).
- **The envs** need no feeding: ``step.init`` passes the replicated key into ``shard_map`` and each device
  builds only its own slice of the envs from its global position on the mesh (``lax.axis_index``), so each
  process computes exactly its local shard and the global batch equals the one-process batch with the same
  seed and ``num_envs``. The env batch stays sharded across processes; read it with
  ``jax.experimental.multihost_utils.process_allgather`` (or each process's ``addressable_shards``).
- **The reward model** is an argument of every step and must be the same on every process. Put its arrays
  on the mesh once with :func:`place`: arrays committed to one local device (e.g. loaded with
  ``jax.device_put(w, device)``) cannot enter a step that spans other processes' devices.
- **Metrics and the train state** come out replicated (fully addressable on every process): ``jax.device_get``
  works on any process. Only the main process (:func:`is_main_process`) writes logs, videos and metrics;
  checkpoints with orbax are written collectively (every process calls save; orbax coordinates).

On CPU, cross-process collectives use gloo (``jax_cpu_collectives_implementation``, JAX's default).
"""

from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

log = logging.getLogger(__name__)

ENV_COORDINATOR = "REWARDAX_COORDINATOR"
"""``host:port`` of process 0, reachable from every process."""
ENV_NUM_PROCESSES = "REWARDAX_NUM_PROCESSES"
ENV_PROCESS_ID = "REWARDAX_PROCESS_ID"
"""0 … num_processes − 1; process 0 runs the coordinator."""

_started: dict | None = None
"""The settings this module started the distributed runtime with."""


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_count: int | None = None, required: bool = False) -> bool:
    """Join a multi-process JAX job if this is one; returns whether JAX runs on more than one process.

    Settings, first found wins per field: the arguments; ``REWARDAX_COORDINATOR``, ``REWARDAX_NUM_PROCESSES``,
    ``REWARDAX_PROCESS_ID``; otherwise JAX's own cluster detection (Cloud TPU pods, SLURM, Open MPI, …).
    With none of them, or one process, it does nothing. Calling it again is harmless (settings must agree).

    Args:
      coordinator_address: ``host:port`` of process 0 (needs ``num_processes`` and ``process_id``).
      num_processes: processes in the job.
      process_id: this process's index, 0 … ``num_processes`` − 1.
      local_device_count: CPU backend only: how many (virtual) CPU devices this process exposes
        (``jax_num_cpu_devices``); accelerators always expose their real devices (restrict them with
        ``JAX_LOCAL_DEVICE_IDS`` / ``CUDA_VISIBLE_DEVICES``).
      required: a multi-process job is expected (``--distributed``): without settings or a recognised
        cluster, hand over to ``jax.distributed.initialize()``'s own detection, and fail if it finds none.
    """
    coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    num_processes = _setting(num_processes, "num_processes", ENV_NUM_PROCESSES)
    process_id = _setting(process_id, "process_id", ENV_PROCESS_ID)
    if local_device_count is not None:
        _set_cpu_device_count(local_device_count)

    if jax.distributed.is_initialized():
        _check_agrees(coordinator_address, num_processes, process_id)
        return True

    explicit = (coordinator_address, num_processes, process_id) != (None, None, None)
    if explicit:
        settings = _explicit_settings(coordinator_address, num_processes, process_id)
        if settings is None:
            return False
        _start(**settings, cluster_detection_method="deactivate")
        return True

    detected = _cluster_process_count()
    if (detected is None or detected <= 1) and not required:
        return False
    _start()  # JAX detects the coordinator, process count and id (and per-process GPUs on SLURM/Open MPI)
    return True


def is_main_process() -> bool:
    """True on the one process that writes logs, metrics and videos (process 0; the only one when alone)."""
    return jax.process_index() == 0


def from_main(text: str, limit: int = 4096) -> str:
    """Process 0's ``text``, on every process (e.g. a run directory named after process 0's clock)."""
    if jax.process_count() == 1:
        return text
    data = text.encode()
    if len(data) > limit:
        raise ValueError(f"{len(data)} bytes is more than the {limit} that from_main shares")
    shared = multihost_utils.broadcast_one_to_all(np.frombuffer(data.ljust(limit, b"\0"), np.uint8))
    return bytes(np.asarray(shared)).rstrip(b"\0").decode()


def gather(value: int) -> list[int]:
    """Every process's ``value``, in process order, on every process (all must call it)."""
    if jax.process_count() == 1:
        return [int(value)]
    return [int(v) for v in np.asarray(multihost_utils.process_allgather(np.int32(value))).reshape(-1)]


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier called ``name`` (nothing to wait for when alone)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def place(tree, mesh: Mesh, specs=P()):
    """Put a pytree on the devices of ``mesh`` (all processes), each leaf laid out as its `PartitionSpec` in
    ``specs`` (a tree prefix of ``tree``; default: replicated on every device): e.g. a reward model's weights, once
    before training, so each step does not copy them again (`rewardax.models.sharding.specs` splits them over the
    model axis). Every process passes the same full values (JAX checks) and keeps its own shards. In a
    multi-process job, local arrays go through host memory first, as arrays on one process's devices cannot
    enter a step that spans the others'."""

    def put(x, sharding):
        if isinstance(x, jax.Array):
            if x.sharding == sharding:
                return x
            if x.is_fully_addressable and jax.process_count() > 1:  # a local array: through host memory
                if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
                    impl = jax.random.key_impl(x)
                    return jax.random.wrap_key_data(jax.device_put(np.asarray(jax.random.key_data(x)), sharding),
                                                    impl=impl)
                x = np.asarray(x)
        return jax.device_put(x, sharding)

    def put_all(spec, subtree):
        sharding = NamedSharding(mesh, spec)
        return jax.tree.map(lambda x: put(x, sharding), subtree)

    return jax.tree.map(put_all, specs, tree, is_leaf=lambda x: isinstance(x, P))


def _setting(value, name: str, env: str) -> int | None:
    if value is None:
        text = os.environ.get(env, "").strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{env}={text!r} must be an integer") from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def _explicit_settings(coordinator_address, num_processes, process_id) -> dict | None:
    """The complete explicit settings, None for a single process, or an error naming what is missing."""
    where = {"coordinator_address": ENV_COORDINATOR, "num_processes": ENV_NUM_PROCESSES, "process_id": ENV_PROCESS_ID}
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes={num_processes} must be at least 1")
    if num_processes == 1:
        if process_id not in (None, 0):
            raise ValueError(f"process_id={process_id} with num_processes=1: the only process is 0")
        return None
    missing = [name for name, value in given.items() if value is None]
    if missing:
        have = ", ".join(f"{name}={value!r}" for name, value in given.items() if value is not None)
        need = ", ".join(f"{name} (or {where[name]})" for name in missing)
        raise ValueError(f"incomplete multi-process settings: got {have} but not {need}. A multi-process run "
                         "needs all three on every process: the coordinator's host:port (process 0's address, "
                         "reachable from every process), the number of processes and this process's id; a single "
                         "process needs none of them")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id} must be in 0 … {num_processes - 1} (one per process)")
    if ":" not in coordinator_address:
        raise ValueError(f"coordinator_address={coordinator_address!r} must be host:port, e.g. 10.0.0.1:1234")
    return dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)


def _start(**settings):
    global _started
    try:
        jax.distributed.initialize(**settings)
    except (RuntimeError, ValueError) as error:
        if "before any JAX calls" in str(error):
            raise RuntimeError("rewardax.distributed.initialize() must run before any other JAX call (even "
                               "jax.devices()): call it first thing in the program, on every process") from error
        if not settings:
            raise RuntimeError(f"--distributed: no multi-process job found ({error}). Set {ENV_COORDINATOR}, "
                               f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} on every process, or run inside a "
                               f"cluster JAX recognises (Cloud TPU pod, SLURM, Open MPI)") from error
        raise
    _started = {k: settings[k] for k in ("coordinator_address", "num_processes", "process_id") if k in settings}
    log.info("JAX distributed: process %d of %d", jax.process_index(), jax.process_count())
    if jax.process_count() > 1 and jax.default_backend() == "cpu" and jax.config.jax_enable_compilation_cache:
        # The CPU backend's cache keys differ per process and only process 0 writes entries, so process 0 would
        # run a cached executable and the others a fresh compile of the same program, which may order its
        # independent collectives differently: gloo then deadlocks (seen with jaxlib 0.10.2). Fresh compiles
        # everywhere agree. (jax_share_binary_between_hosts waits on the per-process key forever on CPU.)
        jax.config.update("jax_enable_compilation_cache", False)
        log.warning("multi-process CPU job: the persistent compilation cache is off (its executables would differ "
                    "between processes)")


def _check_agrees(coordinator_address, num_processes, process_id):
    """Idempotence: a repeated call may restate the running settings, not change them."""
    running = {"num_processes": jax.process_count(), "process_id": jax.process_index()}
    if _started is not None:
        running["coordinator_address"] = _started.get("coordinator_address")
    asked = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
    clash = {k: (v, running[k]) for k, v in asked.items() if v is not None and running.get(k) not in (None, v)}
    if clash:
        detail = ", ".join(f"{k}={new!r} (running: {old!r})" for k, (new, old) in clash.items())
        raise RuntimeError(f"JAX distributed is already initialised with other settings: {detail}; "
                           "it can be initialised once per process")


def _set_cpu_device_count(count: int):
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"local_device_count={count!r} must be a positive int")
    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError as error:
        raise RuntimeError(f"local_device_count={count} must be set before any JAX call (the CPU backend already "
                           "started): call rewardax.distributed.initialize() first thing in the program") from error


def _cluster_process_count() -> int | None:
    """Processes in the cluster JAX's auto-detection recognises (the same checks ``jax.distributed.initialize()``
    makes: Cloud TPU, SLURM, Open MPI, Kubernetes), or None outside one."""
    try:
        from jax._src.clusters import ClusterEnv  # private: JAX's registry of cluster kinds
    except ImportError:  # moved in a later JAX: rely on explicit settings
        return None
    for cluster in ClusterEnv._cluster_types:
        if cluster.opt_in_only_method:
            continue
        try:
            if cluster.is_env_present():
                return int(cluster.get_process_count())
        except Exception as error:  # noqa: BLE001 - a broken probe must not stop a single-process run
            log.warning("cluster detection %s failed: %s", cluster.__name__, error)
    return None
