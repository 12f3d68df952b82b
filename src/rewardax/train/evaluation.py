"""The trainer's evaluations: deterministic episodes of the current policy, their metrics, and a video."""

from __future__ import annotations

import jax

from rewardax import distributed
from rewardax.rl import step as rl_step
from rewardax.rl.evaluate import make_evaluator
from rewardax.train.config import TrainConfig

VIDEO_MIN_SIZE = 160  # evaluation videos are enlarged to at least this width to stay legible


def make_evaluation(env, config: TrainConfig, mesh):
    """A batch of deterministic episodes (`rewardax.rl.evaluate`) on every process: their metrics, and on the
    main process the first episode as an mp4 with the reward curve and a PNG strip."""
    run = make_evaluator(env, config.ppo, config.frame_size, config.eval_episodes, config.reward_every,
                         config.reward_chunk)

    def evaluate(state, frozen_reward, run_dir, iteration):
        key = distributed.place(jax.random.fold_in(jax.random.key(config.seed), iteration), mesh)
        metrics, (frames, rewards, success) = run(state.params, state.obs_stats,
                                                  rl_step.current_reward(frozen_reward, state), key)
        if jax.process_index() == 0:
            from rewardax.train.video import episode_video, frame_strip  # imageio and ffmpeg only when filming

            enlarge = -(-VIDEO_MIN_SIZE // frames.shape[2])  # small training frames: nearest-neighbour zoom
            frames = frames.repeat(enlarge, axis=1).repeat(enlarge, axis=2)
            videos = run_dir / "videos"
            title = f"{config.task} · iteration {iteration}"
            episode_video(frames, rewards, success, videos / f"iteration_{iteration:06d}.mp4",
                          fps=round(1 / env.dt), title=title)
            frame_strip(frames, videos / f"iteration_{iteration:06d}.png", rewards=rewards)
        return metrics

    return evaluate
