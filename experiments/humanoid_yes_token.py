"""A humanoid learns to kneel from the sentence "a humanoid robot kneeling", scored by a generative VLM's
P("yes") (the VQAScore / RewardDance reward) instead of CLIP.

    python experiments/humanoid_yes_token.py                                     # InternVL3-1B, pointwise
    python experiments/humanoid_yes_token.py reward:yes-token --reward.mode pairwise   # against the goal pose
    python experiments/humanoid_yes_token.py --reward-every 4 reward:yes-token --reward.mode pairwise \
        --reward.reference best                                                 # vs the best frame so far
    python experiments/humanoid_yes_token.py --preset smoke                      # offline: a tiny random InternVL
    python experiments/humanoid_yes_token.py --preset smoke --train-reward       # ... that learns from a teacher
    python experiments/humanoid_yes_token.py --train-reward --reward-learning.lora-rank 16 \
        --reward-learning.teacher.mistake 0.1 --reward-learning.selection entropy   # LoRA, an erring teacher
    python experiments/humanoid_yes_token.py --preset smoke reward:yes-token --reward.checkpoint random \\
        --reward.bfloat16 False --reward.mode pairwise

All options of experiments/train.py apply; the reward's own options follow ``reward:yes-token``.
``--train-reward`` trains the model inside the step from a simulated teacher that reads the task's oracle
(``--reward-learning.*``: label budget, queries per iteration, uniform or entropy selection, the teacher's
mistakes, updates, full fine-tuning or LoRA); the progress bar shows the labels spent and the model's held-out
accuracy (``rm_acc``).
"""

import train

from rewardax import cli
from rewardax.rewards import YesTokenRewardConfig


def yes_token_reward(preset: str) -> YesTokenRewardConfig:
    """The preset's VLM: InternVL3-1B in bfloat16, or for the smoke preset a tiny random one (offline)."""
    if preset == "smoke":
        return YesTokenRewardConfig(checkpoint="random", bfloat16=False)
    return YesTokenRewardConfig()


if __name__ == "__main__":
    cli.run(train.main, task="kneeling", reward=yes_token_reward)
