"""The flagship run: a humanoid learns the side splits from the sentence "a humanoid robot practicing
gymnastics, doing the side splits", scored by CLIP (VLM-RM).

    python experiments/humanoid_splits.py                  # preset for this machine (tpu, gpu or cpu)
    python experiments/humanoid_splits.py --preset smoke   # offline check of the whole pipeline

All options of experiments/train.py apply.
"""

import train

from rewardax import cli

if __name__ == "__main__":
    cli.run(train.main, task="splits")
