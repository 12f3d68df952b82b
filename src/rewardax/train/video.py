"""Evaluation videos: rendered frames with the episode's reward curve and oracle success underneath.

The trainer rolls out evaluation episodes on the device and hands the host numpy arrays: frames
``uint8 [T, H, W, 3]``, the reward model's reward per step ``[T]`` and the oracle success per step ``[T]``.
Watching the reward next to the picture is how one sees whether the reward model rewards the task or
something else, so every video frame is the rendered frame with a strip under it::

    +----------------------------+
    |       rendered frame       |   pixels unchanged
    +----------------------------+
    | title (wrapped, <= 2 lines)|
    | step 38/100  reward 0.213  success
    | 0.25 |      ___/    |      |   reward curve so far, y scaled to the episode's min/max,
    | 0.19 |_____/        |      |   vertical marker at the current step
    |      |      ████    |      |   green band where the oracle says success (so far)
    +----------------------------+

Drawing uses numpy and PIL only, with PIL's built-in default font, so no font files or plotting library
are needed on a training host.
"""

from __future__ import annotations

import os
import pathlib
import warnings

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND_COLOUR = (24, 24, 28)
TEXT_COLOUR = (230, 230, 230)
AXIS_COLOUR = (90, 90, 98)
CURVE_COLOUR = (80, 170, 255)
MARKER_COLOUR = (255, 150, 0)
SUCCESS_COLOUR = (60, 200, 90)
FAILURE_BAND_COLOUR = (55, 55, 62)

PADDING = 3
SUCCESS_BAND_HEIGHT = 6
TITLE_MAX_LINES = 2
MIN_WIDTH = 48  # narrower frames leave no room for the reward axis labels


def compose_frames(frames, rewards, success, title: str | None = None) -> np.ndarray:
    """Stack each rendered frame on top of a strip showing the reward curve and success up to that step.

    Args:
      frames: uint8 ``[T, H, W, 3]`` rendered frames.
      rewards: ``[T]`` reward of each frame.
      success: ``[T]`` oracle success of each frame (bool or 0/1).
      title: text shown at the top of the strip, e.g. the task prompt.

    Returns:
      uint8 ``[T, H + strip height, W, 3]``; the top ``H`` rows of frame ``t`` are ``frames[t]``.
    """
    frames = _check_frames(frames)
    rewards = _check_per_step("rewards", rewards, len(frames)).astype(np.float64)
    success = _check_per_step("success", success, len(frames)).astype(bool)
    if not np.all(np.isfinite(rewards)):
        bad_steps = np.flatnonzero(~np.isfinite(rewards)).tolist()
        raise ValueError(f"rewards must be finite to be plotted; non-finite at steps {bad_steps}")

    font = ImageFont.load_default()
    width = frames.shape[2]
    title_lines = _wrap_to_width(title, font, width - 2 * PADDING) if title else []
    layout = _StripLayout(font, width, frames.shape[1], len(title_lines), rewards)
    background = _draw_background(layout, title_lines)

    composed = []
    for step in range(len(frames)):
        strip = background.copy()
        _draw_step(ImageDraw.Draw(strip), layout, rewards, success, step)
        composed.append(np.concatenate([frames[step], np.asarray(strip)], axis=0))
    return np.stack(composed)


def episode_video(frames, rewards, success, path, fps: int = 30, title: str | None = None) -> pathlib.Path:
    """Write an H.264 mp4 of the episode with its reward curve and oracle success; return the path."""
    composed = _pad_to_even_size(compose_frames(frames, rewards, success, title))
    path = _prepare_path(path)
    with warnings.catch_warnings():
        # JAX warns that forking a multithreaded process is unsafe; ffmpeg is a separate program, so it is fine.
        warnings.filterwarnings("ignore", message="os.fork")
        imageio.mimwrite(path, composed, fps=fps, macro_block_size=1)
    return path


def frame_strip(frames, path, count: int = 8, rewards=None) -> pathlib.Path:
    """Write a PNG of ``count`` evenly spaced frames side by side, captioned with step (and reward); return the path.

    A still overview of an episode fits in a report or a TensorBoard image where a video does not.
    Episodes shorter than ``count`` show every frame.
    """
    frames = _check_frames(frames)
    if rewards is not None:
        rewards = _check_per_step("rewards", rewards, len(frames))
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")

    steps = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    row = np.concatenate([frames[step] for step in steps], axis=1)
    font = ImageFont.load_default()
    caption_height = _line_height(font) + 2 * PADDING
    image = Image.new("RGB", (row.shape[1], row.shape[0] + caption_height), BACKGROUND_COLOUR)
    image.paste(Image.fromarray(row), (0, 0))
    draw = ImageDraw.Draw(image)
    frame_width = frames.shape[2]
    for i, step in enumerate(steps):
        caption = f"step {step + 1}" + ("" if rewards is None else f"  reward {_format_reward(rewards[step])}")
        draw.text((i * frame_width + PADDING, row.shape[0] + PADDING), caption, fill=TEXT_COLOUR, font=font)

    path = _prepare_path(path)
    image.save(path, format="PNG")
    return path


class _StripLayout:
    """Where things go in the strip under the frame, and how steps and rewards map to pixels."""

    def __init__(self, font, width: int, frame_height: int, title_line_count: int, rewards: np.ndarray):
        self.font = font
        self.width = width
        self.line_height = _line_height(font)
        self.title_top = PADDING
        self.status_top = self.title_top + title_line_count * self.line_height
        self.plot_top = self.status_top + self.line_height + PADDING
        self.plot_bottom = self.plot_top + max(frame_height // 4, 40)
        self.band_top = self.plot_bottom + PADDING
        self.height = self.band_top + SUCCESS_BAND_HEIGHT + PADDING

        self.reward_min, self.reward_max = float(rewards.min()), float(rewards.max())
        self.labels = (_format_reward(self.reward_max), _format_reward(self.reward_min))
        label_width = max(font.getlength(label) for label in self.labels)
        self.plot_left = PADDING + int(np.ceil(label_width)) + PADDING
        self.plot_right = width - 1 - PADDING
        self.num_steps = len(rewards)

    def step_x(self, step: float) -> float:
        if self.num_steps == 1:
            return float(self.plot_left)
        return self.plot_left + step * (self.plot_right - self.plot_left) / (self.num_steps - 1)

    def reward_y(self, reward: float) -> float:
        if self.reward_max == self.reward_min:
            return (self.plot_top + self.plot_bottom) / 2
        fraction = (reward - self.reward_min) / (self.reward_max - self.reward_min)
        return self.plot_bottom - fraction * (self.plot_bottom - self.plot_top)


def _draw_background(layout: _StripLayout, title_lines: list[str]) -> Image.Image:
    """The parts of the strip that are the same at every step: title, axes, min/max labels, empty band."""
    strip = Image.new("RGB", (layout.width, layout.height), BACKGROUND_COLOUR)
    draw = ImageDraw.Draw(strip)
    for i, line in enumerate(title_lines):
        draw.text((PADDING, layout.title_top + i * layout.line_height), line, fill=TEXT_COLOUR, font=layout.font)
    max_label, min_label = layout.labels
    draw.text((PADDING, layout.plot_top), max_label, fill=TEXT_COLOUR, font=layout.font)
    draw.text((PADDING, layout.plot_bottom - layout.line_height), min_label, fill=TEXT_COLOUR, font=layout.font)
    draw.line([(layout.plot_left - 1, layout.plot_top), (layout.plot_left - 1, layout.plot_bottom)], fill=AXIS_COLOUR)
    draw.line([(layout.plot_left - 1, layout.plot_bottom), (layout.plot_right, layout.plot_bottom)], fill=AXIS_COLOUR)
    band_bottom = layout.band_top + SUCCESS_BAND_HEIGHT - 1
    draw.rectangle([layout.plot_left, layout.band_top, layout.plot_right, band_bottom], fill=FAILURE_BAND_COLOUR)
    return strip


def _draw_step(draw: ImageDraw.ImageDraw, layout: _StripLayout, rewards, success, step: int) -> None:
    """The parts that grow with the episode: curve and success band up to ``step``, marker and status text."""
    points = [(layout.step_x(i), layout.reward_y(rewards[i])) for i in range(step + 1)]
    if len(points) > 1:
        draw.line(points, fill=CURVE_COLOUR, width=1)

    band_bottom = layout.band_top + SUCCESS_BAND_HEIGHT - 1
    half_step = (layout.step_x(1) - layout.step_x(0)) / 2 if layout.num_steps > 1 else 0.0
    for i in np.flatnonzero(success[: step + 1]):
        left = max(layout.step_x(i) - half_step, layout.plot_left)
        right = min(layout.step_x(i) + half_step, layout.plot_right)
        draw.rectangle([round(left), layout.band_top, round(right), band_bottom], fill=SUCCESS_COLOUR)

    marker_x = round(layout.step_x(step))
    draw.line([(marker_x, layout.plot_top), (marker_x, band_bottom)], fill=MARKER_COLOUR)
    x, y = points[-1]
    draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=CURVE_COLOUR)

    status = f"step {step + 1}/{layout.num_steps}  reward {_format_reward(rewards[step])}"
    draw.text((PADDING, layout.status_top), status, fill=TEXT_COLOUR, font=layout.font)
    if success[step]:
        success_x = layout.width - PADDING - layout.font.getlength("success")
        draw.text((success_x, layout.status_top), "success", fill=SUCCESS_COLOUR, font=layout.font)


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3]; got {frames.dtype} {list(frames.shape)}")
    if len(frames) == 0:
        raise ValueError("frames is empty; an episode needs at least one frame")
    if frames.shape[2] < MIN_WIDTH:
        raise ValueError(f"frames are {frames.shape[2]} px wide; the reward strip needs at least {MIN_WIDTH}: "
                         f"enlarge them first (e.g. np.repeat along the height and width axes)")
    return frames


def _check_per_step(name: str, values, num_frames: int) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (num_frames,):
        raise ValueError(
            f"{name} must have one value per frame: frames has {num_frames} steps but {name} has shape "
            f"{list(values.shape)} (expected [{num_frames}])"
        )
    return values


def _wrap_to_width(text: str, font, width: float) -> list[str]:
    """Greedy word wrap measured in pixels; text beyond ``TITLE_MAX_LINES`` lines is cut with '...'."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > TITLE_MAX_LINES:
        lines = lines[:TITLE_MAX_LINES]
        lines[-1] += " ..."
    return [_truncate_to_width(line, font, width) for line in lines]


def _truncate_to_width(line: str, font, width: float) -> str:
    if font.getlength(line) <= width:
        return line
    while line and font.getlength(line + "...") > width:
        line = line[:-1]
    return line.rstrip() + "..."


def _line_height(font) -> int:
    return font.getbbox("Ag")[3] + 1


def _format_reward(value: float) -> str:
    return f"{float(value):.3g}"


def _pad_to_even_size(frames: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even width and height; pad one black row/column rather than resample."""
    _, height, width, _ = frames.shape
    return np.pad(frames, [(0, 0), (0, height % 2), (0, width % 2), (0, 0)])


def _prepare_path(path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
