"""Judging reward models on the host, before spending accelerator hours on them: metrics against the ground
truth (`rewardax.eval.metrics`: EPIC distance, Pearson, ROC-AUC, success rate at a threshold), labelled-frame
datasets (`rewardax.eval.dataset`), reward landscapes along an env's state path (`rewardax.eval.landscape`) and
the command that runs them all (``python -m rewardax.eval``). Importing it loads neither video nor plotting
libraries; the trainer's evaluation videos live in `rewardax.train.video`."""

from rewardax.eval.metrics import (canonicalise, epic_distance, epic_distance_transitions, pearson, roc_auc,
                                   success_rate_at_threshold)

__all__ = ["canonicalise", "epic_distance", "epic_distance_transitions", "pearson", "roc_auc",
           "success_rate_at_threshold"]
