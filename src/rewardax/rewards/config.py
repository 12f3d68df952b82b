"""Reward models by name: the one place a reward is built from a config or a command-line spec.

    config = reward_from_spec("clip:openai/clip-vit-base-patch32")   # or ClipRewardConfig(checkpoint=...)
    reward = config.build(env)                                       # loads the checkpoint, reads env.task

The trainer (``TrainConfig.reward``), the evaluation command (``python -m rewardax.eval --reward ...``) and the
notebooks all go through these configs, so a reward's options are checked in one place (each config checks
its values when it is made: a bad one raises `ValueError` naming the field and what would be right) and are
spelled the same everywhere: on the training command line a subcommand (``reward:yes-token --reward.mode
pairwise``), on the evaluation command line a spec (``yes-token:random``), both by the config's `cli_name`.

Loading and building are separate so that one checkpoint serves many rewards: ``loaded = config.load()``, then
``config.build(env, loaded)`` per env or per α (the evaluation command scores every α of a CLIP with one load).
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

import jax
import jax.numpy as jnp
import tyro

from rewardax.rewards.base import Reward
from rewardax.rewards.clip import ClipReward, check_alpha
from rewardax.rewards.oracle import DenseReward, OracleReward
from rewardax.rewards.yes_token import SCORES, YesTokenReward

if TYPE_CHECKING:
    from rewardax.envs.base import TaskEnv

PAPER_CLIP = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"
SMALL_CLIP = "openai/clip-vit-base-patch32"
PAPER_VLM = "OpenGVLab/InternVL3-1B-hf"  # RewardDance's backbone family, at its smallest


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Base of the named reward configs: checks its values when made, loads its model, builds the reward."""

    kind: ClassVar[str]
    """The name stored in a run's config.json."""

    @classmethod
    def cli_name(cls) -> str:
        """The name on both command lines (``reward:<name>`` when training, ``<name>:<checkpoint>`` in eval)."""
        return cls.kind.replace("_", "-")

    def __post_init__(self):
        problems = self.problems()
        if problems:
            raise ValueError(f"invalid {self.cli_name()} reward: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with these values, each with what would be right (empty: nothing)."""
        return []

    def load(self) -> Any:
        """The model this reward scores with (None for the ground-truth rewards): load once, build many."""
        return None

    def build(self, env: TaskEnv, loaded: Any = None) -> Reward:
        """The reward for ``env``'s task, scoring with ``loaded`` (default: `load` it now; a missing or broken
        checkpoint raises here, before a run directory exists)."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class ClipRewardConfig(RewardConfig):
    """The VLM-RM reward: CLIP's goal-baseline score of the rendered frame (`rewardax.rewards.ClipReward`)."""

    kind: ClassVar[str] = "clip"
    checkpoint: str = PAPER_CLIP
    """CLIP checkpoint: Hugging Face hub id, local directory, open_clip file, or "random" (tiny, offline)."""
    bfloat16: bool = True
    """Run CLIP's matmuls in bfloat16 (LayerNorm and softmax stay float32; physics always float32)."""
    alpha: float = 0.0
    """Goal-baseline regularisation strength in [0, 1] (0: cosine similarity to the goal prompt)."""

    def problems(self) -> list[str]:
        try:
            check_alpha(self.alpha)
        except ValueError as error:
            return [str(error)]
        return []

    def load(self):
        from rewardax.models import load_clip, write_random_clip

        return load_model(self.checkpoint, self.bfloat16, load_clip, write_random_clip)

    def build(self, env: TaskEnv, loaded=None) -> Reward:
        task = _task(env, self)
        model, tokenizer = self.load() if loaded is None else loaded
        return ClipReward.create(model, tokenizer, task.goal, task.baseline, self.alpha)


@dataclasses.dataclass(frozen=True)
class OracleRewardConfig(RewardConfig):
    """The task's binary oracle pose test on the physics state (ablations; no frames, no VLM)."""

    kind: ClassVar[str] = "oracle"

    def build(self, env: TaskEnv, loaded=None) -> Reward:
        return OracleReward(_task(env, self))


@dataclasses.dataclass(frozen=True)
class DenseRewardConfig(RewardConfig):
    """The task's dense ground truth in [0, 1], 1 exactly where the oracle passes (checks PPO without a VLM)."""

    kind: ClassVar[str] = "dense"
    success_bonus: float = 0.0
    """Added where the oracle passes. The dense value is flat at its top (1 from the threshold on, with zero slope
    just below it), so nothing in it rewards a pose that passes with a margin; a bonus makes passing a step
    that a stochastic policy gains by keeping clear of the edge."""

    def problems(self) -> list[str]:
        return [] if self.success_bonus >= 0 else [f"success_bonus must be at least 0, got {self.success_bonus!r}"]

    def build(self, env: TaskEnv, loaded=None) -> Reward:
        return DenseReward(_task(env, self), self.success_bonus)


@dataclasses.dataclass(frozen=True)
class YesTokenRewardConfig(RewardConfig):
    """The yes-token reward (VQAScore / RewardDance): P("yes") of InternVL asked about the rendered frame
    (`rewardax.rewards.YesTokenReward`); the question takes the task's goal sentence."""

    kind: ClassVar[str] = "yes_token"
    checkpoint: str = PAPER_VLM
    """InternVL checkpoint: Hugging Face hub id (an -hf repo), local directory, or "random" (tiny, offline)."""
    bfloat16: bool = True
    """Run the VLM's matmuls in bfloat16 (norms, softmax and the answer's softmax stay float32)."""
    mode: Literal["pointwise", "pairwise"] = "pointwise"
    """pointwise: "Does this figure show ...?"; pairwise: "Is image 2 better than image 1 at showing ...?" with
    the reference as image 1."""
    reference: str = "goal"
    """Pairwise only: "goal" (the task's canonical pose, rendered by the task camera), "best" (the best frame seen
    so far: it starts as the env's first frame and after each rollout the frame the model prefers most replaces
    it, if the model prefers it to the reference) or an image file."""
    question: str = ""
    """The question, with {goal} for the task's sentence (default: VQAScore's pointwise, RewardDance's pairwise)."""
    score: Literal["p_yes", "p_yes_given_yes_or_no", "log_odds"] = "p_yes"
    """P("yes") over the whole vocabulary, renormalised over yes and no, or the log-odds yes vs no."""

    def problems(self) -> list[str]:
        problems = []
        if self.mode not in ("pointwise", "pairwise"):
            problems.append(f"mode must be pointwise or pairwise, got {self.mode!r}")
        if self.question and "{goal}" not in self.question:
            problems.append(f"question must contain {{goal}} (the task's sentence), got {self.question!r}")
        if self.score not in SCORES:
            problems.append(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        if (self.mode == "pairwise" and self.reference not in ("goal", "best")
                and not pathlib.Path(self.reference).is_file()):
            problems.append(f"reference must be 'goal', 'best' or an image file, got {self.reference!r} (no such file)")
        return problems

    def load(self):
        from rewardax.models import load_vlm, write_random_vlm

        return load_model(self.checkpoint, self.bfloat16, load_vlm, write_random_vlm)

    def build(self, env: TaskEnv, loaded=None) -> Reward:
        """Also encodes the shared prefix of every prompt once."""
        task = _task(env, self)
        model, processor = self.load() if loaded is None else loaded
        reference = None
        if self.mode == "pairwise":
            size = processor.image_size
            if self.reference == "goal":
                reference = env.goal_frame(size, size)
            elif self.reference == "best":  # starts as the env's first frame after a reset (seed 0)
                reference = env.draw(jax.jit(env.reset)(jax.random.key(0)).pipeline_state, size, size)
            else:
                reference = _read_image(self.reference)
            if reference is None:
                raise ValueError(f"{type(env).__name__} draws no {self.reference} frame: pass reference= an image file")
        return YesTokenReward.create(model, processor, task.goal[0], reference=reference,
                                     question=self.question or None, score=self.score,
                                     adaptive=self.mode == "pairwise" and self.reference == "best")


REWARD_CONFIGS = {c.kind: c for c in (ClipRewardConfig, OracleRewardConfig, DenseRewardConfig, YesTokenRewardConfig)}
"""Every reward config by the name a run's config.json stores."""

RewardChoice = Union[tuple(Annotated[c, tyro.conf.subcommand(c.cli_name())] for c in REWARD_CONFIGS.values())]
"""One of the named reward configs; on the training command line a subcommand after the other options, e.g.
``--num-envs 64 reward:clip --reward.alpha 0.5``, ``reward:yes-token`` or ``reward:oracle``."""


def reward_from_spec(spec: str) -> RewardConfig:
    """``<name>`` or ``<name>:<checkpoint>`` (the evaluation command's ``--reward``) -> its config, e.g.
    ``clip:random``, ``yes-token:OpenGVLab/InternVL3-1B-hf``, ``dense``."""
    name, _, checkpoint = spec.partition(":")
    configs = {c.cli_name(): c for c in REWARD_CONFIGS.values()}
    config = configs.get(name)
    if config is None or _takes_checkpoint(config) != bool(checkpoint):
        usage = ", ".join(f"{n}:<checkpoint>" if _takes_checkpoint(c) else n for n, c in configs.items())
        raise ValueError(f"--reward {spec!r}: expected one of {usage} (<checkpoint>: a hub id, a local directory "
                         f"or random)")
    return config(checkpoint=checkpoint) if checkpoint else config()


def _takes_checkpoint(config: type[RewardConfig]) -> bool:
    return "checkpoint" in {field.name for field in dataclasses.fields(config)}


def load_model(checkpoint: str, bfloat16: bool, load, write_random):
    """``load(checkpoint, dtype)``; for "random", a tiny random model written into a temporary directory
    (seed 0: deterministic, so a resumed smoke run scores frames the same way)."""
    dtype = jnp.bfloat16 if bfloat16 else jnp.float32
    if checkpoint != "random":
        return load(checkpoint, dtype)
    with tempfile.TemporaryDirectory(prefix="rewardax-random-") as directory:
        return load(write_random(pathlib.Path(directory) / "model"), dtype)


def _read_image(path: str):
    import imageio.v3 as iio

    image = iio.imread(path)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"{path}: expected an RGB image, got an array of shape {image.shape}")
    return image[..., :3]


def _task(env: TaskEnv, config: RewardConfig):
    if env.task is None:
        raise ValueError(f"the {config.cli_name()} reward needs the env's task (its prompts and oracle); "
                         f"{type(env).__name__} has none: pass a reward model to train()")
    return env.task
