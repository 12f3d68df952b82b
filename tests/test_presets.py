"""Presets size a run for a machine (env counts, CLIP checkpoints, iterations) and the task brings its env family's
PPO settings, so the real settings (network sizes, rollout lengths) run here shrunk to a few envs: the issue's
repro (the cpu preset) runs past an episode end, which is what met the physics blow-up of issue 7 in its first
iteration.
"""

import dataclasses
import json
import pathlib
import sys


import rewardax.envs as envs
from rewardax.train.config import presets
from rewardax.train.monitor import non_finite

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "experiments"))

EPISODE = envs.make("kneeling").episode_length


def iterations_past_an_episode_end(config):
    return EPISODE // config.ppo.num_steps + 1


def logged(run_dir):
    return [json.loads(line) for line in (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def assert_trained_across_an_episode_end(lines, iterations):
    assert [m["iteration"] for m in lines] == list(range(1, iterations + 1))
    assert any(m["episode_end"] > 0 for m in lines), "no episode ended"
    for m in lines:
        bad = non_finite(m)
        assert not bad and m["env/non_finite_resets"] == 0, (m["iteration"], bad)


def test_the_command_line_takes_the_task_family_ppo_and_the_preset_machine_size():
    import train as train_script
    from rewardax.train import CLASSIC_PPO, HUMANOID_PPO

    for argv, ppo in ((["--preset", "learning", "--task", "cartpole"], CLASSIC_PPO),
                      (["--preset", "learning", "--task", "kneeling"], HUMANOID_PPO),
                      (["--preset", "paper"], HUMANOID_PPO)):
        config, _ = train_script.parse(argv)
        assert config.ppo == ppo, argv
    mountaincar, _ = train_script.parse(["--preset", "learning"], task="mountaincar")  # a script's own task
    assert not mountaincar.ppo.scale_reward and mountaincar.num_envs == presets("kneeling")["learning"].num_envs
    override, _ = train_script.parse(["--preset", "learning", "--task", "cartpole", "--ppo.scale-reward"])
    assert override.ppo.scale_reward  # an option given on the command line still wins


def test_the_learning_preset_rewards_passing_a_humanoid_pose_with_a_bonus_and_keeps_classic_control_plain():
    """The success bonus that made splits and lotus hold what they learn; CartPole and MountainCar were measured
    (and CI tests them) without it."""
    from rewardax.train.config import LEARNING_SUCCESS_BONUS

    assert LEARNING_SUCCESS_BONUS == 1.0
    for task in envs.TASKS:
        assert presets(task)["learning"].reward.success_bonus == LEARNING_SUCCESS_BONUS, task
    for task in ("cartpole", "mountaincar"):
        assert presets(task)["learning"].reward.success_bonus == 0.0, task


def test_the_offline_preset_learns_a_humanoid_pose_from_its_ground_truth_or_the_classic_task_itself():
    from rewardax.rewards import DenseRewardConfig
    from rewardax.train.config import OFFLINE_ITERATIONS, OFFLINE_TASK

    for task, expected in (("splits", OFFLINE_TASK), ("lotus", OFFLINE_TASK), ("kneeling", OFFLINE_TASK),
                           ("cartpole", "cartpole"), ("mountaincar", "mountaincar")):
        offline, learning = presets(task)["offline"], presets(expected)["learning"]
        assert offline == dataclasses.replace(learning, iterations=OFFLINE_ITERATIONS), task
        assert offline.task == expected and isinstance(offline.reward, DenseRewardConfig)


def test_the_issue_repro_trains(tmp_path):
    """`python experiments/train.py --preset cpu --reward oracle --task kneeling --num-envs 8 --iterations 2`
    (today `... --iterations 2 reward:oracle`) stopped in its first iteration with non-finite metrics; run long
    enough to cross an episode end."""
    import train as train_script

    iterations = iterations_past_an_episode_end(presets("kneeling")["cpu"])
    summary = train_script.main(["--preset", "cpu", "--task", "kneeling", "--num-envs", "8",
                                 "--iterations", str(iterations), "--eval-episodes", "2", "--frame-size", "32",
                                 "--run-dir", str(tmp_path), "reward:oracle"])
    assert summary["stopped"] == "finished"
    assert_trained_across_an_episode_end(logged(tmp_path), iterations)
