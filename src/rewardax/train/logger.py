"""Where a run's metrics go: metrics.jsonl, TensorBoard and (optionally) Weights & Biases."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

from rewardax.train.config import TrainConfig


class Logger:
    """metrics.jsonl, TensorBoard and (optionally) Weights & Biases, on the main process only."""

    def __init__(self, run_dir: pathlib.Path, config: TrainConfig, enabled: bool):
        self.run_dir, self.config, self.enabled = run_dir, config, enabled

    def __enter__(self):
        if self.enabled:
            from tensorboardX import SummaryWriter

            self.jsonl = open(self.run_dir / "metrics.jsonl", "a")
            self.tensorboard = SummaryWriter(str(self.run_dir / "tb"))
            self.wandb = None
            if self.config.wandb:
                import wandb

                self.wandb = wandb.init(project="rewardax", dir=str(self.run_dir),
                                        config=dataclasses.asdict(self.config), resume="allow")
        return self

    def scalars(self, metrics: dict) -> None:
        if not self.enabled:
            return
        step = int(metrics["iteration"])
        self.jsonl.write(json.dumps(metrics) + "\n")
        self.jsonl.flush()
        for name, value in metrics.items():
            if math.isfinite(value):  # undefined values (e.g. AUC before any success) stay in metrics.jsonl only
                self.tensorboard.add_scalar(name, value, step)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def __exit__(self, *exc):
        if self.enabled:
            self.jsonl.close()
            self.tensorboard.close()
            if self.wandb is not None:
                self.wandb.finish()
