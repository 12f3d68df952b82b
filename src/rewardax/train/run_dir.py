"""The run directory and the config it is bound to: config.json (with the git revision), the checks that a
resumed run, and every process of a job, runs the same config."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import time

import jax

from rewardax import distributed
from rewardax.rewards.config import REWARD_CONFIGS
from rewardax.train.config import RESUMABLE_CHANGES, TrainConfig


def run_dir_for(config: TrainConfig) -> pathlib.Path:
    """``config.run_dir``, or a new ``runs/<task>-<time>``."""
    if config.run_dir:
        return pathlib.Path(config.run_dir)
    return pathlib.Path("runs") / f"{config.task}-{time.strftime('%Y%m%d-%H%M%S')}"


def _comparable(config: dict) -> dict:
    """The fields that change a run's steps (how the reward model would learn, only if it learns)."""
    ignored = set(RESUMABLE_CHANGES) | (set() if config.get("train_reward") else {"reward_learning"})
    return {k: v for k, v in config.items() if k not in ignored}


def as_json(config: TrainConfig) -> dict:
    """The config as JSON, with the reward config's name (configs without fields look alike otherwise)."""
    fields = {**dataclasses.asdict(config), "reward": {"kind": config.reward.kind, **dataclasses.asdict(config.reward)}}
    return json.loads(json.dumps(fields))


def upgraded(saved: dict) -> dict:
    """A config.json's config as today's fields name it: ``scale_reward`` moved into ``ppo`` on 2026-12-03, and
    ``train_reward`` (off in every earlier run) came the same day; a reward field added since a run was saved
    takes its default (which is what the run used)."""
    saved = {"train_reward": False} | saved
    reward = saved.get("reward")
    if isinstance(reward, dict) and reward.get("kind") in REWARD_CONFIGS:
        defaults = json.loads(json.dumps(dataclasses.asdict(REWARD_CONFIGS[reward["kind"]]())))
        saved = saved | {"reward": defaults | reward}
    if "scale_reward" in saved:
        saved = {k: v for k, v in saved.items() if k != "scale_reward"} | {
            "ppo": {**saved["ppo"], "scale_reward": saved["scale_reward"]}}
    return saved


def _differences(a: dict, b: dict) -> list[str]:
    a, b = _comparable(a), _comparable(b)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_same_config_everywhere(config: TrainConfig) -> None:
    """Every process of a job must run the same config; all of them raise together if one differs."""
    if jax.process_count() == 1:
        return
    mine = as_json(config)
    main = json.loads(distributed.from_main(json.dumps(mine), limit=1 << 16))
    agree = distributed.gather(not _differences(main, mine))
    if not all(agree):
        others = [i for i, same in enumerate(agree) if not same]
        raise ValueError(f"process(es) {others} run another config than process 0"
                         + (f" ({', '.join(_differences(main, mine))} differ here)" if not agree[jax.process_index()]
                            else "") + ": start every process with the same command")


def check_resumable(run_dir: pathlib.Path, config: TrainConfig) -> None:
    """Refuse to resume a run with a config that would change the steps it takes."""
    path = run_dir / "config.json"
    if not path.exists():
        return
    changed = _differences(upgraded(json.loads(path.read_text())["config"]), as_json(config))
    if changed:
        raise ValueError(f"{run_dir} holds a run with a different config ({', '.join(changed)} differ); "
                         f"choose another --run-dir or resume with the same settings. Nothing was changed.")


def write_config(run_dir: pathlib.Path, config: TrainConfig) -> None:
    """config.json with the git revision (a run directory without a checkpoint takes the new config)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(
        {"config": as_json(config), "git_revision": git_revision(), "devices": jax.device_count(),
         "processes": jax.process_count(), "backend": jax.default_backend()}, indent=2))


def git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=pathlib.Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
