"""The VLM-RM reward (Rocamonde et al. 2023, Definition 1): CLIP image embedding vs goal and baseline prompts.

With s, g, b the L2-normalised embeddings of the frame, the goal prompt(s) and the baseline prompt(s), L the
line through b and g and proj_L the orthogonal projection onto it,

    R(s) = 1 − ½ ‖α·proj_L(s) + (1 − α)·s − g‖²,   α ∈ [0, 1].

α = 0 gives exactly the cosine similarity s·g; α = 1 keeps only the component of s − g along g − b, so
everything the two prompts agree on is projected out. Several prompts on one side are averaged after
normalisation and the average is normalised again (so α = 0 stays a cosine similarity). Text embeddings are
computed once, on the host, into the reward pytree; frames are scored in batches inside the compiled rollout.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx, struct

from rewardax.models.clip import CLIP, l2_normalize
from rewardax.models.clip_checkpoints import load_clip, tokenize
from rewardax.models.preprocess import preprocess_frames
from rewardax.rewards.base import Reward


def goal_baseline_reward(image: jax.Array, goal: jax.Array, baseline: jax.Array, alpha: float) -> jax.Array:
    """R(s) of the module docstring for unit vectors ``image [..., D]``, ``goal [D]`` and ``baseline [D]``.

    Because g lies on L, α·proj_L(s) + (1 − α)·s − g = (α·uuᵀ + (1 − α)·I)(s − g) with u the unit
    direction of g − b: a matrix-free form that needs no projection matrix.
    """
    direction = goal - baseline
    u = direction / jnp.maximum(jnp.linalg.norm(direction), 1e-12)
    offset = image - goal
    along = jnp.sum(offset * u, axis=-1, keepdims=True) * u
    residual = alpha * along + (1.0 - alpha) * offset
    return 1.0 - 0.5 * jnp.sum(residual * residual, axis=-1)


def check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0: cosine similarity to the goal, 1: full projection onto "
                         f"the goal-baseline direction), got {alpha!r}")
    return float(alpha)


def mean_embedding(model: CLIP, tokenizer, prompts: Sequence[str]) -> jax.Array:
    """Normalised mean of the normalised text embeddings of ``prompts``."""
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"prompts must be a non-empty list of non-empty strings, got {prompts!r}")
    ids = tokenize(tokenizer, list(prompts), context_length=model.spec.context_length)
    return l2_normalize(jnp.mean(l2_normalize(model.encode_text(jnp.asarray(ids))), axis=0))


@struct.dataclass
class ClipReward(Reward):
    """Goal–baseline CLIP reward of rendered frames (see module docstring). Build with `ClipReward.create`."""

    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    params: nnx.State
    """The image tower's weights (frozen: nothing trains them). The text tower embeds the prompts once, in
    `create`, and is dropped: ViT-bigG-14's is 0.7 B parameters that no step would read."""
    goal: jax.Array  # [D] unit goal embedding
    baseline: jax.Array  # [D] unit baseline embedding
    alpha: float = struct.field(pytree_node=False)
    image_size: int = struct.field(pytree_node=False)
    needs_frames = True

    @classmethod
    def create(cls, model: CLIP, tokenizer, goal: Sequence[str], baseline: Sequence[str], alpha: float = 0.0):
        """Embed the prompts once and keep the image tower's weights in the reward pytree."""
        alpha = check_alpha(alpha)
        graphdef, params = nnx.split(model.vision)
        return cls(graphdef=graphdef, params=params, goal=mean_embedding(model, tokenizer, goal),
                   baseline=mean_embedding(model, tokenizer, baseline), alpha=alpha,
                   image_size=model.spec.image_size)

    def embed(self, frames: jax.Array) -> jax.Array:
        """uint8 frames [B, H, W, 3] (any H, W) -> unit image embeddings [B, D]."""
        tower = nnx.merge(self.graphdef, self.params)
        return l2_normalize(tower(preprocess_frames(frames, self.image_size)))

    def __call__(self, frames, state=None):
        s = self.embed(frames)
        reward = goal_baseline_reward(s, self.goal, self.baseline, self.alpha)
        return reward, {"clip/cos_goal": s @ self.goal, "clip/cos_baseline": s @ self.baseline}


def clip_reward(name_or_path, goal: Sequence[str], baseline: Sequence[str], alpha: float = 0.0,
                dtype_mm=jnp.float32) -> ClipReward:
    """A `ClipReward` from a CLIP checkpoint: hub id, local Hugging Face directory or open_clip file."""
    check_alpha(alpha)
    model, tokenizer = load_clip(name_or_path, dtype_mm)
    return ClipReward.create(model, tokenizer, goal, baseline, alpha)
