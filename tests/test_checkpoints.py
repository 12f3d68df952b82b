"""Checkpoints keep the state by name: a field added, removed or reshaped is named, never shifted."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from rewardax.train.checkpoints import CheckpointMismatch, Checkpoints, fingerprints, named_leaves


@struct.dataclass
class Agent:
    policy: jax.Array
    value: jax.Array


@struct.dataclass
class AgentFieldsSwapped:  # the same fields, declared in another order: positions differ, names do not
    value: jax.Array
    policy: jax.Array


@struct.dataclass
class AgentWithRewardModel:
    policy: jax.Array
    value: jax.Array
    reward_params: jax.Array


def agent(cls=Agent, **extra):
    return cls(policy=jnp.arange(6.0).reshape(2, 3), value=jnp.full((4,), 7, jnp.int32), **extra)


def saved(tmp_path, tree, step=1):
    store = Checkpoints(tmp_path / "checkpoints")
    store.save(step, tree)
    store.wait()
    return store


def test_leaves_are_named_by_their_pytree_paths():
    tree = {"state": agent(), "keys": [jnp.zeros(2, jnp.uint32)], "empty": jnp.zeros((0, 3))}
    assert sorted(named_leaves(tree)) == ["empty", "keys/0", "state/policy", "state/value"]


def test_restore_maps_fields_by_name_not_position(tmp_path):
    store = saved(tmp_path, agent())
    template = AgentFieldsSwapped(value=jnp.zeros(4, jnp.int32), policy=jnp.zeros((2, 3)))
    restored = store.restore(1, template)
    np.testing.assert_array_equal(restored.policy, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(restored.value, np.full(4, 7))


def test_a_field_the_checkpoint_lacks_is_named(tmp_path):
    store = saved(tmp_path, agent())
    template = agent(AgentWithRewardModel, reward_params=jnp.zeros(5))
    with pytest.raises(CheckpointMismatch, match=r"missing from the checkpoint: reward_params\).*git_revision"):
        store.restore(1, template)


def test_a_field_only_the_checkpoint_has_is_named(tmp_path):
    store = saved(tmp_path, agent(AgentWithRewardModel, reward_params=jnp.zeros(5)))
    with pytest.raises(CheckpointMismatch, match=r"in the checkpoint but not in the state: reward_params"):
        store.restore(1, agent())


def test_a_reshaped_field_is_named(tmp_path):
    store = saved(tmp_path, agent())
    template = Agent(policy=jnp.zeros((3, 3)), value=jnp.zeros(4, jnp.int32))
    with pytest.raises(CheckpointMismatch, match=r"with another shape or dtype: policy \(2, 3\)/float32 ≠ \(3, 3\)"):
        store.restore(1, template)


def test_fingerprints_see_a_single_flipped_bit_and_a_swap():
    tree = {"a": jnp.arange(8, dtype=jnp.float32), "b": jnp.array([True, False]), "c": jnp.ones(3, jnp.bfloat16)}
    base = fingerprints(tree)
    flipped = jax.lax.bitcast_convert_type(
        jax.lax.bitcast_convert_type(tree["a"], jnp.uint32).at[5].add(1), jnp.float32)
    assert fingerprints({**tree, "a": flipped})["a"] != base["a"]
    assert fingerprints({**tree, "a": tree["a"][::-1]})["a"] != base["a"]  # same values, other places
    assert fingerprints({**tree, "b": ~tree["b"]})["b"] != base["b"]
    assert fingerprints({**tree, "c": tree["c"] * 2})["c"] != base["c"]
    assert fingerprints(tree) == base


def test_values_that_do_not_match_their_fingerprints_are_set_aside(tmp_path, capsys):
    tree = agent()
    store = saved(tmp_path, tree, step=1)
    store.save(2, tree)
    store.wait()
    record = tmp_path / "checkpoints" / "2" / "fingerprints" / "metadata"
    prints = json.loads(record.read_text())
    record.write_text(json.dumps({**prints, "policy": prints["policy"] ^ 1}))  # as if a value had changed
    step, restored = Checkpoints(tmp_path / "checkpoints").restore_latest(tree)
    assert step == 1 and "checkpoint 2" in capsys.readouterr().err
    np.testing.assert_array_equal(restored.policy, tree.policy)
    with pytest.raises(Exception, match="fingerprints: policy"):
        Checkpoints(tmp_path / "corrupt").restore(2, tree)


def test_the_best_evaluation_is_kept_and_survives_a_restart(tmp_path):
    """Success decides, the dense ground truth breaks a tie, a worse or equal evaluation changes nothing, and a
    resumed run starts from the kept score."""
    from rewardax.train.checkpoints import BestPolicy

    best = BestPolicy(tmp_path)
    assert best.record() is None
    evaluations = [(1, 0.5, 0.7), (2, 0.25, 0.9), (3, 0.75, 0.6), (4, 0.75, 0.5), (5, 0.75, 0.8), (6, 0.75, 0.8)]
    kept = []
    for iteration, success, dense in evaluations:
        metrics = {"eval/success": success, "eval/dense": dense}
        if best.improves(metrics):
            best.save(iteration, {"params": jnp.full((3,), float(iteration))}, metrics, main=True)
            kept.append(iteration)
    best.close()
    assert kept == [1, 3, 5]
    assert json.loads((tmp_path / "best.json").read_text()) == {"iteration": 5, "success": 0.75, "dense": 0.8}
    store = Checkpoints(tmp_path / "best")
    assert store.steps() == [5]
    np.testing.assert_array_equal(store.read()["state/params"], np.full((3,), 5.0))
    store.close()
    again = BestPolicy(tmp_path)
    assert not again.improves({"eval/success": 0.75, "eval/dense": 0.8})
    assert again.improves({"eval/success": 1.0, "eval/dense": float("nan")})
    again.close()
