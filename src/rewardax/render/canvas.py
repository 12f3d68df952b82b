"""Flat 2-D drawing in JAX for the classic-control scenes: shapes as per-pixel masks over world coordinates.

    x, y = canvas.grid(64, 96, (-2.9, 2.9), (-1.0, 2.4))    # world coordinates of every pixel centre, y up
    image = canvas.fill(x, (1.0, 1.0, 1.0))                  # a white [H, W, 3] float image
    image = canvas.paint(image, canvas.box(x, y, (0.0, 0.0), (0.25, 0.15)), (0.1, 0.1, 0.1))
    rgb = canvas.to_uint8(image)

Everything is a pure function of arrays (jittable, vmappable); there is no anti-aliasing (a pixel is in a
shape or not), which at 224² keeps edges within a pixel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Colour = tuple[float, float, float]


def grid(height: int, width: int, x_range: tuple[float, float], y_range: tuple[float, float]):
    """``(x, y)``, each ``[height, width]``: the world coordinates of the pixel centres (row 0 at the top)."""
    xs = x_range[0] + (jnp.arange(width) + 0.5) / width * (x_range[1] - x_range[0])
    ys = y_range[1] - (jnp.arange(height) + 0.5) / height * (y_range[1] - y_range[0])
    return jnp.broadcast_to(xs[None, :], (height, width)), jnp.broadcast_to(ys[:, None], (height, width))


def fill(x: jax.Array, colour: Colour) -> jax.Array:
    """A ``[H, W, 3]`` float image of one colour, the shape of the grid ``x``."""
    return jnp.broadcast_to(jnp.asarray(colour, jnp.float32), x.shape + (3,))


def box(x, y, centre, half_size, angle=0.0) -> jax.Array:
    """Pixels inside a rectangle of ``half_size`` (along its own axes) centred at ``centre``, turned by ``angle``
    radians counter-clockwise."""
    c, s = jnp.cos(angle), jnp.sin(angle)
    dx, dy = x - centre[0], y - centre[1]
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (jnp.abs(u) <= half_size[0]) & (jnp.abs(v) <= half_size[1])


def disk(x, y, centre, radius) -> jax.Array:
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2


def paint(image: jax.Array, mask: jax.Array, colour) -> jax.Array:
    """``image`` with the pixels of ``mask`` set to ``colour`` (a tuple, or a ``[H, W, 3]`` array)."""
    return jnp.where(mask[..., None], jnp.asarray(colour, jnp.float32), image)


def to_uint8(image: jax.Array) -> jax.Array:
    return jnp.clip(jnp.round(image * 255.0), 0, 255).astype(jnp.uint8)
