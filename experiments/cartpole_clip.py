"""CartPole from the sentence "pole vertically upright on top of the cart", scored by CLIP (VLM-RM's first check
of the CLIP reward, before the humanoid).

    python experiments/cartpole_clip.py                               # CLIP, the preset for this machine
    python experiments/cartpole_clip.py --preset smoke                # offline: a tiny random CLIP
    python experiments/cartpole_clip.py --preset learning             # the dense ground truth, for comparison
    python experiments/cartpole_clip.py reward:clip --reward.alpha 0.5 --reward.checkpoint openai/clip-vit-base-patch32
    python experiments/cartpole_clip.py --preset learning --train-reward --frame-size 112 --ppo.scale-reward True \
        --reward-learning.updates 8 --reward-learning.learning-rate 1e-3 \
        reward:yes-token --reward.checkpoint random --reward.bfloat16 False --reward.score log_odds
        # a yes-token model that starts knowing nothing learns from the teacher while PPO learns from it

All options of experiments/train.py apply (the baseline prompt is "pole and cart").
"""

import train

from rewardax import cli

if __name__ == "__main__":
    cli.run(train.main, task="cartpole")
