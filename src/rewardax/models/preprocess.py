"""Frames -> CLIP image-tower input, in JAX (jittable, batched); and the one image resize of the package.

``preprocess_frames(frames, image_size)`` takes uint8 (or float in [0, 255]) frames ``[B, H, W, 3]`` of any size
and returns float32 ``[B, image_size, image_size, 3]``: bicubic resize, scale to [0, 1], normalise with the OpenAI
CLIP mean / std. The resize itself is `resize_images` (any height and width, bicubic or bilinear, PIL's uint8
arithmetic or one float pass), which `resize_frames` uses for its two modes:

- ``"squash"`` (default): resize the whole frame to a square, not keeping the aspect ratio (what VLM-RM does with
  its rendered frames);
- ``"center_crop"``: transformers' ``CLIPImageProcessor`` (and open_clip / OpenAI CLIP) recipe: resize so the
  shortest side is ``image_size`` (the long side becomes ``int(image_size * long / short)``), then crop the centre
  (offset ``(size - image_size) // 2``).

Difference from ``CLIPImageProcessor`` (PIL ``Image.resize(..., BICUBIC)`` on uint8). Both use the Keys cubic
kernel with a = -0.5, widened by the scale factor when downsampling (antialiasing), with the weights renormalised
over the taps inside the image at the borders: ``jax.image.resize(method="bicubic", antialias=True)`` is the same
filter. What differs is arithmetic: PIL resamples in two separable passes (horizontal, then vertical) and rounds +
clips to uint8 after *each* pass, so cubic overshoot is clipped before the second pass. With
``round_to_uint8=True`` (the default) this module does the same (two passes, round half up, clip to [0, 255]),
and matches ``CLIPImageProcessor`` exactly on all but ~0.1% of values, which are off by one uint8 level (rarely
two: 0.015-0.03 after normalisation), from PIL's 22-bit fixed-point weights. With ``round_to_uint8=False`` the
resize is one smooth float32 pass (differentiable in the pixels): on natural-looking frames it differs from PIL by
~0.5 level on average and 1-5 levels at most; on white noise, where overshoot clipping matters, up to ~30 levels
(0.45 after normalisation). Numbers measured by tests/test_clip.py::test_preprocess_matches_clip_image_processor.
``method="bilinear"`` is PIL's ``BILINEAR`` (the triangle kernel, widened when downsampling) in the same way
(tests/test_clip.py::test_resize_images_bilinear_matches_pil).
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def shortest_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(new_h, new_w)`` with the shortest side ``size`` and the other ``int(size * long / short)`` (as
    transformers' ``get_resize_output_image_size`` with ``default_to_square=False``)."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def _round_clip(x: jax.Array) -> jax.Array:
    return jnp.clip(jnp.floor(x + 0.5), 0.0, 255.0)  # PIL rounds half up


def resize_images(images: jax.Array, height: int, width: int, *,
                  method: Literal["bicubic", "bilinear"] = "bicubic", antialias: bool = True,
                  round_to_uint8: bool = True) -> jax.Array:
    """Resizes images ``[..., H, W, C]`` (uint8, or float in [0, 255]) to ``[..., height, width, C]``, float32 in
    [0, 255]; an axis already of its size is left as it is.

    Args:
      method: ``"bicubic"`` (Keys, a = -0.5) or ``"bilinear"`` (triangle), as PIL's ``BICUBIC`` / ``BILINEAR``.
      antialias: widen the kernel when downsampling (as PIL does).
      round_to_uint8: PIL's arithmetic: a horizontal pass, then a vertical one, each rounded half up and clipped to
        [0, 255], so the values are whole (``.astype(jnp.uint8)`` is exact); False for one float32 pass
        (differentiable in the pixels).
    """
    if method not in ("bicubic", "bilinear"):
        raise ValueError(f"unknown resize method {method!r}: 'bicubic' or 'bilinear'")
    *lead, h, w, c = images.shape
    x = images.astype(jnp.float32)
    resize = functools.partial(jax.image.resize, method=method, antialias=antialias)
    if round_to_uint8:
        if width != w:
            x = _round_clip(resize(x, (*lead, h, width, c)))
        if height != h:
            x = _round_clip(resize(x, (*lead, height, width, c)))
    elif (height, width) != (h, w):
        x = resize(x, (*lead, height, width, c))
    return x


def resize_frames(frames: jax.Array, image_size: int, mode: Literal["squash", "center_crop"] = "squash", *,
                  antialias: bool = True, round_to_uint8: bool = True) -> jax.Array:
    """Bicubic resize of ``[B, H, W, C]`` frames (values in [0, 255]) to ``[B, S, S, C]`` float32 in [0, 255]
    (`resize_images`), squashed to the square or resized by the shortest side and centre-cropped."""
    h, w = frames.shape[-3:-1]
    if mode == "squash":
        out_h, out_w = image_size, image_size
    elif mode == "center_crop":
        out_h, out_w = shortest_side_size(h, w, image_size)
    else:
        raise ValueError(f"unknown resize mode {mode!r}: 'squash' or 'center_crop'")
    x = resize_images(frames, out_h, out_w, antialias=antialias, round_to_uint8=round_to_uint8)
    if mode == "center_crop":
        if out_h < image_size or out_w < image_size:
            raise ValueError(f"cannot crop {image_size} from {(out_h, out_w)}")
        top, left = (out_h - image_size) // 2, (out_w - image_size) // 2
        x = x[:, top:top + image_size, left:left + image_size]
    return x


def preprocess_frames(frames: jax.Array, image_size: int = 224,
                      mode: Literal["squash", "center_crop"] = "squash", *,
                      mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, antialias: bool = True,
                      round_to_uint8: bool = True) -> jax.Array:
    """uint8 frames ``[B, H, W, 3]`` (any H, W) -> normalised float32 ``[B, image_size, image_size, 3]``.

    Args:
      frames: uint8 frames (or float in [0, 255]); a single ``[H, W, 3]`` frame is also accepted.
      image_size: the model's input size (``model.spec.image_size``).
      mode: ``"squash"`` (default: whole frame to a square) or ``"center_crop"`` (``CLIPImageProcessor``).
      mean, std: per-channel normalisation of [0, 1] values (default OpenAI CLIP's).
      antialias: widen the cubic kernel when downsampling (as PIL does).
      round_to_uint8: reproduce PIL's uint8 arithmetic (round + clip after each separable pass); False for one
        float32 pass (differentiable in the pixels).
    """
    single = frames.ndim == 3
    if single:
        frames = frames[None]
    if frames.shape[-1] != 3:
        raise ValueError(f"expected [B, H, W, 3] RGB frames, got {frames.shape}")
    x = resize_frames(frames, image_size, mode, antialias=antialias, round_to_uint8=round_to_uint8) / 255.0
    x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return x[0] if single else x
