"""A reward model learning inside the data-parallel step: what it is trained on, how, and how it is tested.

Per iteration (`rewardax.rl.step`): each device pairs its envs' frames at random, asks the simulated teacher
(`rewardax.rewards.teacher`) about ``labels_per_iteration / devices`` of the pairs (`ask_teacher`; chosen
uniformly or by the model's uncertainty) until the run's ``label_budget`` is spent, keeps the answers in its ring
(`rewardax.rl.label_buffer`), and after the PPO update takes ``updates`` optimiser steps on its labelled frames
(`update_reward_model`, RewardDance's recipes below); then the model is tested on fixed frames along the env's
state path (`held_out_agreement`).

- A pairwise model (one that compares a frame with a reference image) learns from preferences "a is better than
  b" by next-token cross-entropy on its answer to "is image 2 (a) better than image 1 (b)?".
- A pointwise model learns from preferences by Bradley–Terry on its log-odds of "yes", r(a) − r(b), plus
  ``ce_weight`` times the cross-entropy of its yes/no answer about each frame (the teacher's answers); from
  yes/no examples (one frame each) by that cross-entropy alone.

Each device holds its own slice of the labelled frames (`rewardax.rl.label_buffer`). The loss is the weighted
mean over every device's examples: each device differentiates its weighted sum, and gradients and weights are
summed over devices (`sum_gradients`) before one optax update, so every device takes the same step — and a buffer
split over 4 devices gives the step of the same examples on one device, to float rounding. With the weights split
over a model axis, each device updates its shard (Adam is elementwise) with its shard's gradient.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from rewardax.mesh import ENVS, MODEL
from rewardax.models.sharding import specs
from rewardax.rewards.losses import answer_cross_entropy, bradley_terry
from rewardax.rewards.teacher import Teacher, choose
from rewardax.rl.label_buffer import LabelBuffer
from rewardax.stats import device_sum, roc_auc


SELECTIONS = ("uniform", "entropy")


@dataclasses.dataclass(frozen=True)
class RewardLearning:
    """How the reward model trains inside the step: what the teacher is asked, how often, and how the model
    learns from its answers (``updates = 0``: labels are collected but the model stays as it is)."""

    updates: int = 4
    """Reward-model updates per iteration, after the PPO update."""
    batch: int = 32
    """Examples per device in each update, drawn from its labelled frames (0: all of them, every update)."""
    ce_weight: float = 0.1
    """Pointwise model: weight of the yes/no cross-entropy beside the Bradley–Terry loss (RewardDance: small)."""
    learning_rate: float = 3e-4
    """Adam's step size for the reward model's trainable weights."""
    lora_rank: int = 0
    """0: train every weight (a model that starts from random weights needs it); else the rank of LoRA adapters
    on the decoder's ``lora_targets`` projections, the base frozen."""
    lora_targets: tuple[str, ...] = ("q", "k", "v", "o")
    """The decoder's projections that get adapters (with ``lora_rank``)."""
    lora_vision_targets: tuple[str, ...] = ()
    """The vision tower's projections that get adapters too, e.g. q k v proj (with ``lora_rank``)."""
    labels_per_iteration: int = 64
    """Queries to the teacher per iteration, over all devices (a multiple of the device count)."""
    label_budget: int = 10_000
    """Queries in the whole run; once spent, the model trains on the frames it holds."""
    selection: str = "uniform"
    """Which candidate pairs are asked about: uniform, or entropy (the model's least certain, PEBBLE's rule)."""
    capacity: int = 2048
    """Labelled examples kept, over all devices (a multiple of the device count); the oldest are overwritten."""
    held_out: int = 64
    """Frames along the env's state path (`TaskEnv.state_path`) the model is tested on after every update."""
    teacher: Teacher = Teacher()
    """The simulated labeller (`rewardax.rewards.teacher`): rational, or with B-Pref's mistakes and noise."""
    labels_from: str = ""
    """A labelled dataset (`rewardax.labelled_frames`, made by ``python -m rewardax.eval.dataset``) whose frames,
    paired and answered by the teacher, fill the rings before the first iteration (they count as labels spent)."""

    def __post_init__(self):
        problems = [f"{name} must be a non-negative integer, got {getattr(self, name)!r}"
                    for name in ("updates", "batch", "lora_rank", "held_out") if not _is_int(getattr(self, name), 0)]
        problems += [f"{name} must be a positive integer, got {getattr(self, name)!r}"
                     for name in ("labels_per_iteration", "label_budget", "capacity")
                     if not _is_int(getattr(self, name), 1)]
        if not self.ce_weight >= 0:
            problems.append(f"ce_weight must be at least 0, got {self.ce_weight!r}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be positive, got {self.learning_rate!r}")
        if self.selection not in SELECTIONS:
            problems.append(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if _is_int(self.labels_per_iteration, 1) and _is_int(self.capacity, 1) \
                and self.labels_per_iteration > self.capacity:
            problems.append(f"labels_per_iteration ({self.labels_per_iteration}) must not exceed capacity "
                            f"({self.capacity}): raise the capacity")
        if problems:
            raise ValueError("invalid reward learning: " + "; ".join(problems))

    def per_device(self, devices: int) -> tuple[int, int]:
        """``(labels per iteration, capacity)`` of each device; one clear error when they do not split evenly."""
        for name in ("labels_per_iteration", "capacity"):
            value = getattr(self, name)
            if value % devices:
                raise ValueError(f"reward learning: {name}={value} must be a multiple of the {devices} devices, e.g. "
                                 f"{-(-value // devices) * devices}")
        return self.labels_per_iteration // devices, self.capacity // devices

    def make_trainable(self, reward):
        """``reward`` made trainable by Adam as this config says (full fine-tuning or LoRA adapters)."""
        if not hasattr(reward, "trainable"):
            raise ValueError(f"{type(reward).__name__} cannot be trained in the step: train the yes-token reward "
                             f"(reward:yes-token), or leave --train-reward off")
        return reward.trainable(optax.adam(self.learning_rate), lora_rank=self.lora_rank,
                                lora_targets=self.lora_targets, lora_vision_targets=self.lora_vision_targets)


def _is_int(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


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


def sum_gradients(grads, axis_name):
    """Every device's gradient of the reward model, summed over all devices (``axis_name``: `rewardax.mesh.AXIS`).

    A weight split over the model axis (`rewardax.models.sharding`) is gathered at use, and the transpose of that
    gather is a reduce-scatter: its gradient arrives already summed over its model group, as this device's
    shard, so it is summed over ``envs`` only; every other leaf over all devices. A plain ``psum``, not the
    device-ordered `device_sum`, which materialises one copy of the gradient per device (a 1 B model's is
    gigabytes): the update is the same to float rounding on any mesh, not bit for bit."""
    if axis_name is None:
        return grads

    def total(spec, leaf):
        axes = ENVS if MODEL in spec else axis_name
        return jax.tree.map(lambda g: jax.lax.psum(g, axes), leaf)

    return jax.tree.map(total, specs(grads), grads, is_leaf=lambda x: isinstance(x, P))


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
        value, total = device_sum((value, total), axis_name)
        grads = sum_gradients(grads, axis_name)
        scale = 1.0 / jnp.maximum(total, 1e-12)
        updates, new_opt_state = frozen.optimizer.update(jax.tree.map(lambda g: g * scale, grads), opt_state, params)
        learned = total > 0  # an update with no labelled example anywhere changes nothing, optimiser state included
        params = jax.tree.map(lambda p, q: jnp.where(learned, p, q), optax.apply_updates(params, updates), params)
        opt_state = jax.tree.map(lambda n, o: jnp.where(learned, n, o), new_opt_state, opt_state)
        return (params, opt_state), value * scale

    # Every device draws with the same key from its own slice (the buffers differ, the draws are alike).
    (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), jax.random.split(key, config.updates))
    return params, opt_state, {"reward_model/loss": losses.mean()}


def preference(reward, a: jax.Array, b: jax.Array) -> jax.Array:
    """The model's probability that frame ``a`` is better than frame ``b`` ``[n]``: a pairwise model's P(yes) to
    "is image 2 (a) better than image 1 (b)?" (over yes and no), a pointwise one's σ(r_a − r_b), r the log-odds of
    "yes" (the Bradley–Terry probability it is trained on)."""
    if reward.reference is not None:
        log_yes, log_no = reward.log_probs(a, first=b)
        return jax.nn.sigmoid(log_yes - log_no)
    (yes_a, no_a), (yes_b, no_b) = reward.log_probs(a), reward.log_probs(b)
    return jax.nn.sigmoid((yes_a - no_a) - (yes_b - no_b))


def ask_teacher(reward, frames: jax.Array, success: jax.Array, dense: jax.Array, valid: jax.Array, key: jax.Array,
                count: int, config: RewardLearning):
    """One device's queries of an iteration: its ``B`` candidate frames (one per env) are paired at random into
    ``B // 2`` pairs, ``count`` of them are chosen (``config.selection``) and the teacher answers them.

    Returns ``(examples, agreement)``: ``examples = (frames [count, 2, H, W, 3], label, answers, weight)`` for
    `LabelBuffer.add` (label: "the first is better"; weight 0 for a query the teacher skipped or a frame of a
    broken simulation), and ``agreement = (correct, counted)``: how many of all the candidate pairs whose dense
    ground truths differ the model orders as the rational teacher would, a measure on the iteration's own frames.
    """
    pairs = frames.shape[0] // 2
    pair_key, choose_key, prefer_key, yes_a_key, yes_b_key = jax.random.split(key, 5)
    order = jax.random.permutation(pair_key, frames.shape[0])
    a, b = order[:pairs], order[pairs:2 * pairs]
    p = preference(reward, frames[a], frames[b])
    picked = choose(choose_key, count, pairs, p if config.selection == "entropy" else None)
    teacher = config.teacher
    label, weight = teacher.prefer(prefer_key, dense[a], dense[b])
    answers = jnp.stack([teacher.yes_no(yes_a_key, success[a])[0], teacher.yes_no(yes_b_key, success[b])[0]], 1)
    both_valid = (valid[a] & valid[b]).astype(jnp.float32)
    examples = (jnp.stack([frames[a], frames[b]], axis=1)[picked], label[picked], answers[picked],
                (weight * both_valid)[picked])
    truth = jnp.sign(dense[a] - dense[b])
    counted = both_valid * (truth != 0)
    correct = counted * (jnp.where(p > 0.5, 1.0, -1.0) == truth)
    return examples, (correct.sum(), counted.sum())


def held_out_agreement(reward, frames: jax.Array, success: jax.Array, dense: jax.Array) -> dict[str, jax.Array]:
    """The model's rewards on a fixed set of frames against their ground truth: ``reward_model/held_out_accuracy``,
    the share of frame pairs with different dense values that the rewards order the same way (ties half),
    ``reward_model/held_out_auc``, ROC-AUC of the reward as a detector of oracle success (NaN without both), and
    ``reward_model/held_out_variance``, the rewards' variance over these frames: the scale of a model that
    changes, against which the hacking monitor measures the variance of the rollouts' rewards."""
    value = reward(frames, None)[0].astype(jnp.float32)
    truth = jnp.sign(dense[:, None] - dense[None, :])
    said = jnp.sign(value[:, None] - value[None, :])
    counted = truth != 0
    agree = jnp.where(said == truth, 1.0, jnp.where(said == 0, 0.5, 0.0))
    accuracy = (agree * counted).sum() / jnp.maximum(counted.sum(), 1)
    return {"reward_model/held_out_accuracy": accuracy, "reward_model/held_out_auc": roc_auc(value, success > 0.5),
            "reward_model/held_out_variance": value.var()}
