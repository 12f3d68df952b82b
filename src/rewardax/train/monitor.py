"""What the trainer watches in each iteration's metrics: divergence (a run that must stop) and a reward model
that does not follow the task (a warning)."""

from __future__ import annotations

import math

from rewardax.rl.step import MAY_BE_UNDEFINED


def non_finite(metrics: dict) -> list[str]:
    """The metrics that diverged: every non-finite value except the statistics that are undefined by nature
    in some iterations (`rewardax.rl.step.MAY_BE_UNDEFINED`: the reward's agreement with the ground truth
    before any success, or of a constant reward). A trainable reward model's own losses and parameter norm
    (``reward_model/param_norm``) are checked like the agent's."""
    return sorted(k for k, v in metrics.items() if not math.isfinite(v) and k not in MAY_BE_UNDEFINED)


class RewardModelCheck:
    """Warns once when the reward model's rewards stay uncorrelated with the task's ground truth: the VLM-RM
    failure users report as "the agent learns nothing" (a model too small, a prompt or look it cannot see)."""

    WINDOW, THRESHOLD = 5, 0.1

    def __init__(self, enabled: bool):
        """``enabled`` for models that look at frames (the VLMs): the ground-truth rewards agree by definition."""
        self.enabled, self.recent, self.warned = enabled, [], False

    def __call__(self, metrics: dict) -> str | None:
        pearson = metrics.get("reward_model/pearson_dense", math.nan)
        if not self.enabled or self.warned or not math.isfinite(pearson):
            return None
        self.recent = (self.recent + [pearson])[-self.WINDOW:]
        if len(self.recent) < self.WINDOW or max(abs(r) for r in self.recent) >= self.THRESHOLD:
            return None
        self.warned = True
        return (f"warning: the reward model's reward hardly follows the task: its Pearson correlation with the dense "
                f"ground truth stayed below {self.THRESHOLD} for {self.WINDOW} iterations (last {pearson:+.3f}, "
                f"ROC-AUC against oracle success {metrics.get('reward_model/auc_success', math.nan):.2f}). A larger "
                f"CLIP, another prompt or alpha, or the paper look may help; experiments/score_poses.py shows what "
                f"the model sees in the canonical poses.")
