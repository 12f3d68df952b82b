"""Updates of a trainable reward model on labelled frames, inside the data-parallel step (RewardDance's recipes).

- A pairwise model (one that compares a frame with a reference image) learns from preferences "a is better than
  b" by next-token cross-entropy on its answer to "is image 2 (a) better than image 1 (b)?".
- A pointwise model learns from preferences by Bradley–Terry on its log-odds of "yes", r(a) − r(b), plus
  ``ce_weight`` times the cross-entropy of its yes/no answer about each frame (the teacher's answers); from
  yes/no examples (one frame each) by that cross-entropy alone.

Each device holds its own slice of the labelled frames (`rewardax.rl.label_buffer`). The loss is the weighted
mean over every device's examples: each device differentiates its weighted sum, and gradients and weights are
summed over devices in device order (`rewardax.stats.device_sum`) before one optax update, so every device takes
the same step — and a buffer split over 4 devices gives the step of the same examples on one device.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rewardax.rewards.losses import answer_cross_entropy, bradley_terry
from rewardax.rl.label_buffer import LabelBuffer
from rewardax.stats import device_sum


@dataclasses.dataclass(frozen=True)
class RewardLearning:
    """How the reward model trains inside the step (``updates = 0``: it stays frozen)."""

    updates: int = 0
    """Reward-model updates per iteration, after the PPO update."""
    batch: int = 0
    """Examples per device in each update, drawn from its labelled frames (0: all of them, every update)."""
    ce_weight: float = 0.1
    """Pointwise model: weight of the yes/no cross-entropy beside the Bradley–Terry loss (RewardDance: small)."""

    def __post_init__(self):
        problems = [f"{name} must be a non-negative integer, got {getattr(self, name)!r}"
                    for name in ("updates", "batch") if not isinstance(getattr(self, name), int)
                    or getattr(self, name) < 0]
        if not self.ce_weight >= 0:
            problems.append(f"ce_weight must be at least 0, got {self.ce_weight!r}")
        if problems:
            raise ValueError("invalid reward learning: " + "; ".join(problems))


def labelled_loss_sum(reward, examples: LabelBuffer, ce_weight: float) -> tuple[jax.Array, jax.Array]:
    """``(Σ weight · loss, Σ weight)`` of ``reward`` (a model with its weights) on ``examples``."""
    weight = examples.weight
    total = weight.sum()
    if examples.frames.shape[1] == 1:  # yes/no
        log_yes, log_no = reward.log_probs(examples.frames[:, 0])
        return answer_cross_entropy(log_yes, log_no, examples.label, weight) * total, total
    a, b = examples.frames[:, 0], examples.frames[:, 1]
    if reward.reference is not None:  # pairwise: "is image 2 (a) better than image 1 (b)?"
        log_yes, log_no = reward.log_probs(a, first=b)
        return answer_cross_entropy(log_yes, log_no, examples.label, weight) * total, total
    (yes_a, no_a), (yes_b, no_b) = reward.log_probs(a), reward.log_probs(b)
    loss = bradley_terry(yes_a - no_a, yes_b - no_b, examples.label, weight)
    if ce_weight:
        both = jnp.concatenate([weight, weight])
        loss += ce_weight * answer_cross_entropy(jnp.concatenate([yes_a, yes_b]), jnp.concatenate([no_a, no_b]),
                                                 examples.answers.T.reshape(-1), both)
    return loss * total, total


def update_reward_model(frozen, params, opt_state, buffer: LabelBuffer, key: jax.Array, config: RewardLearning,
                        axis_name: str | None = None):
    """``config.updates`` optax steps of the reward model (``frozen.merge(params)``) on the labelled frames:
    ``(params, opt_state, metrics)`` with the mean loss over the updates (``reward_model/loss``)."""

    def loss_sum(params, examples):
        return labelled_loss_sum(frozen.merge(params), examples, config.ce_weight)

    def one(carry, key):
        params, opt_state = carry
        examples = buffer.sample(key, config.batch) if config.batch else buffer
        (value, total), grads = jax.value_and_grad(loss_sum, has_aux=True)(params, examples)
        value, total, grads = device_sum((value, total, grads), axis_name)
        scale = 1.0 / jnp.maximum(total, 1e-12)
        updates, new_opt_state = frozen.optimizer.update(jax.tree.map(lambda g: g * scale, grads), opt_state, params)
        learned = total > 0  # an update with no labelled example anywhere changes nothing, optimiser state included
        params = jax.tree.map(lambda p, q: jnp.where(learned, p, q), optax.apply_updates(params, updates), params)
        opt_state = jax.tree.map(lambda n, o: jnp.where(learned, n, o), new_opt_state, opt_state)
        return (params, opt_state), value * scale

    # Every device draws with the same key from its own slice (the buffers differ, the draws are alike).
    (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), jax.random.split(key, config.updates))
    return params, opt_state, {"reward_model/loss": losses.mean()}
