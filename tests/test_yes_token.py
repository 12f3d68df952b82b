"""The yes-token reward: the score arithmetic on hand-computed values, and the prefix-cached reward equal to the
model run on the whole prompt, pointwise and pairwise, for frames of any size."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rewardax.models import load_vlm, write_random_vlm
from rewardax.rewards import YesTokenReward
from rewardax.rewards.yes_token import PAIRWISE, POINTWISE, answer_score

pytestmark = pytest.mark.timeout(300)

GOAL = "a humanoid robot kneeling"


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return load_vlm(write_random_vlm(tmp_path_factory.mktemp("vlm") / "tiny"))


def frames(n, size, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def test_scores_from_hand_computed_probabilities():
    # vocabulary of 4: ids 0, 1 spell "yes", 2 spells "no"; probabilities 0.1, 0.2, 0.3, 0.4
    logits = jnp.log(jnp.asarray([[0.1, 0.2, 0.3, 0.4]])) + 7.0  # softmax is shift-invariant
    p_yes, _ = answer_score(logits, (0, 1), (2,), "p_yes")
    renormalised, _ = answer_score(logits, (0, 1), (2,), "p_yes_given_yes_or_no")
    log_odds, _ = answer_score(logits, (0, 1), (2,), "log_odds")
    np.testing.assert_allclose(p_yes, [0.3], rtol=1e-6)
    np.testing.assert_allclose(renormalised, [0.5], rtol=1e-6)
    np.testing.assert_allclose(log_odds, [0.0], atol=1e-6)
    np.testing.assert_allclose(answer_score(logits, (1,), (3,), "log_odds")[0], [math.log(0.5)], rtol=1e-6)


def full_prompt_logits(model, processor, question, images):
    """The model run on the whole prompt (no cache), as a transformers user would: [B, vocab]."""
    prompts = [processor.prompt(question.format(goal=GOAL), len(row)) for row in images]
    ids, mask = processor.tokenize(prompts)
    pixels = processor.preprocess(jnp.concatenate([jnp.stack(row) for row in images]))
    graphdef, params = nnx.split(model)
    return jax.jit(lambda p, *inputs: nnx.merge(graphdef, p).last_token_logits(*inputs))(params, pixels, ids, mask)


@pytest.mark.parametrize("size", [56, 40])
def test_pointwise_with_the_cached_prefix_equals_the_whole_prompt(vlm, size):
    model, processor = vlm
    reward = YesTokenReward.create(model, processor, GOAL)
    batch = frames(3, size)
    cached = jax.jit(lambda r, f: r.logits(f))(reward, batch)
    np.testing.assert_allclose(cached, full_prompt_logits(model, processor, POINTWISE, [[f] for f in batch]),
                               rtol=1e-5, atol=1e-5)
    value, metrics = jax.jit(lambda r, f: r(f))(reward, batch)
    assert value.shape == (3,) and bool(jnp.all((value > 0) & (value < 1)))
    np.testing.assert_allclose(value, metrics["yes_token/p_yes"])


def test_pairwise_encodes_the_reference_once_and_scores_each_frame_after_it(vlm):
    model, processor = vlm
    reference = frames(1, 56, seed=1)[0]
    reward = YesTokenReward.create(model, processor, GOAL, reference=reference, score="log_odds")
    assert reward.prefix.length > processor.image_seq_length  # the reference image is in the cached prefix
    batch = frames(2, 56, seed=2)
    cached = jax.jit(lambda r, f: r.logits(f))(reward, batch)
    expected = full_prompt_logits(model, processor, PAIRWISE, [[reference, f] for f in batch])
    np.testing.assert_allclose(cached, expected, rtol=1e-5, atol=1e-5)
    # the reference matters: another one gives other scores
    other = YesTokenReward.create(model, processor, GOAL, reference=frames(1, 80, seed=3)[0], score="log_odds")
    score = jax.jit(lambda r, f: r(f)[0])
    assert not np.allclose(score(reward, batch), score(other, batch))


def test_an_adaptive_reference_is_replaced_inside_jit_as_if_built_with_the_new_one(vlm):
    model, processor = vlm
    first, second = frames(1, 56, seed=1)[0], frames(1, 56, seed=4)[0]
    reward = YesTokenReward.create(model, processor, GOAL, reference=first, adaptive=True)
    assert reward.initial_reference() is reward.reference
    assert YesTokenReward.create(model, processor, GOAL, reference=first).initial_reference() is None  # fixed
    batch = frames(2, 56, seed=2)
    swapped = jax.jit(lambda r, image, f: r.with_reference(image)(f)[0])(reward, second, batch)
    built = YesTokenReward.create(model, processor, GOAL, reference=second)
    np.testing.assert_allclose(swapped, jax.jit(lambda r, f: r(f)[0])(built, batch), rtol=1e-5, atol=1e-6)
    assert list(reward.beats_reference(jnp.asarray([0.4, 0.6]))) == [False, True]
    odds = YesTokenReward.create(model, processor, GOAL, reference=first, adaptive=True, score="log_odds")
    assert list(odds.beats_reference(jnp.asarray([-0.1, 0.1]))) == [False, True]
    with pytest.raises(ValueError, match="adaptive reference needs a first reference image"):
        YesTokenReward.create(model, processor, GOAL, adaptive=True)


def test_bad_settings_get_one_clear_error(vlm):
    model, processor = vlm
    with pytest.raises(ValueError, match="score must be one of"):
        YesTokenReward.create(model, processor, GOAL, score="probability")
    with pytest.raises(ValueError, match=r"must contain \{goal\}"):
        YesTokenReward.create(model, processor, GOAL, question="Is this a robot?")
    with pytest.raises(ValueError, match="non-empty sentence"):
        YesTokenReward.create(model, processor, " ")
