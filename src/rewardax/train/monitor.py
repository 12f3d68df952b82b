"""What the trainer watches in each iteration's metrics: divergence (a run that must stop), a reward model that
does not follow the task, and one being hacked (warnings)."""

from __future__ import annotations

import collections
import math
import statistics

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


class HackingMonitor:
    """Signs that the policy is hacking the reward model, over a sliding window of iterations (metrics ``hacking/…``):

    - ``hacking/reward_variance``: the variance of the rewards within an iteration (``reward_variance``), averaged
      over the window; ``hacking/variance_ratio``: that over its highest value so far. RewardDance's measure: a
      policy that found a frame the model scores high everywhere collapses it. A reward model that learns changes
      its scale as it goes, so its variance is measured in units of its variance on the held-out frames
      (``reward_model/held_out_variance``).
    - ``hacking/gap``: the proxy–oracle gap, how much faster the reward rose than the dense ground truth over the
      window (each as the change from the window's first half to its second, in units of its spread there).

    A warning (once, until the sign goes away) when the variance collapses below ``COLLAPSE`` of its peak while the
    oracle's success stays below one half (a policy that masters the task also makes every reward alike), and when
    the gap exceeds ``GAP`` with the reward rising and the ground truth falling. Only for reward models that look
    at frames: a ground-truth reward cannot be hacked.
    """

    WINDOW, COLLAPSE, GAP = 20, 0.1, 2.0

    def __init__(self, enabled: bool = True, window: int = WINDOW):
        self.enabled, self.window = enabled, window
        self.history = collections.deque(maxlen=window)
        self.peak, self.warned = 0.0, set()

    def __call__(self, metrics: dict) -> tuple[dict, list[str]]:
        """``(metrics to log, warnings)`` after an iteration with ``metrics``."""
        if not self.enabled or "reward_variance" not in metrics:
            return {}, []
        variance = metrics["reward_variance"] / metrics.get("reward_model/held_out_variance", 1.0)
        self.history.append((variance if math.isfinite(variance) else 0.0, metrics["reward"], metrics.get("oracle/dense", math.nan),
                             metrics.get("oracle/success", math.nan)))
        variance, reward, dense, success = (list(column) for column in zip(*self.history))
        mean_variance = statistics.fmean(variance)
        self.peak = max(self.peak, mean_variance)
        out = {"hacking/reward_variance": mean_variance,
               "hacking/variance_ratio": mean_variance / self.peak if self.peak > 0 else 1.0}
        signs = {}
        if len(self.history) == self.window:
            signs["variance"] = (out["hacking/variance_ratio"] < self.COLLAPSE
                                 and statistics.fmean(success) < 0.5)
            if all(math.isfinite(d) for d in dense):
                proxy, truth = _trend(reward), _trend(dense)
                out["hacking/gap"] = proxy - truth
                signs["gap"] = out["hacking/gap"] > self.GAP and proxy > 0 > truth
        warnings = []
        for sign, shown in signs.items():
            if shown and sign not in self.warned:
                warnings.append(self._warning(sign, out, statistics.fmean(success)))
            (self.warned.add if shown else self.warned.discard)(sign)
        return out, warnings

    def _warning(self, sign: str, out: dict, success: float) -> str:
        if sign == "variance":
            return (f"warning: possible reward hacking: the reward's variance within an iteration fell to "
                    f"{out['hacking/variance_ratio']:.0%} of its peak over the last {self.window} iterations while "
                    f"oracle success is {success:.0%}: the policy may have found frames the reward model scores alike "
                    f"(a larger model, more labels or a lower learning rate may help)")
        return (f"warning: possible reward hacking: over the last {self.window} iterations the reward rose while the "
                f"task's dense ground truth fell (proxy-oracle gap {out['hacking/gap']:.1f}): the policy is learning "
                f"what the reward model likes, not the task")


def _trend(values: list[float]) -> float:
    """The change from the first half of ``values`` to the second, in units of their spread (0 if constant)."""
    half = len(values) // 2
    spread = statistics.pstdev(values)
    change = statistics.fmean(values[half:]) - statistics.fmean(values[:half])
    return change / spread if spread > 1e-12 else 0.0
