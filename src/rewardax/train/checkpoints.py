"""Checkpoints that keep the train state by name and know when they are damaged.

    store = Checkpoints(run_dir / "checkpoints", keep=3)
    store.save(iteration, {"state": state, "envs": envs})   # asynchronous; every process calls it
    iteration, saved = store.restore_latest({"state": fresh_state, "envs": fresh_envs})
    best = BestPolicy(run_dir)                                # the best evaluation's state, in run_dir/best

- **By name.** Every leaf is stored under its pytree path (``state/params/actor/...``, ``envs/state/...``),
  so adding, removing or reordering a field can never shift values into the wrong place. The rule on
  restore: the checkpoint and the state must have the same fields, shapes and dtypes; otherwise one
  `CheckpointMismatch` names every field that is missing, added or reshaped (a checkpoint written by another
  version of the code or another config; resume with that version, or start a new run directory).
  Zero-size leaves are not stored (orbax cannot store them; MJX data has some) and come from the fresh state.
- **Old names.** Checkpoints written before 2026-12-03 saved the trainer's pair ``(state, envs)`` by tuple
  position, as ``0/...`` and ``1/...``; they are read under `OLD_NAMES`' rule (``0/x`` is ``state/x``, ``1/x``
  is ``envs/x``) wherever the current name is absent, so runs from then resume unchanged.
- **Verified.** Each checkpoint also holds a fingerprint of every leaf (a position-weighted wrap-around sum
  of its bits, computed on the devices, so sharded and multi-process arrays need no gathering). A
  checkpoint that cannot be read, or whose restored values do not match their fingerprints (a truncated or
  overwritten file), is moved to ``corrupt/<iteration>`` beside the checkpoints with a warning, and the
  previous one is restored instead; `CheckpointCorrupt` when none is left.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from rewardax import distributed
from rewardax.trees import flatten, nest



OLD_NAMES = {"state/": "0/", "envs/": "1/"}
"""Where a leaf of the trainer's checkpoint was stored before it was saved by name: current prefix -> old prefix."""


def _old_name(name: str) -> str | None:
    return next((old + name[len(new):] for new, old in OLD_NAMES.items() if name.startswith(new)), None)


def _current_names(names) -> dict[str, str]:
    """{current name: stored name} of a checkpoint's stored leaf names (old ones renamed by `OLD_NAMES`)."""
    renamed = {old: new for new, old in OLD_NAMES.items()}
    old_layout = all(any(n.startswith(o) for o in renamed) for n in names)
    if not old_layout:
        return {n: n for n in names}
    return {next(new + n[len(o):] for o, new in renamed.items() if n.startswith(o)): n for n in names}


class CheckpointMismatch(ValueError):
    """A checkpoint's fields differ from the state being restored."""


class CheckpointCorrupt(RuntimeError):
    """No readable, intact checkpoint is left."""


def named_leaves(tree) -> dict[str, Any]:
    """``{"a/b/0": leaf}``: the leaves of ``tree`` under their pytree paths."""
    return {_path_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _path_name(path) -> str:
    parts = []
    for entry in path:
        for attribute in ("name", "key", "idx"):  # GetAttrKey, DictKey, SequenceKey / FlattenedIndexKey
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _stored(tree) -> dict[str, Any]:
    """The leaves that are written: non-empty, typed PRNG keys as their raw uint32 data."""
    return {name: jax.random.key_data(leaf) if _is_key(leaf) else leaf
            for name, leaf in named_leaves(tree).items() if np.size(leaf)}


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


@jax.jit
def _fingerprints(leaves: dict[str, jax.Array]) -> dict[str, jax.Array]:
    def one(x):
        x = x.reshape(-1)
        if x.dtype == jnp.bool_:
            bits = x.astype(jnp.uint32)
        else:  # the raw bits, widened to 32
            bits = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize])
            bits = bits.astype(jnp.uint32)
        weights = jnp.arange(x.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
        return jnp.sum(bits * weights, dtype=jnp.uint32)

    return {name: one(x) for name, x in leaves.items()}


def fingerprints(tree) -> dict[str, int]:
    """Every stored leaf's fingerprint, on the host (the same on every process)."""
    def host(value):
        return value if value.is_fully_addressable else multihost_utils.process_allgather(value, tiled=True)

    return {name: int(np.asarray(host(value)).reshape(-1)[0]) for name, value in _fingerprints(_stored(tree)).items()}


class Checkpoints:
    """The run's checkpoints directory: orbax's `CheckpointManager` with named, fingerprinted state."""

    def __init__(self, directory: pathlib.Path, keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        self.keep = keep
        self.manager = None
        self._open()

    def _open(self):
        if self.manager is not None:
            self.manager.close()
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=False),
            item_handlers={"state": ocp.StandardCheckpointHandler(), "fingerprints": ocp.JsonCheckpointHandler()})

    def steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, tree) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        prints = fingerprints(tree)
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(nest(_stored(tree))),
                                                        fingerprints=ocp.args.JsonSave(prints)))

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def saving(self) -> bool:
        return self.manager.is_saving_in_progress()

    def restore(self, step: int, template):
        """``template`` (a fresh state: structure, shapes, dtypes, shardings) filled from checkpoint ``step``."""
        where = self._check_fields(step, template)  # {name in the template: name in the checkpoint}
        stored = _stored(template)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(nest({where[n]: leaf for n, leaf in stored.items()})),
            fingerprints=ocp.args.JsonRestore()))
        values = flatten(restored["state"])
        state = unflatten_like(template, {n: values[where[n]] for n in stored})
        saved_prints = restored["fingerprints"]
        if saved_prints is not None:
            bad = sorted(name for name, value in fingerprints(state).items()
                         if saved_prints.get(where[name]) != value)
            if bad:
                raise _Damaged(f"{len(bad)} field(s) do not match their fingerprints: {_names(bad)}")
        return state

    def read(self, step: int | None = None) -> dict[str, np.ndarray]:
        """Checkpoint ``step``'s (default: the latest) stored leaves by name, as host arrays, with no template
        (for looking into a run; `restore` is what resumes it). Old names are read as today's (`OLD_NAMES`)."""
        step = self.latest() if step is None else step
        here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # wherever (and however) it was written
        saved = self._saved_leaves(step)
        target = nest({name: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here) for name, m in saved.items()})
        restored = flatten(self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))["state"])
        return {name: np.asarray(restored[old]) for name, old in _current_names(saved).items()}

    def _saved_leaves(self, step: int) -> dict[str, Any]:
        """Checkpoint ``step``'s array metadata (shape, dtype) by name."""
        metadata = self.manager.item_metadata(step)["state"]
        if metadata is None:
            raise _Damaged("it has no state")
        return flatten(dict(getattr(metadata, "tree", metadata)))

    def _check_fields(self, step: int, template):
        try:
            leaves = self._saved_leaves(step)
        except _Damaged:
            raise
        except Exception as error:  # noqa: BLE001 - unreadable metadata is a damaged checkpoint
            raise _Damaged(f"its metadata cannot be read ({type(error).__name__}: {str(error)[:200]}…)") from error
        saved = {name: (tuple(m.shape), np.dtype(m.dtype)) for name, m in leaves.items()}
        wanted = {name: (tuple(np.shape(x)), np.dtype(x.dtype)) for name, x in _stored(template).items()}
        where = {n: n if n in saved or _old_name(n) not in saved else _old_name(n) for n in wanted}
        back = {old: name for name, old in where.items()}
        saved = {back.get(name, name): shape_dtype for name, shape_dtype in saved.items()}
        missing = sorted(set(wanted) - set(saved))
        added = sorted(set(saved) - set(wanted))
        changed = sorted(n for n in set(saved) & set(wanted) if saved[n] != wanted[n])
        if missing or added or changed:
            parts = [f"{label}: {_names(names)}" for label, names in
                     (("missing from the checkpoint", missing), ("in the checkpoint but not in the state", added),
                      ("with another shape or dtype",
                       [f"{n} {saved[n][0]}/{saved[n][1]} ≠ {wanted[n][0]}/{wanted[n][1]}" for n in changed]))
                     if names]
            raise CheckpointMismatch(
                f"checkpoint {step} in {self.directory} does not fit this run's state ({'; '.join(parts)}). It was "
                f"written by another version of rewardax or another config: resume with the version named in "
                f"config.json (git_revision), or start a new --run-dir.")
        return where

    def restore_latest(self, template) -> tuple[int, Any] | None:
        """(step, state) from the newest intact checkpoint, or None if there is none. Damaged ones are moved
        aside with a warning (a field mismatch is not damage: it raises `CheckpointMismatch`)."""
        while (step := self.latest()) is not None:
            try:
                return step, self.restore(step, template)
            except CheckpointMismatch:
                raise
            except _Damaged as error:
                why = str(error)
            except Exception as error:  # noqa: BLE001 - orbax/tensorstore read errors: a damaged checkpoint
                why = f"it cannot be read ({type(error).__name__}: {str(error)[:200]}…)"
            self._set_aside(step, why)
        if (self.directory.parent / "corrupt").exists():
            self.close()
            raise CheckpointCorrupt(f"every checkpoint in {self.directory} is damaged (moved to "
                                    f"{self.directory.parent / 'corrupt'}); start a new --run-dir")
        return None

    def _set_aside(self, step: int, why: str) -> None:
        aside = self.directory.parent / "corrupt" / str(step)
        previous = [s for s in self.steps() if s < step]
        then = f"resuming from checkpoint {previous[-1]} instead" if previous else "no earlier checkpoint is left"
        distributed.barrier(f"checkpoint {step} checked")
        if jax.process_index() == 0:
            aside.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(aside, ignore_errors=True)
            shutil.move(str(self.directory / str(step)), str(aside))
            print(f"warning: checkpoint {step} in {self.directory} is damaged: {why}. Moved to {aside}; {then}.",
                  file=sys.stderr, flush=True)
        distributed.barrier(f"checkpoint {step} set aside")
        self._open()

    def close(self) -> None:
        self.manager.close()


class BestPolicy:
    """The run's best evaluation so far: the train state at the evaluation whose oracle success (then dense
    ground truth) beat every earlier one, as one verified checkpoint in ``run_dir/best``, and ``best.json``
    (iteration, success, dense) written once that checkpoint is complete. Every process calls it alike."""

    def __init__(self, run_dir: pathlib.Path):
        self.record_path = pathlib.Path(run_dir) / "best.json"
        self.store = Checkpoints(pathlib.Path(run_dir) / "best", keep=1)
        self.kept = json.loads(self.record_path.read_text()) if self.record_path.exists() else None
        self.score = (self.kept["success"], self.kept["dense"]) if self.kept else (-np.inf, -np.inf)

    def record(self) -> dict | None:
        """``best.json``'s content: the kept evaluation's iteration, success and dense value (None before any)."""
        return self.kept

    def improves(self, metrics: dict) -> bool:
        return self._score(metrics) > self.score

    def save(self, iteration: int, state, metrics: dict, main: bool) -> None:
        self.store.save(iteration, {"state": state})
        self.store.wait()
        self.score = self._score(metrics)
        self.kept = {"iteration": iteration, "success": self.score[0], "dense": self.score[1]}
        if main:
            self.record_path.write_text(json.dumps(self.kept))

    def close(self) -> None:
        self.store.close()

    @staticmethod
    def _score(metrics: dict) -> tuple[float, float]:
        dense = metrics.get("eval/dense", -np.inf)
        return metrics["eval/success"], dense if np.isfinite(dense) else -np.inf


class _Damaged(Exception):
    """A checkpoint that exists but cannot be trusted."""


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def unflatten_like(template, values: dict[str, Any]):
    """``template`` with its stored leaves replaced by ``values`` (typed keys re-wrapped)."""
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for path, leaf in leaves_with_paths:
        name = _path_name(path)
        if name not in values:
            leaves.append(leaf)
        elif _is_key(leaf):
            leaves.append(jax.random.wrap_key_data(values[name], impl=jax.random.key_impl(leaf)))
        else:
            leaves.append(values[name])
    return jax.tree_util.tree_unflatten(treedef, leaves)
