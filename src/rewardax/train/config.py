"""Training configuration: one frozen dataclass, commented field by field, and named presets.

Presets: ``smoke`` (a tiny random CLIP written locally, a few envs, two iterations: checks the whole
pipeline offline in minutes), ``cpu`` (a few envs, CLIP ViT-B/32), ``gpu`` and ``tpu`` (thousands of envs and
the paper's CLIP ViT-bigG-14 in bfloat16), ``paper`` (the VLM-RM settings at accelerator scale), ``learning``
(the dense ground-truth reward at CPU scale: `benchmarks/learning.py`, checking PPO without a VLM), ``classic``
(the same for CartPole and MountainCar, without reward scaling).
`default_preset()` picks one for the machine.

The PPO settings (`HUMANOID_PPO`) were chosen by measurement on this body and these 100-step pose tasks,
starting from what Brax / MuJoCo Playground use for humanoids: with the dense ground-truth reward and 64 envs
on 2 CPU cores, PPO took kneeling from 0 to 65% oracle success (stochastic rollouts) in 384 k env-steps.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from typing import Annotated, ClassVar, Literal, Union

import jax
import jax.numpy as jnp
import tyro

from rewardax import distributed
from rewardax.envs.base import TaskEnv
from rewardax.rewards import ClipReward, DenseReward, OracleReward, Reward, YesTokenReward
from rewardax.rewards.clip import check_alpha
from rewardax.rewards.yes_token import SCORES
from rewardax.rl.ppo import PPOConfig

PAPER_CLIP = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"
SMALL_CLIP = "openai/clip-vit-base-patch32"
PAPER_VLM = "OpenGVLab/InternVL3-1B-hf"  # RewardDance's backbone family, at its smallest


HUMANOID_PPO = PPOConfig(
    num_steps=20,  # 5 rollouts per 100-step episode (Brax: unrolls of 10-30); GAE bootstraps across them
    minibatches=4,  # of 5 time steps × every env (must divide num_steps)
    epochs=4,
    learning_rate=3e-4,
    lr_schedule="constant",  # a run's length is set by a wall-time budget or extended later
    gamma=0.97,  # a horizon of ~33 steps (0.5 s): reach the pose soon, then hold it
    gae_lambda=0.95,
    ent_coef=1e-3,
    init_log_std=-0.5,  # std 0.6: with std 1 half the clipped actions sit at an actuator limit (flailing)
    hidden_sizes=(128, 128),
)
"""PPO for the humanoid pose tasks (see the module docstring for how it was chosen)."""


@dataclasses.dataclass(frozen=True)
class ClipRewardConfig:
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

    def build(self, env: TaskEnv) -> Reward:
        """Loads the checkpoint (a missing or broken one raises here, before a run directory exists)."""
        from rewardax.models import load_clip, write_random_clip

        task = _task(env, self.kind)
        model, tokenizer = load_model(self.checkpoint, self.bfloat16, load_clip, write_random_clip)
        return ClipReward.create(model, tokenizer, task.goal, task.baseline, self.alpha)


@dataclasses.dataclass(frozen=True)
class OracleRewardConfig:
    """The task's binary oracle pose test on the physics state (ablations; no frames, no VLM)."""

    kind: ClassVar[str] = "oracle"

    def problems(self) -> list[str]:
        return []

    def build(self, env: TaskEnv) -> Reward:
        return OracleReward(_task(env, self.kind))


@dataclasses.dataclass(frozen=True)
class DenseRewardConfig:
    """The task's dense ground truth in [0, 1], 1 exactly where the oracle passes (checks PPO without a VLM)."""

    kind: ClassVar[str] = "dense"

    def problems(self) -> list[str]:
        return []

    def build(self, env: TaskEnv) -> Reward:
        return DenseReward(_task(env, self.kind))


@dataclasses.dataclass(frozen=True)
class YesTokenRewardConfig:
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
        if self.mode == "pairwise" and self.reference not in ("goal", "best") and not pathlib.Path(self.reference).is_file():
            problems.append(f"reference must be 'goal', 'best' or an image file, got {self.reference!r} (no such file)")
        return problems

    def build(self, env: TaskEnv) -> Reward:
        """Loads the checkpoint (before a run directory exists) and encodes the shared prefix once."""
        from rewardax.models import load_vlm, write_random_vlm

        task = _task(env, self.kind)
        model, processor = load_model(self.checkpoint, self.bfloat16, load_vlm, write_random_vlm)
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


def _task(env: TaskEnv, kind: str):
    if env.task is None:
        raise ValueError(f"the {kind} reward needs the env's task (its prompts and oracle); {type(env).__name__} "
                         f"has none: pass a reward model to train()")
    return env.task


RewardConfig = Union[Annotated[ClipRewardConfig, tyro.conf.subcommand(ClipRewardConfig.kind)],
                     Annotated[OracleRewardConfig, tyro.conf.subcommand(OracleRewardConfig.kind)],
                     Annotated[DenseRewardConfig, tyro.conf.subcommand(DenseRewardConfig.kind)],
                     Annotated[YesTokenRewardConfig, tyro.conf.subcommand(YesTokenRewardConfig.kind)]]
"""One of the named reward configs; on the command line a subcommand after the other options, e.g.
``--num-envs 64 reward:clip --reward.alpha 0.5`` or ``reward:oracle``."""

REWARD_CONFIGS = {c.kind: c for c in (ClipRewardConfig, OracleRewardConfig, DenseRewardConfig, YesTokenRewardConfig)}
"""Every reward config by name."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as config.json in the run directory)."""

    task: str = "splits"
    """Task name (rewardax.envs.TASKS): the env, its prompts and its oracle."""
    look: str = "paper"
    """Scene look: "paper" (sky, tiled floor, grey body) or "default" (the MJCF's colours)."""
    reward: RewardConfig = ClipRewardConfig()
    """Reward model: clip (the VLM-RM CLIP reward of the rendered frame), yes_token (P("yes") of InternVL asked
    about the frame), oracle (the task's binary pose test) or dense (its dense ground truth)."""
    frame_size: int = 224
    """Side of the rendered frames in pixels (resized to the reward model's input size)."""
    reward_every: int = 1
    """Score every k-th step of a rollout (and its first) and hold each env's last reward in between: a 1 B
    VLM costs about a hundred times CLIP B/32 per frame. Best as a divisor of ppo.num_steps."""
    num_envs: int = 1024
    """Envs stepped in parallel, over all devices (a multiple of the device count)."""
    iterations: int = 1000
    """Training iterations; each collects ppo.num_steps steps from every env."""
    ppo: PPOConfig = HUMANOID_PPO
    """PPO hyperparameters (one rollout per iteration)."""
    scale_reward: bool = True
    """Divide rewards by the running std of returns (CLIP rewards live in a narrow band)."""
    seed: int = 0
    """Seeds the agent, the envs and the minibatch shuffles: a run is reproducible."""
    run_dir: str = ""
    """Where checkpoints, logs, TensorBoard events and videos go (default runs/<task>-<time>)."""
    resume: bool = True
    """Continue from the latest checkpoint in run_dir when there is one."""
    checkpoint_every: int = 20
    """Iterations between checkpoints (one is also written at the end and on SIGTERM/SIGINT)."""
    keep_checkpoints: int = 3
    """How many recent checkpoints to keep."""
    eval_every: int = 100
    """Iterations between evaluations (0: only at the end; the last iteration is always evaluated)."""
    eval_episodes: int = 16
    """Deterministic episodes (the policy's mean action) per evaluation, run on every process; their oracle
    success on the last frame and mean reward are logged (eval/...) and the first one is filmed."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the wandb package and a login)."""
    distributed: bool = False
    """Require a multi-process job (TPU pods, GPU nodes): join it through JAX's own cluster detection and stop
    with an error if there is none. Without it, a job described by REWARDAX_* variables or one JAX recognises
    (Cloud TPU, SLURM, Open MPI, Kubernetes) is joined anyway; a single process runs alone."""
    watchdog_first_s: float = 1800.0
    """Seconds the first iteration of a process (it compiles) may take before TrainingStalled stops it (0: no limit)."""
    watchdog_factor: float = 10.0
    """A later iteration may take this many times the median of the iterations before it (0: no limit)."""
    watchdog_min_s: float = 120.0
    """The smallest time limit of a later iteration, in seconds (short iterations vary a lot on a busy host)."""

    def __post_init__(self):
        problems = self.problems()
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with these values, each with what would be right (empty: nothing). The env count's
        split over the devices is checked when the run starts (`rewardax.rl.step.check_num_envs`), the task and
        look by `rewardax.envs.make`, a checkpoint by loading it: all before the run directory is touched."""
        if not isinstance(self.reward, tuple(REWARD_CONFIGS.values())):
            return [f"reward must be one of {', '.join(c.__name__ for c in REWARD_CONFIGS.values())}, got "
                    f"{self.reward!r}"]
        problems = self.reward.problems()
        for name, low in (("frame_size", 1), ("reward_every", 1), ("num_envs", 1), ("iterations", 1), ("checkpoint_every", 1),
                          ("keep_checkpoints", 1), ("eval_every", 0), ("eval_episodes", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                problems.append(f"{name} must be an integer of at least {low}, got {value!r}")
        for name in ("watchdog_first_s", "watchdog_factor", "watchdog_min_s"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be at least 0 (0: no limit), got {getattr(self, name)!r}")
        return problems


RESUMABLE_CHANGES = ("iterations", "run_dir", "resume", "checkpoint_every", "keep_checkpoints", "eval_every",
                     "eval_episodes", "wandb", "distributed", "watchdog_first_s", "watchdog_factor", "watchdog_min_s")
"""Fields that may differ when a run resumes. They do not change the steps already taken; ``iterations``
extends (or shortens) the run, and with a ``linear`` or ``cosine`` learning-rate schedule the step size of the
remaining updates then follows the schedule over the new total (the optimiser's step count is kept), so it
jumps up when a decayed run is extended. The constant schedule of the presets is unaffected."""


PRESET_NAMES = ("smoke", "cpu", "gpu", "tpu", "paper", "learning", "classic")


def presets() -> dict[str, TrainConfig]:
    """The named presets, sized for the devices of the whole job: it joins a multi-process job first
    (`rewardax.distributed.initialize`: a no-op for one process), as the device count is only known then."""
    distributed.initialize()
    base = TrainConfig()
    devices = jax.device_count()
    return {
        "smoke": dataclasses.replace(
            base, reward=ClipRewardConfig(checkpoint="random", bfloat16=False), frame_size=32,
            num_envs=2 * devices, iterations=2,
            ppo=dataclasses.replace(base.ppo, num_steps=8, minibatches=2, epochs=2, hidden_sizes=(32, 32)),
            checkpoint_every=1, eval_every=0, eval_episodes=2),
        "cpu": dataclasses.replace(base, reward=ClipRewardConfig(SMALL_CLIP, bfloat16=False), num_envs=8 * devices, iterations=1000,
                                   eval_every=100, eval_episodes=4),
        "gpu": dataclasses.replace(base, num_envs=1024 * devices),
        "tpu": dataclasses.replace(base, num_envs=512 * devices),
        "paper": dataclasses.replace(base, reward=ClipRewardConfig(PAPER_CLIP, alpha=0.0), num_envs=-(-1024 // devices) * devices,
                                     iterations=500),  # the paper's 10 M env-steps
        "learning": dataclasses.replace(base, task="kneeling", reward=DenseRewardConfig(), num_envs=-(-64 // devices) * devices,
                                        iterations=100_000, checkpoint_every=50, eval_every=20, eval_episodes=32),
        # CartPole and MountainCar with their dense ground truth: as "learning", without reward scaling. Measured:
        # with it, MountainCar's PPO reaches the flag in 97% of rollouts by iteration 50 and then loses it (the
        # returns' scale grows tenfold once cars park at the absorbing goal); without it, 100% from iteration 250.
        "classic": dataclasses.replace(base, task="cartpole", reward=DenseRewardConfig(),
                                       num_envs=-(-64 // devices) * devices, iterations=100_000, scale_reward=False,
                                       checkpoint_every=50, eval_every=20, eval_episodes=32),
    }


def default_preset() -> str:
    """The preset sized for this machine's accelerator."""
    return {"gpu": "gpu", "tpu": "tpu"}.get(jax.default_backend(), "cpu")
