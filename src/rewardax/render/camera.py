"""Pinhole cameras in MuJoCo's conventions, and the primary rays they shoot.

A `Camera` is a pytree: position, orientation and vertical field of view. Its orientation matrix has
MuJoCo's camera axes as columns (x right, y up, z backward: the camera looks along −z), so a camera of the
model (`data.cam_xpos`, `data.cam_xmat`, `model.cam_fovy`) converts directly, and a free camera
(distance, look-at, azimuth, elevation, as in MuJoCo's viewer) is computed the way MuJoCo does.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Camera:
    pos: jnp.ndarray  # [3] optical centre in world coordinates
    xmat: jnp.ndarray  # [3, 3] columns: right, up, backward
    fovy: jnp.ndarray  # vertical field of view, degrees


@dataclasses.dataclass(frozen=True)
class FreeCamera:
    """MuJoCo's free camera: it orbits ``lookat`` at ``distance``; angles in degrees.

    Azimuth 0 looks along +x, 90 along +y; negative elevation looks down. ``track`` makes the look-at
    point follow the tracked body in x and y (the height stays ``lookat[2]``).
    """

    distance: float = 3.5
    lookat: tuple[float, float, float] = (0.0, 0.0, 1.0)
    elevation: float = -10.0
    azimuth: float = 180.0
    fovy: float = 45.0
    track: bool = False

    def at(self, lookat=None) -> Camera:
        """The camera as a pytree, looking at ``lookat`` (default: the fixed look-at point)."""
        lookat = jnp.asarray(self.lookat if lookat is None else lookat, jnp.float32)
        az, el = jnp.deg2rad(self.azimuth), jnp.deg2rad(self.elevation)
        forward = jnp.array([jnp.cos(el) * jnp.cos(az), jnp.cos(el) * jnp.sin(az), jnp.sin(el)])
        right = jnp.cross(forward, jnp.array([0.0, 0.0, 1.0]))
        right = right / jnp.linalg.norm(right)
        up = jnp.cross(right, forward)
        xmat = jnp.stack([right, up, -forward], axis=1)
        return Camera(pos=lookat - self.distance * forward, xmat=xmat, fovy=jnp.float32(self.fovy))


def model_camera(model, data, camera_id: int) -> Camera:
    """A camera defined in the MuJoCo model, posed by ``data`` (MjData or mjx.Data)."""
    return Camera(
        pos=jnp.asarray(data.cam_xpos[camera_id], jnp.float32),
        xmat=jnp.asarray(data.cam_xmat[camera_id], jnp.float32).reshape(3, 3),
        fovy=jnp.float32(model.cam_fovy[camera_id]),
    )


def primary_rays(camera: Camera, height: int, width: int) -> jnp.ndarray:
    """Unit ray directions through pixel centres, [height, width, 3], row 0 at the top of the image."""
    tan_half = jnp.tan(jnp.deg2rad(camera.fovy) / 2)
    ys = (1.0 - 2.0 * (jnp.arange(height) + 0.5) / height) * tan_half
    xs = (2.0 * (jnp.arange(width) + 0.5) / width - 1.0) * tan_half * (width / height)
    local = jnp.stack(
        [jnp.broadcast_to(xs[None, :], (height, width)), jnp.broadcast_to(ys[:, None], (height, width)),
         -jnp.ones((height, width))], axis=-1)
    dirs = local @ camera.xmat.T
    return dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
