"""A yes-token reward model that trains: its weights split into the train state and merged back (the prefix cache
rebuilt from them), the whole-prompt pairs the pairwise loss reads, and a tiny random InternVL that learns, from
Bradley-Terry labels alone, to prefer what it first ranked lower."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rewardax.models import load_vlm, write_random_vlm
from rewardax.rewards import YesTokenReward
from rewardax.rewards.losses import answer_cross_entropy, bradley_terry
from rewardax.stats import roc_auc

pytestmark = pytest.mark.timeout(300)

GOAL = "a bright picture"


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return load_vlm(write_random_vlm(tmp_path_factory.mktemp("vlm") / "tiny"))


def noise(n, low, high, seed, size=16):
    return jnp.asarray(np.random.default_rng(seed).integers(low, high, (n, size, size, 3), dtype=np.uint8))


def test_split_and_merge_rebuild_the_prefix_cache_from_the_weights(vlm):
    model, processor = vlm
    reference = np.asarray(noise(1, 0, 256, 0)[0])
    reward = YesTokenReward.create(model, processor, GOAL, reference=reference).trainable(optax.adam(1e-3))
    frozen, params = reward.split()
    assert frozen.params is None and frozen.prefix is None and params is reward.params
    frames = noise(3, 0, 256, 1)
    np.testing.assert_allclose(jax.jit(lambda p: frozen.merge(p)(frames)[0])(params), reward(frames)[0], rtol=1e-5)
    # The whole prompt with the reference as image 1 is what the cached reward computes.
    first = jnp.broadcast_to(jnp.asarray(reference), (3, *reference.shape))
    np.testing.assert_allclose(reward.pair_logits(first, frames), reward.logits(frames), rtol=1e-4, atol=1e-4)
    assert YesTokenReward.create(model, processor, GOAL).split()[1] is None  # frozen unless made trainable


def test_fresh_lora_adapters_change_no_score_and_only_they_are_trained(vlm):
    model, processor = vlm
    reward = YesTokenReward.create(model, processor, GOAL)
    adapted = reward.trainable(optax.adam(1e-3), lora_rank=2, lora_vision_targets=("q", "k", "v", "proj"))
    frames = noise(3, 0, 256, 1)
    np.testing.assert_allclose(adapted(frames)[0], reward(frames)[0], rtol=1e-6)
    frozen, adapters = adapted.split()
    depth = model.spec.text.depth, model.spec.vision.depth
    assert len(jax.tree.leaves(adapters)) == 2 * (4 + 4)  # A and B on four projections in each tower
    assert {x.shape[0] for x in jax.tree.leaves(adapters)} == set(depth)  # stacked like the layers
    assert not jax.tree.leaves(nnx.split_state(frozen.params, nnx.LoRAParam, ...)[0])  # the base holds none
    with pytest.raises(ValueError, match="no Dense layer named wq"):
        reward.trainable(optax.adam(1e-3), lora_rank=2, lora_targets=("wq",))


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_a_random_vlm_learns_a_preference_it_did_not_have(vlm, lora_rank):
    """Full fine-tuning, and LoRA adapters on the decoder's attention (the base untouched)."""
    model, processor = vlm
    reward = YesTokenReward.create(model, processor, GOAL)
    frozen, params = reward.trainable(optax.adam(3e-3 if not lora_rank else 3e-2), lora_rank=lora_rank).split()
    optimizer = frozen.optimizer

    def log_odds(params, frames):
        log_yes, log_no = frozen.merge(params).log_probs(frames)
        return log_yes - log_no

    def loss(params, a, b, label):
        weight = jnp.ones_like(label)
        log_yes, log_no = frozen.merge(params).log_probs(a)
        return (bradley_terry(log_odds(params, a), log_odds(params, b), label, weight)
                + 0.1 * answer_cross_entropy(log_yes, log_no, label, weight))

    @jax.jit
    def update(params, opt_state, a, b, label):
        value, grads = jax.value_and_grad(loss)(params, a, b, label)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    bright, dark = noise(64, 150, 256, 2), noise(64, 0, 106, 3)
    test = jnp.concatenate([noise(16, 150, 256, 4), noise(16, 0, 106, 5)])
    is_bright = np.arange(32) < 16
    # Teach the opposite of what the random model already leans to, so that it must reverse its ranking.
    target = float(roc_auc(jax.jit(log_odds)(params, test), is_bright)) < 0.5  # True: teach "bright is better"
    good, bad = (bright, dark) if target else (dark, bright)
    is_good = is_bright if target else ~is_bright
    before = float(roc_auc(jax.jit(log_odds)(params, test), is_good))
    opt_state, losses = optimizer.init(params), []
    for step in range(40):
        i = (np.arange(8) + 8 * step) % 64
        swap = jnp.asarray(np.arange(8) % 2 == 0)  # half the pairs ask "is the bad one better?" (label 0)
        a = jnp.where(swap[:, None, None, None], bad[i], good[i])
        b = jnp.where(swap[:, None, None, None], good[i], bad[i])
        params, opt_state, value = update(params, opt_state, a, b, (~swap).astype(jnp.float32))
        losses.append(float(value))
    after = float(roc_auc(jax.jit(log_odds)(params, test), is_good))
    print(f"held-out ROC-AUC: {before:.2f} before, {after:.2f} after 40 updates; loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}")
    assert before < 0.5 and after >= 0.95 and np.mean(losses[-5:]) < np.mean(losses[:5]), (before, after)
    if lora_rank:
        assert frozen.params is not None and all(x.shape[-1] == lora_rank or x.shape[-2] == lora_rank
                                                 for x in jax.tree.leaves(params))


def test_reward_model_updates_on_labels_split_over_four_devices_equal_one_device(vlm):
    """The step's reward-model update (`rewardax.rl.reward_update`): the same examples held by one device or split
    over four give the same weights (up to the order of float sums), and the loss falls."""
    from jax.sharding import PartitionSpec as P

    from rewardax.rl import step as rl_step
    from rewardax.rl.label_buffer import LabelBuffer
    from rewardax.rl.reward_update import RewardLearning, update_reward_model

    model, processor = vlm
    # Plain SGD: the update is linear in the gradient, so only the order of float sums differs (Adam's 1/√v
    # would turn a ~0 gradient's rounding into a step of ~lr).
    frozen, params = YesTokenReward.create(model, processor, GOAL).trainable(optax.sgd(0.3)).split()
    a, b = noise(8, 150, 256, 7), noise(8, 0, 106, 8)
    pairs, label = jnp.stack([a, b], axis=1), jnp.ones(8)
    answers = jnp.stack([jnp.ones(8), jnp.zeros(8)], axis=1)

    def buffers(devices):
        per = 8 // devices
        rings = [LabelBuffer.create(per, 2, (16, 16, 3)).add(pairs[i * per:(i + 1) * per], label[i * per:(i + 1) * per],
                                                            answers[i * per:(i + 1) * per], jnp.ones(per))
                 for i in range(devices)]
        return jax.tree.map(lambda *x: jnp.concatenate(x), *rings)

    config = RewardLearning(updates=3, batch=0, ce_weight=0.1)  # every example, every update

    def run(mesh):
        update = jax.shard_map(
            lambda p, o, buffer, key: update_reward_model(frozen, p, o, buffer, key, config, rl_step.AXIS), mesh=mesh,
            in_specs=(P(), P(), P(rl_step.AXIS), P()), out_specs=(P(), P(), P()), check_vma=False)
        return jax.jit(update)(params, frozen.optimizer.init(params), buffers(mesh.devices.size), jax.random.key(0))

    one, _, one_metrics = run(rl_step.make_mesh(devices=jax.devices()[:1]))
    four, _, four_metrics = run(rl_step.make_mesh())
    for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(four)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one_metrics["reward_model/loss"], four_metrics["reward_model/loss"], rtol=1e-4)
    before = update_reward_model(frozen, params, frozen.optimizer.init(params), buffers(1), jax.random.key(0),
                                 RewardLearning(updates=1, batch=0), None)[2]["reward_model/loss"]
    after = update_reward_model(frozen, one, frozen.optimizer.init(one), buffers(1), jax.random.key(0),
                                RewardLearning(updates=1, batch=0), None)[2]["reward_model/loss"]
    assert float(after) < float(before)
