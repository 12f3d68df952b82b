"""Training configuration: one frozen dataclass, commented field by field, and named presets.

Presets size a run for a machine: ``smoke`` (a tiny random CLIP written locally, a few envs, two iterations:
checks the whole pipeline offline in minutes), ``cpu`` (a few envs, CLIP ViT-B/32), ``gpu`` and ``tpu``
(thousands of envs and the paper's CLIP ViT-bigG-14 in bfloat16), ``paper`` (the VLM-RM settings at
accelerator scale), ``learning`` (the dense ground-truth reward at CPU scale: `benchmarks/learning.py`, checking
PPO without a VLM), ``offline`` (what the experiments fall back to when pretrained weights cannot be found: the
ground truth teaching a humanoid to kneel in minutes). `default_preset()` picks one for the machine.

The PPO settings come with the env family, as MuJoCo Playground's ``default_config()`` per env (`ppo_for`):
`HUMANOID_PPO` for the humanoid tasks, `CLASSIC_PPO` for CartPole and MountainCar; a preset never changes them.
`HUMANOID_PPO` was chosen by measurement on this body and these 100-step pose tasks, starting from what Brax /
MuJoCo Playground use for humanoids: with the dense ground-truth reward and 64 envs on 2 CPU cores, PPO took
kneeling from 0 to 65% oracle success (stochastic rollouts) in 384 k env-steps.
"""

from __future__ import annotations

import dataclasses

import jax

from rewardax.envs import CLASSIC
from rewardax.mesh import mesh_sizes
from rewardax.rewards.config import (PAPER_CLIP, REWARD_CONFIGS, SMALL_CLIP, ClipRewardConfig, DenseRewardConfig,
                                     RewardChoice, YesTokenRewardConfig)
from rewardax.rl.ppo import PPOConfig
from rewardax.rl.reward_update import RewardLearning


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

CLASSIC_PPO = dataclasses.replace(HUMANOID_PPO, scale_reward=False)
"""PPO for CartPole and MountainCar: the humanoid's values, which learn both (CartPole 100% of evaluation episodes
from 154 k env-steps, MountainCar >= 97% from 282 k; README), without reward scaling. Measured: with it,
MountainCar's PPO reaches the flag in 97% of rollouts by iteration 50 and then loses it (the returns' scale
grows tenfold once cars park at the absorbing goal); without it, 100% from iteration 250."""


def ppo_for(task: str) -> PPOConfig:
    """The tuned PPO settings of ``task``'s env family."""
    return CLASSIC_PPO if task in CLASSIC else HUMANOID_PPO


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as config.json in the run directory)."""

    task: str = "splits"
    """The env and its task (`rewardax.envs.names()`: a humanoid pose task, cartpole or mountaincar): its prompts
    and its oracle."""
    look: str = "paper"
    """Scene look: "paper" (the paper's realistic look: sky, tiled floor, grey body; textured MountainCar) or
    "default" (plain colours)."""
    reward: RewardChoice = ClipRewardConfig()
    """Reward model: clip (the VLM-RM CLIP reward of the rendered frame), yes-token (P("yes") of InternVL asked
    about the frame), oracle (the task's binary pose test) or dense (its dense ground truth)."""
    frame_size: int = 224
    """Side of the rendered frames in pixels (resized to the reward model's input size)."""
    reward_every: int = 1
    """Score every k-th step of a rollout (and its first) and hold each env's last reward in between: a 1 B
    VLM costs about a hundred times CLIP B/32 per frame. Best as a divisor of ppo.num_steps."""
    reward_chunk: int = 0
    """Frames per call of the reward model (0: every env of a device at once): bounds a large model's activations
    (a 1 B VLM's attention over 512 frames alone is tens of GB). Must divide the envs per device and
    eval_episodes."""
    train_reward: bool = False
    """Train the reward model inside the step from a simulated teacher (reward_learning says how): the yes-token
    reward only, from any checkpoint, random included."""
    reward_learning: RewardLearning = RewardLearning()
    """With train_reward: the teacher and its label budget, which frames it is asked about, and the updates."""
    num_envs: int = 1024
    """Envs stepped in parallel, over all devices (a multiple of the device count)."""
    mesh: str = ""
    """How the devices are arranged, ``envs=E,model=M`` (E × M devices; one size may be left out and is
    inferred): the envs are split over all of them, the reward model's weights over each group of M
    (`rewardax.mesh`), for a reward model larger than one chip. Empty: model=1, every device holds the whole
    reward model."""
    iterations: int = 1000
    """Training iterations; each collects ppo.num_steps steps from every env."""
    ppo: PPOConfig = HUMANOID_PPO
    """PPO hyperparameters (one rollout per iteration); the presets take the task family's (`ppo_for`)."""
    seed: int = 0
    """Seeds the agent, the envs and the minibatch shuffles: a run is reproducible."""
    run_dir: str = ""
    """Where checkpoints, logs, TensorBoard events and videos go (default runs/<task>-<time>)."""
    fallback: str = ""
    """Why this run is not the one asked for: the experiments' offline fall-back (`OFFLINE_TASK`) records the
    weights it could not find here, so config.json says so; empty otherwise."""
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
        problems = []
        if self.train_reward and not isinstance(self.reward, YesTokenRewardConfig):
            problems.append(f"train_reward trains the yes-token reward model: choose reward:yes-token, not "
                            f"reward:{self.reward.cli_name()}")
        for name, low in (("frame_size", 1), ("reward_every", 1), ("reward_chunk", 0), ("num_envs", 1),
                          ("iterations", 1), ("checkpoint_every", 1), ("keep_checkpoints", 1), ("eval_every", 0),
                          ("eval_episodes", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                problems.append(f"{name} must be an integer of at least {low}, got {value!r}")
        try:
            mesh_sizes(self.mesh)
        except ValueError as error:
            problems.append(str(error))
        for name in ("watchdog_first_s", "watchdog_factor", "watchdog_min_s"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be at least 0 (0: no limit), got {getattr(self, name)!r}")
        return problems


RESUMABLE_CHANGES = ("iterations", "run_dir", "fallback", "resume", "checkpoint_every", "keep_checkpoints",
                     "eval_every", "eval_episodes", "reward_chunk", "wandb", "distributed", "watchdog_first_s",
                     "watchdog_factor", "watchdog_min_s")
"""Fields that may differ when a run resumes. They do not change the steps already taken; ``reward_chunk`` only
how many frames the reward model sees per call (its memory; the rewards up to rounding); ``iterations`` extends
(or shortens) the run, and with a ``linear`` or ``cosine`` learning-rate schedule the step size of the remaining
updates then follows the schedule over the new total (the optimiser's step count is kept), so it jumps up when a
decayed run is extended. The constant schedule of the presets is unaffected."""


PRESET_NAMES = ("smoke", "cpu", "gpu", "tpu", "paper", "learning", "offline")

OFFLINE_TASK = "kneeling"
"""The humanoid task of the ``offline`` preset: with its dense ground truth the one measured to learn fastest and
hold it (first >= 80% evaluation success at 0.38-0.46 M env-steps, ~12 minutes on 2 CPU cores; README)."""
LEARNING_SUCCESS_BONUS = 1.0
"""The ``learning`` preset's `DenseRewardConfig.success_bonus` on the humanoid tasks. Without it splits reached
100% oracle success and ended at 22%, lotus swung between 0% and 88%: the dense value is flat at its top, so
nothing kept a stochastic policy clear of the threshold's edge. With a bonus of 1 (the dense reward's whole
range: a passing step is worth twice the best failing one), measured on 2 CPU cores, one seed each: splits, lotus,
standing and kneeling held >= 90% to the end of their runs (README, "Learning curves"). CartPole and MountainCar
keep 0: their learning was measured, and is tested in CI, without it."""
OFFLINE_ITERATIONS = 400
"""0.51 M env-steps at the learning preset's 64 envs: past where kneeling is learned, a newcomer's quarter hour."""


def presets(task: str = TrainConfig.task) -> dict[str, TrainConfig]:
    """The named presets for ``task`` (its env family's PPO settings, `ppo_for`), sized for the devices JAX
    sees. In a multi-process job, join it first (`rewardax.distributed.initialize`, as experiments/train.py
    does): the device count is only known then.

    ``offline`` is what the experiments run when the preset's pretrained weights cannot be found (offline, no
    cache): the ``learning`` preset (dense ground truth, 64 envs) for `OFFLINE_ITERATIONS`, on `OFFLINE_TASK` for
    every humanoid task (no reward model learns a pose in a newcomer's patience on a CPU: the yes-token model
    trained from the teacher took 24 minutes to teach kneeling, README) and on the task itself for CartPole and
    MountainCar."""
    base = TrainConfig(task=task, ppo=ppo_for(task))
    devices = jax.device_count()

    def labels(per_device: int, **changes) -> RewardLearning:  # teacher queries fit the envs' pairs of frames
        return dataclasses.replace(base.reward_learning, labels_per_iteration=per_device * devices, **changes)

    bonus = 0.0 if task in CLASSIC else LEARNING_SUCCESS_BONUS
    learning = dataclasses.replace(base, reward=DenseRewardConfig(success_bonus=bonus),
                                   num_envs=-(-64 // devices) * devices,
                                   iterations=100_000, checkpoint_every=50, eval_every=20, eval_episodes=32,
                                   reward_learning=labels(-(-32 // devices)))
    return {
        "smoke": dataclasses.replace(
            base, reward=ClipRewardConfig(checkpoint="random", bfloat16=False), frame_size=32,
            num_envs=2 * devices, iterations=2,
            ppo=dataclasses.replace(base.ppo, num_steps=8, minibatches=2, epochs=2, hidden_sizes=(32, 32)),
            checkpoint_every=1, eval_every=0, eval_episodes=2,
            reward_learning=labels(1, capacity=8 * devices, updates=2, batch=4, held_out=8)),
        "cpu": dataclasses.replace(base, reward=ClipRewardConfig(SMALL_CLIP, bfloat16=False), num_envs=8 * devices,
                                   iterations=1000, eval_every=100, eval_episodes=4, reward_learning=labels(4)),
        "gpu": dataclasses.replace(base, num_envs=1024 * devices),
        "tpu": dataclasses.replace(base, num_envs=512 * devices),
        "paper": dataclasses.replace(base, reward=ClipRewardConfig(PAPER_CLIP, alpha=0.0),
                                     num_envs=-(-1024 // devices) * devices, iterations=500),  # 10 M env-steps
        "learning": learning,
        "offline": dataclasses.replace(learning, task=task if task in CLASSIC else OFFLINE_TASK,  # same PPO family
                                       iterations=OFFLINE_ITERATIONS),
    }


def default_preset() -> str:
    """The preset sized for this machine's accelerator."""
    return {"gpu": "gpu", "tpu": "tpu"}.get(jax.default_backend(), "cpu")
