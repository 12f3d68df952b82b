"""Evaluation videos: composed frames keep the render, show reward and success per step, and files read back.

The strip's artists are found by the module's named colours; where they are is judged against each other
(the marker at a step, the curve's highest point), not against pixel positions."""

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from rewardax.train.video import (CURVE_COLOUR, MARKER_COLOUR, SUCCESS_COLOUR, compose_frames, episode_video,
                                  frame_strip)

STEPS, HEIGHT, WIDTH = 40, 64, 96


def make_episode(steps=STEPS, height=HEIGHT, width=WIDTH):
    """Random frames, a rising reward and success in the second half."""
    frames = np.random.default_rng(0).integers(0, 256, (steps, height, width, 3), dtype=np.uint8)
    rewards = np.linspace(0.1, 0.3, steps) + 0.01 * np.sin(np.arange(steps))
    success = np.arange(steps) >= steps // 2
    return frames, rewards, success


def pixels_with_colour(image, colour):
    return np.all(image == colour, axis=-1)


def columns_with_colour(image, colour):
    return np.flatnonzero(pixels_with_colour(image, colour).any(axis=0))


def marker_column(strip):
    return columns_with_colour(strip, MARKER_COLOUR).mean()


@pytest.mark.parametrize("width", [48, 63, WIDTH, 229])
def test_rendered_frame_is_unchanged_on_top(width):
    frames, rewards, success = make_episode(steps=5, width=width)
    composed = compose_frames(frames, rewards, success, title="a humanoid robot kneeling")
    assert composed.dtype == np.uint8
    assert composed.shape[0] == 5 and composed.shape[2:] == (width, 3) and composed.shape[1] > HEIGHT
    np.testing.assert_array_equal(composed[:, :HEIGHT], frames)


def test_marker_moves_and_curve_grows_with_the_step():
    frames, rewards, success = make_episode()
    strips = compose_frames(frames, rewards, success)[:, HEIGHT:]
    assert not np.array_equal(strips[5], strips[30])
    marker_columns = [marker_column(strips[step]) for step in (5, 20, 35)]
    assert marker_columns == sorted(marker_columns) and len(set(marker_columns)) == 3
    curve_pixels = [pixels_with_colour(strips[step], CURVE_COLOUR).sum() for step in (5, 20, 35)]
    assert curve_pixels == sorted(curve_pixels) and len(set(curve_pixels)) == 3
    assert columns_with_colour(strips[5], CURVE_COLOUR).max() <= marker_columns[0] + 1, "the curve is drawn so far"


def test_curve_rises_where_the_reward_rises():
    peak = 25
    frames, _, success = make_episode()
    rewards = -np.abs(np.arange(STEPS) - peak).astype(float)  # rises up to the peak step, falls after it
    strips = compose_frames(frames, rewards, success)[:, HEIGHT:]
    curve = pixels_with_colour(strips[-1], CURVE_COLOUR)
    columns = np.flatnonzero(curve.any(axis=0))
    top_row = np.array([np.flatnonzero(curve[:, column]).min() for column in columns])  # image rows grow downwards
    highest = columns[top_row == top_row.min()].mean()
    assert abs(highest - marker_column(strips[peak])) <= 2
    rising, falling = top_row[columns < highest], top_row[columns > highest]
    assert np.all(np.diff(rising) <= 0) and np.all(np.diff(falling) >= 0)
    assert rising[0] > top_row.min() + 10 and falling[-1] > top_row.min() + 5


@pytest.mark.parametrize("success_step", [8, 25])
def test_success_step_is_marked_in_the_band_under_its_marker(success_step):
    frames, rewards, _ = make_episode()
    never = np.zeros(STEPS, bool)
    once = never.copy()
    once[success_step] = True
    without_success = compose_frames(frames, rewards, never)[:, HEIGHT:]
    last_without, last_with = without_success[-1], compose_frames(frames, rewards, once)[-1, HEIGHT:]

    rows, columns = np.nonzero(np.any(last_with != last_without, axis=-1))
    curve_rows = np.nonzero(pixels_with_colour(last_without, CURVE_COLOUR))[0]
    assert rows.size and rows.min() > curve_rows.max(), "the mark belongs in the band under the reward curve"
    assert np.all(last_with[rows, columns] == SUCCESS_COLOUR)
    assert not np.any(pixels_with_colour(last_without[rows, columns], SUCCESS_COLOUR))
    assert abs(columns.mean() - marker_column(without_success[success_step])) <= 1


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
