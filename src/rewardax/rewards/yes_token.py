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
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from rewardax.models.internvl import InternVL, KVCache
from rewardax.models.vlm_processor import VLMProcessor
from rewardax.rewards.base import Reward

POINTWISE = 'Does this figure show "{goal}"? Please answer yes or no.'
PAIRWISE = 'Is image 2 better than image 1 at showing "{goal}"? Please answer yes or no.'
SCORES = ("p_yes", "p_yes_given_yes_or_no", "log_odds")
Score = Literal["p_yes", "p_yes_given_yes_or_no", "log_odds"]


def answer_score(logits: jax.Array, yes_ids, no_ids, score: Score = "p_yes") -> tuple[jax.Array, jax.Array]:
    """``(score [B], p_yes [B])`` from next-token ``logits [B, vocab]`` (float32 softmax over the whole vocabulary;
    the probabilities of several spellings of a word are added)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    log_yes = jax.nn.logsumexp(log_probs[:, jnp.asarray(yes_ids)], axis=-1)
    log_no = jax.nn.logsumexp(log_probs[:, jnp.asarray(no_ids)], axis=-1)
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
    """The shared prefix's keys and values (one compiled program: the VLM run eagerly is thousands of ops)."""
    model = nnx.merge(graphdef, params)
    x = model.embed_tokens(prefix_ids)
    if reference is not None:
        x = model.splice_images(x, prefix_ids, model.embed_images(processor.preprocess(reference)))
    return model.decode(x, return_kv=True)["kv"]


@struct.dataclass
class YesTokenReward(Reward):
    """P("yes") of an InternVL asked about the rendered frame (see module docstring). Build with `create`."""

    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    params: nnx.State  # the VLM's weights (frozen here)
    prefix: KVCache  # keys and values of the shared prefix, batch 1
    suffix_ids: jax.Array  # [S] the tokens from the frame's image on (its image tokens are placeholders)
    yes_ids: tuple[int, ...] = struct.field(pytree_node=False)
    no_ids: tuple[int, ...] = struct.field(pytree_node=False)
    score: str = struct.field(pytree_node=False)
    processor: VLMProcessor = struct.field(pytree_node=False)
    needs_frames = True

    @classmethod
    def create(cls, model: InternVL, processor: VLMProcessor, goal: str, *, reference: np.ndarray | None = None,
               question: str | None = None, score: Score = "p_yes") -> YesTokenReward:
        """Pointwise without ``reference``; pairwise with one (a uint8 ``[H, W, 3]`` image, any size). ``question``
        defaults to `POINTWISE` or `PAIRWISE`; its ``{goal}`` takes ``goal``."""
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
        prefix = _encode_prefix(graphdef, params, jnp.asarray(prefix_ids[None]), processor,
                                None if reference is None else jnp.asarray(reference)[None])
        return cls(graphdef=graphdef, params=params, prefix=prefix, suffix_ids=jnp.asarray(suffix_ids),
                   yes_ids=tuple(processor.answer_ids("yes")), no_ids=tuple(processor.answer_ids("no")), score=score,
                   processor=processor)

    def logits(self, frames: jax.Array) -> jax.Array:
        """uint8 frames ``[B, H, W, 3]`` -> next-token logits ``[B, vocab]`` at the answer position."""
        model = nnx.merge(self.graphdef, self.params)
        features = model.embed_images(self.processor.preprocess(frames))
        ids = jnp.broadcast_to(self.suffix_ids, (frames.shape[0], self.suffix_ids.shape[0]))
        x = model.splice_images(model.embed_tokens(ids), ids, features)
        return model.decode(x, prefix=self.prefix)["logits"]

    def __call__(self, frames, state=None):
        value, p_yes = answer_score(self.logits(frames), self.yes_ids, self.no_ids, self.score)
        return value, {"yes_token/p_yes": p_yes}
