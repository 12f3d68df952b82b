"""Evaluation videos: composed frames keep the render, show reward and success per step, and files read back."""

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from rewardax.eval import compose_frames, episode_video, frame_strip
from rewardax.eval.video import CURVE_COLOUR, MARKER_COLOUR, PADDING, SUCCESS_BAND_HEIGHT, SUCCESS_COLOUR

STEPS, HEIGHT, WIDTH = 40, 64, 96


def make_episode(steps=STEPS, height=HEIGHT, width=WIDTH):
    """Random frames, a rising reward and success in the second half."""
    frames = np.random.default_rng(0).integers(0, 256, (steps, height, width, 3), dtype=np.uint8)
    rewards = np.linspace(0.1, 0.3, steps) + 0.01 * np.sin(np.arange(steps))
    success = np.arange(steps) >= steps // 2
    return frames, rewards, success


def columns_with_colour(image, colour):
    return np.flatnonzero(np.all(image == colour, axis=-1).any(axis=0))


def test_rendered_frame_is_unchanged_on_top():
    frames, rewards, success = make_episode()
    composed = compose_frames(frames, rewards, success, title="a humanoid robot kneeling")
    assert composed.dtype == np.uint8
    assert composed.shape[0] == STEPS and composed.shape[2:] == (WIDTH, 3) and composed.shape[1] > HEIGHT
    np.testing.assert_array_equal(composed[:, :HEIGHT], frames)


def test_marker_moves_and_curve_grows_with_the_step():
    frames, rewards, success = make_episode()
    strips = compose_frames(frames, rewards, success)[:, HEIGHT:]
    assert not np.array_equal(strips[5], strips[30])
    marker_columns = [columns_with_colour(strips[step], MARKER_COLOUR).mean() for step in (5, 20, 35)]
    assert marker_columns == sorted(marker_columns) and len(set(marker_columns)) == 3
    curve_pixels = [np.all(strips[step] == CURVE_COLOUR, axis=-1).sum() for step in (5, 20, 35)]
    assert curve_pixels == sorted(curve_pixels) and len(set(curve_pixels)) == 3


@pytest.mark.parametrize("success_step", [8, 25])
def test_success_step_is_marked_in_the_band_under_its_marker(success_step):
    frames, rewards, _ = make_episode()
    never = np.zeros(STEPS, bool)
    once = never.copy()
    once[success_step] = True
    without_success = compose_frames(frames, rewards, never)
    last_without, last_with = without_success[-1], compose_frames(frames, rewards, once)[-1]

    rows, columns = np.nonzero(np.any(last_with != last_without, axis=-1))
    assert rows.min() >= last_with.shape[0] - SUCCESS_BAND_HEIGHT - PADDING, "the mark belongs in the bottom band"
    assert np.all(last_with[rows, columns] == SUCCESS_COLOUR)
    assert not np.any(np.all(last_without[rows, columns] == SUCCESS_COLOUR, axis=-1))
    marker_column = columns_with_colour(without_success[success_step, HEIGHT:], MARKER_COLOUR).mean()
    assert abs(columns.mean() - marker_column) <= 1


def test_success_is_only_shown_up_to_the_current_step():
    frames, rewards, success = make_episode()
    strips = compose_frames(frames, rewards, success)[:, HEIGHT:]
    assert columns_with_colour(strips[STEPS // 2 - 1], SUCCESS_COLOUR).size == 0
    assert columns_with_colour(strips[STEPS - 1], SUCCESS_COLOUR).size > 0


def test_single_frame_and_constant_reward_episode():
    frames, _, _ = make_episode(steps=1)
    composed = compose_frames(frames, np.zeros(1), np.ones(1))
    np.testing.assert_array_equal(composed[0, :HEIGHT], frames[0])


def test_episode_video_reads_back_with_every_frame(tmp_path):
    frames, rewards, success = make_episode(steps=12, height=48, width=63)  # odd width: padded for H.264
    composed = compose_frames(frames, rewards, success, title="kneeling")
    path = episode_video(frames, rewards, success, tmp_path / "videos" / "episode.mp4", fps=10, title="kneeling")
    assert path == tmp_path / "videos" / "episode.mp4" and path.is_file()

    read_back = np.stack(imageio.mimread(path))
    height, width = composed.shape[1:3]
    assert read_back.shape == (12, height + height % 2, width + width % 2, 3)
    # H.264 is lossy; the picture must still be the one composed.
    error = np.abs(read_back[:, :height, :width].astype(int) - composed.astype(int)).mean()
    assert error < 20


def test_frame_strip_has_count_frames_side_by_side(tmp_path):
    frames, rewards, _ = make_episode()
    path = frame_strip(frames, tmp_path / "stills" / "strip.png", count=5, rewards=rewards)
    image = np.asarray(Image.open(path))
    assert image.shape[1] == 5 * WIDTH and image.shape[0] > HEIGHT
    np.testing.assert_array_equal(image[:HEIGHT, :WIDTH], frames[0])
    np.testing.assert_array_equal(image[:HEIGHT, -WIDTH:], frames[-1])

    short = frame_strip(frames[:3], tmp_path / "short.png", count=8)
    assert Image.open(short).width == 3 * WIDTH


@pytest.mark.parametrize(
    ("rewards_steps", "success_steps", "message"),
    [(STEPS - 1, STEPS, "rewards must have one value per frame: frames has 40 steps"),
     (STEPS, STEPS + 2, "success must have one value per frame: frames has 40 steps")],
)
def test_mismatched_lengths_are_named(tmp_path, rewards_steps, success_steps, message):
    frames, _, _ = make_episode()
    with pytest.raises(ValueError, match=message):
        episode_video(frames, np.zeros(rewards_steps), np.zeros(success_steps), tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    ("frames", "message"),
    [(np.zeros((4, 8, 8, 3), np.float32), "frames must be uint8 \\[T, H, W, 3\\]; got float32"),
     (np.zeros((4, 8, 8), np.uint8), "frames must be uint8 \\[T, H, W, 3\\]"),
     (np.zeros((0, 8, 8, 3), np.uint8), "at least one frame")],
)
def test_bad_frames_are_rejected(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        frame_strip(frames, tmp_path / "x.png")


def test_non_finite_rewards_are_rejected():
    frames, rewards, success = make_episode()
    rewards[3] = np.nan
    with pytest.raises(ValueError, match="non-finite at steps \\[3\\]"):
        compose_frames(frames, rewards, success)
