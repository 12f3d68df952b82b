"""The yes-token reward (VQAScore, Lin et al. 2024; RewardDance's generative reward): the probability that a
vision-language model answers "yes" to a question about the frame.

- Pointwise (VQAScore): ``Does this figure show "{goal}"? Please answer yes or no.`` about the frame.
- Pairwise (RewardDance): a reference image, then the frame: ``Is image 2 better than image 1 at showing
  "{goal}"? Please answer yes or no.``

The question goes through the checkpoint's chat template as one user turn (the images, then the question) with
the assistant's turn opened; the score is read at that last position, from the full-vocabulary softmax: P("yes")
summed over the tokenizer's single-token spellings of yes (``score="p_yes"``, VQAScore's), renormalised over yes
and no (``"p_yes_given_yes_or_no"``), or the log-odds ``log P(yes) − log P(no)`` (``"log_odds"``).

The shared prefix is encoded once. Everything before the frame's image tokens (the chat header, and for pairwise
the whole reference image with its 256 tokens and its text) is the same for every frame of every env: it is run
through the decoder when the reward is built, and its keys and values (`rewardax.models.internvl.KVCache`, batch
1) are attended to by every frame's suffix (the frame's image tokens, the question, the assistant header). Frames
of any size are resized in JAX to the model's input (one tile, squashed to the square).

An adaptive pairwise reference (``adaptive=True``: the best frame so far) starts from the given image; the
training step replaces it by the rollout's best frame when the model prefers that frame to it (P("yes") above
one half, or log-odds above 0) and encodes the new prefix once per rollout (`rewardax.rl.step`).
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from rewardax.models.internvl import InternVL, KVCache
from rewardax.models.layers import add_lora
from rewardax.models.vlm_processor import VLMProcessor
from rewardax.rewards.base import Reward

POINTWISE = 'Does this figure show "{goal}"? Please answer yes or no.'
PAIRWISE = 'Is image 2 better than image 1 at showing "{goal}"? Please answer yes or no.'
SCORES = ("p_yes", "p_yes_given_yes_or_no", "log_odds")
Score = Literal["p_yes", "p_yes_given_yes_or_no", "log_odds"]


def answer_log_probs(logits: jax.Array, yes_ids, no_ids) -> tuple[jax.Array, jax.Array]:
    """``(log P(yes) [B], log P(no) [B])`` from next-token ``logits [B, vocab]``: float32 softmax over the whole
    vocabulary, the probabilities of several spellings of a word added."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return (jax.nn.logsumexp(log_probs[:, jnp.asarray(yes_ids)], axis=-1),
            jax.nn.logsumexp(log_probs[:, jnp.asarray(no_ids)], axis=-1))


def answer_score(logits: jax.Array, yes_ids, no_ids, score: Score = "p_yes") -> tuple[jax.Array, jax.Array]:
    """``(score [B], p_yes [B])`` from next-token ``logits [B, vocab]`` (`answer_log_probs`)."""
    log_yes, log_no = answer_log_probs(logits, yes_ids, no_ids)
    p_yes = jnp.exp(log_yes)
    if score == "p_yes":
        value = p_yes
    elif score == "p_yes_given_yes_or_no":
        value = jax.nn.sigmoid(log_yes - log_no)
    elif score == "log_odds":
        value = log_yes - log_no
    else:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    return value, p_yes


def check_question(question: str) -> str:
    if "{goal}" not in question:
        raise ValueError(f"the question template must contain {{goal}} (where the task's sentence goes), got "
                         f"{question!r}")
    return question


@partial(jax.jit, static_argnums=(0, 3))
def _encode_prefix(graphdef, params, prefix_ids, processor, reference) -> KVCache:
    """The shared prefix's keys and values for ``prefix_ids [P]`` and the reference image (or None), batch 1 (one
    compiled program: the VLM run eagerly is thousands of ops)."""
    model = nnx.merge(graphdef, params)
    prefix_ids = prefix_ids[None]
    x = model.embed_tokens(prefix_ids)
    if reference is not None:
        x = model.splice_images(x, prefix_ids, model.embed_images(processor.preprocess(reference[None])))
    return model.decode(x, return_kv=True)["kv"]


@struct.dataclass
class YesTokenReward(Reward):
    """P("yes") of an InternVL asked about the rendered frame (see module docstring). Build with `create`."""

    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    params: nnx.State  # the VLM's weights (frozen here)
    prefix: KVCache  # keys and values of the shared prefix, batch 1
    prefix_ids: jax.Array  # [P] the prefix's tokens (for pairwise, the reference image's are placeholders)
    suffix_ids: jax.Array  # [S] the tokens from the frame's image on (its image tokens are placeholders)
    reference: jax.Array | None  # pairwise: the uint8 [H, W, 3] reference image; None pointwise
    yes_ids: tuple[int, ...] = struct.field(pytree_node=False)
    no_ids: tuple[int, ...] = struct.field(pytree_node=False)
    score: str = struct.field(pytree_node=False)
    processor: VLMProcessor = struct.field(pytree_node=False)
    adaptive: bool = struct.field(pytree_node=False, default=False)  # the best frame so far replaces the reference
    optimizer: optax.GradientTransformation | None = struct.field(pytree_node=False, default=None)
    """Set (`trainable`): the trainable weights (all of them, or the LoRA adapters) take this optax update."""
    needs_frames = True

    @classmethod
    def create(cls, model: InternVL, processor: VLMProcessor, goal: str, *, reference: np.ndarray | None = None,
               question: str | None = None, score: Score = "p_yes", adaptive: bool = False) -> YesTokenReward:
        """Pointwise without ``reference``; pairwise with one (a uint8 ``[H, W, 3]`` image, any size), which with
        ``adaptive`` is only the first (see the module docstring). ``question`` defaults to `POINTWISE` or
        `PAIRWISE`; its ``{goal}`` takes ``goal``."""
        if adaptive and reference is None:
            raise ValueError("an adaptive reference needs a first reference image (pairwise mode)")
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        if not isinstance(goal, str) or not goal.strip():
            raise ValueError(f"the goal must be a non-empty sentence, got {goal!r}")
        question = check_question(question or (POINTWISE if reference is None else PAIRWISE))
        images = 1 if reference is None else 2
        prompt = processor.prompt(question.format(goal=goal), images)
        ids = processor.tokenize([prompt])[0][0]
        image = np.flatnonzero(ids == processor.image_token_id)
        frame_start = image[-processor.image_seq_length]  # the frame is the last image
        if len(ids) > model.spec.text.max_positions:
            raise ValueError(f"the prompt has {len(ids)} tokens, more than the model's {model.spec.text.max_positions} "
                             f"positions: shorten the question")
        prefix_ids, suffix_ids = ids[:frame_start], ids[frame_start:]
        graphdef, params = nnx.split(model)
        reference = None if reference is None else jnp.asarray(reference, jnp.uint8)
        prefix_ids = jnp.asarray(prefix_ids)
        return cls(graphdef=graphdef, params=params, prefix=_encode_prefix(graphdef, params, prefix_ids, processor,
                                                                           reference),
                   prefix_ids=prefix_ids, suffix_ids=jnp.asarray(suffix_ids), reference=reference,
                   yes_ids=tuple(processor.answer_ids("yes")), no_ids=tuple(processor.answer_ids("no")), score=score,
                   processor=processor, adaptive=adaptive)

    def trainable(self, optimizer: optax.GradientTransformation, lora_rank: int = 0,
                  lora_targets: tuple[str, ...] = ("q", "k", "v", "o"),
                  lora_vision_targets: tuple[str, ...] = (), seed: int = 0) -> YesTokenReward:
        """This model, trainable by ``optimizer``: every weight (``lora_rank=0``: full fine-tuning, what a model
        that starts from random weights needs), or only rank-``lora_rank`` LoRA adapters on the decoder's
        ``lora_targets`` projections and the vision tower's ``lora_vision_targets`` (e.g. ``("q", "k", "v",
        "proj")``), the base frozen (`rewardax.models.layers.add_lora`; fresh adapters change no score). `split`
        then hands the trainable weights to the train state."""
        if not lora_rank:
            return self.replace(optimizer=optimizer)
        model = nnx.merge(self.graphdef, self.params)
        rngs = nnx.Rngs(seed)
        add_lora(model.text, lora_targets, lora_rank, rngs=rngs)
        if lora_vision_targets:
            add_lora(model.vision, lora_vision_targets, lora_rank, rngs=rngs)
        graphdef, params = nnx.split(model)
        return self.replace(graphdef=graphdef, params=params, optimizer=optimizer)

    def split(self):
        """(the frozen part, the trainable weights): with LoRA adapters, the adapters (`nnx.LoRAParam`) go to the
        train state and the base stays frozen; otherwise every weight goes. The prefix cache is rebuilt by
        `merge`."""
        if self.optimizer is None:
            return self, None
        adapters, base = nnx.split_state(self.params, nnx.LoRAParam, ...)
        if jax.tree.leaves(adapters):
            return self.replace(params=base, prefix=None), adapters
        return self.replace(params=None, prefix=None), self.params

    def merge(self, params):
        """The model with the trainable ``params`` put back (beside a frozen base, for adapters) and its shared
        prefix encoded with them (jittable: inside the step the cache follows every update)."""
        if params is None:
            return self
        params = params if self.params is None else nnx.merge_state(self.params, params)
        prefix = _encode_prefix(self.graphdef, params, self.prefix_ids, self.processor, self.reference)
        return self.replace(params=params, prefix=prefix)

    def initial_reference(self):
        return self.reference if self.adaptive else None

    def with_reference(self, image):
        if self.reference is None:
            raise ValueError("a pointwise yes-token reward has no reference image")
        image = jnp.asarray(image, jnp.uint8)
        prefix = _encode_prefix(self.graphdef, self.params, self.prefix_ids, self.processor, image)
        return self.replace(prefix=prefix, reference=image)

    def beats_reference(self, reward):
        """P("yes") (either normalisation) above one half, or log-odds above 0: the model prefers the frame."""
        return reward > (0.0 if self.score == "log_odds" else 0.5)

    def logits(self, frames: jax.Array) -> jax.Array:
        """uint8 frames ``[B, H, W, 3]`` -> next-token logits ``[B, vocab]`` at the answer position."""
        model = nnx.merge(self.graphdef, self.params)
        features = model.embed_images(self.processor.preprocess(frames))
        ids = jnp.broadcast_to(self.suffix_ids, (frames.shape[0], self.suffix_ids.shape[0]))
        x = model.splice_images(model.embed_tokens(ids), ids, features)
        return model.decode(x, prefix=self.prefix)["logits"]

    def pair_logits(self, first: jax.Array, second: jax.Array) -> jax.Array:
        """Pairwise question about ``first [B, H, W, 3]`` as image 1 and ``second`` as image 2, the whole prompt
        run for each pair (training pairs each have their own first image, so no prefix is shared):
        next-token logits ``[B, vocab]``."""
        if self.reference is None:
            raise ValueError("pair_logits needs a pairwise yes-token reward (made with a reference image)")
        model = nnx.merge(self.graphdef, self.params)
        b = first.shape[0]
        images = jnp.stack([first, second], axis=1).reshape(2 * b, *first.shape[1:])
        features = model.embed_images(self.processor.preprocess(images))
        ids = jnp.broadcast_to(jnp.concatenate([self.prefix_ids, self.suffix_ids]),
                               (b, self.prefix_ids.shape[0] + self.suffix_ids.shape[0]))
        return model.decode(model.splice_images(model.embed_tokens(ids), ids, features))["logits"]

    def log_probs(self, frames: jax.Array, first: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``(log P(yes), log P(no))`` about ``frames``: as scored (pointwise, or against the reference), or
        with ``first`` against those images (`pair_logits`) — what the training losses read
        (`rewardax.rewards.losses`)."""
        logits = self.logits(frames) if first is None else self.pair_logits(first, frames)
        return answer_log_probs(logits, self.yes_ids, self.no_ids)

    def __call__(self, frames, state=None):
        value, p_yes = answer_score(self.logits(frames), self.yes_ids, self.no_ids, self.score)
        return value, {"yes_token/p_yes": p_yes}
