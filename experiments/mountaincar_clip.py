"""Continuous MountainCar from the sentence "a car at the peak of the mountain, next to the yellow flag", scored
by CLIP (VLM-RM: texture decided whether CLIP could see the car, so the textured look is the default).

    python experiments/mountaincar_clip.py                            # CLIP, textured look, this machine's preset
    python experiments/mountaincar_clip.py --look default             # Gym's plain line drawing
    python experiments/mountaincar_clip.py --preset smoke             # offline: a tiny random CLIP
    python experiments/mountaincar_clip.py --preset learning          # the dense ground truth, for comparison

All options of experiments/train.py apply (the baseline prompt is "a car in the mountain").
"""

import train

from rewardax import cli

if __name__ == "__main__":
    cli.run(train.main, task="mountaincar")
