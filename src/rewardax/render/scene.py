"""What the renderer needs from an `mujoco.MjModel`, read once on the host into a pytree.

Colours follow MuJoCo's rule: a geom with a material takes the material's rgba unless the geom sets its
own (non-default) rgba; a material's RGB texture multiplies that colour. 2-D textures carry a mip pyramid
(box-filtered) so a far-away checker floor averages to grey as in MuJoCo's own renderer instead of
aliasing. Geoms in visual groups 0–2 with nonzero alpha are drawn, as in MuJoCo's default viewer.
"""

from __future__ import annotations

import mujoco
import numpy as np
import jax.numpy as jnp
from flax import struct

from rewardax.render import geometry

VISIBLE_GROUPS = (0, 1, 2)
_DEFAULT_RGBA = np.array([0.5, 0.5, 0.5, 1.0], np.float32)
_NO_MATERIAL = dict(specular=0.5, shininess=0.5, emission=0.0)  # MuJoCo's values for a geom without material
_LIGHT_KINDS = {int(mujoco.mjtLightType.mjLIGHT_DIRECTIONAL): "directional",
                int(mujoco.mjtLightType.mjLIGHT_SPOT): "spot"}  # point and image lights shine as points
_RGB_ROLES = (int(mujoco.mjtTextureRole.mjTEXROLE_RGB), int(mujoco.mjtTextureRole.mjTEXROLE_RGBA))


@struct.dataclass
class Scene:
    # Geoms (indexed by MuJoCo geom id).
    geom_size: jnp.ndarray  # [G, 3] MuJoCo sizes
    geom_rgb: jnp.ndarray  # [G, 3] base colour in [0, 1]
    geom_specular: jnp.ndarray  # [G]
    geom_shininess: jnp.ndarray  # [G] in [0, 1]; the Phong exponent is 128 × shininess as in MuJoCo
    geom_emission: jnp.ndarray  # [G]
    geom_tex: jnp.ndarray  # [G] texture id, −1 for none
    geom_texscale: jnp.ndarray  # [G, 2] texture repeats per metre along local x and y (2-D textures)
    # Textures: RGB texels of every texture and mip level, concatenated.
    texels: jnp.ndarray  # [N, 3] uint8
    tex_adr: jnp.ndarray  # [T, L] first texel of each mip level
    tex_size: jnp.ndarray  # [T, L, 2] width, height of each level
    tex_levels: jnp.ndarray  # [T] number of mip levels
    tex_cube: jnp.ndarray  # [T] bool: cube map (6 square faces stacked vertically) instead of 2-D
    # Lights (world frame unless attached to a body) and the headlight.
    light_body: jnp.ndarray  # [Lt]
    light_pos: jnp.ndarray  # [Lt, 3] in the body frame
    light_dir: jnp.ndarray  # [Lt, 3] in the body frame
    light_cutoff: jnp.ndarray  # [Lt] spot cut-off, degrees
    light_exponent: jnp.ndarray  # [Lt]
    light_ambient: jnp.ndarray  # [Lt, 3]
    light_diffuse: jnp.ndarray  # [Lt, 3]
    light_specular: jnp.ndarray  # [Lt, 3]
    headlight: jnp.ndarray  # [3, 3] ambient, diffuse, specular (zeros when inactive)
    # Static structure (hashable, part of the compiled program).
    groups: tuple = struct.field(pytree_node=False)  # ((geom type, (geom ids...)), ...)
    shadow_casters: tuple = struct.field(pytree_node=False)  # ((geom type, (geom ids...)), ...)
    light_kinds: tuple = struct.field(pytree_node=False)  # "directional", "spot" or "point" per light
    shadow_lights: tuple = struct.field(pytree_node=False)  # ids of active lights that cast shadows
    skybox: int = struct.field(pytree_node=False)  # texture id of the skybox, −1 for none

    @property
    def geom_ids(self) -> tuple[int, ...]:
        """Drawn geom ids in the order the renderer stacks their hit distances."""
        return tuple(i for _, ids in self.groups for i in ids)


def from_model(model: mujoco.MjModel) -> Scene:
    """Read geoms, materials, textures and lights of ``model`` (host-side, once)."""
    drawn = [g for g in range(model.ngeom)
             if model.geom_group[g] in VISIBLE_GROUPS and model.geom_rgba[g, 3] > 0]
    for g in drawn:
        if int(model.geom_type[g]) not in geometry.INTERSECT:
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or f"#{g}"
            raise ValueError(
                f"geom {name!r} has type {mujoco.mjtGeom(model.geom_type[g]).name}, which the JAX renderer "
                f"cannot draw; supported: plane, sphere, capsule, ellipsoid, cylinder, box. Put it in visual "
                f"group 3 or above, or give it rgba alpha 0, to leave it out of the image.")
    groups = _group_by_type(model, drawn)
    casters = _group_by_type(model, [g for g in drawn if model.geom_castshadow[g]
                                     and model.geom_type[g] != geometry.PLANE])

    rgb, specular, shininess, emission, tex, texscale = [], [], [], [], [], []
    for g in range(model.ngeom):
        mat = model.geom_matid[g]
        rgba = model.geom_rgba[g]
        if mat >= 0:
            if np.allclose(rgba, _DEFAULT_RGBA):
                rgba = model.mat_rgba[mat]
            props = dict(specular=model.mat_specular[mat], shininess=model.mat_shininess[mat],
                         emission=model.mat_emission[mat])
            texid = next((model.mat_texid[mat, r] for r in _RGB_ROLES if model.mat_texid[mat, r] >= 0), -1)
            repeat = model.mat_texrepeat[mat]
            extent = 2 * model.geom_size[g, :2]
            scale = repeat if model.mat_texuniform[mat] else np.where(extent > 0, repeat / np.maximum(extent, 1e-9), repeat)
        else:
            props, texid, scale = _NO_MATERIAL, -1, np.ones(2)
        rgb.append(rgba[:3])
        specular.append(props["specular"])
        shininess.append(props["shininess"])
        emission.append(props["emission"])
        tex.append(texid)
        texscale.append(scale)

    textures = _textures(model)
    skybox = next((t for t in range(model.ntex) if model.tex_type[t] == mujoco.mjtTexture.mjTEXTURE_SKYBOX), -1)
    head = model.vis.headlight
    headlight = np.array([head.ambient, head.diffuse, head.specular], np.float32) * float(head.active != 0)
    f32 = lambda x: jnp.asarray(np.asarray(x, np.float32))  # noqa: E731
    return Scene(
        geom_size=f32(model.geom_size), geom_rgb=f32(rgb), geom_specular=f32(specular),
        geom_shininess=f32(shininess), geom_emission=f32(emission),
        geom_tex=jnp.asarray(np.array(tex, np.int32)), geom_texscale=f32(texscale),
        **textures,
        light_body=jnp.asarray(model.light_bodyid.astype(np.int32)), light_pos=f32(model.light_pos),
        light_dir=f32(model.light_dir),
        light_cutoff=f32(model.light_cutoff), light_exponent=f32(model.light_exponent),
        light_ambient=f32(model.light_ambient * model.light_active[:, None]),
        light_diffuse=f32(model.light_diffuse * model.light_active[:, None]),
        light_specular=f32(model.light_specular * model.light_active[:, None]),
        headlight=f32(headlight), groups=groups, shadow_casters=casters,
        light_kinds=tuple(_LIGHT_KINDS.get(int(k), "point") for k in model.light_type),
        shadow_lights=tuple(i for i in range(model.nlight) if model.light_castshadow[i] and model.light_active[i]),
        skybox=int(skybox),
    )


def _group_by_type(model, geom_ids) -> tuple:
    types = sorted({int(model.geom_type[g]) for g in geom_ids})
    return tuple((t, tuple(g for g in geom_ids if model.geom_type[g] == t)) for t in types)


def _textures(model: mujoco.MjModel) -> dict:
    """All textures as RGB uint8 texels; 2-D textures get a box-filtered mip pyramid."""
    levels = [] if model.ntex else [[np.full((1, 1, 3), 255, np.uint8)]]  # a white texel keeps arrays non-empty
    for t in range(model.ntex):
        w, h, c = model.tex_width[t], model.tex_height[t], model.tex_nchannel[t]
        img = model.tex_data[model.tex_adr[t]: model.tex_adr[t] + w * h * c].reshape(h, w, c)
        img = np.repeat(img, 3, axis=-1) if c == 1 else img[..., :3]
        pyramid = [img]
        if model.tex_type[t] == mujoco.mjtTexture.mjTEXTURE_2D:
            while min(pyramid[-1].shape[:2]) > 1:
                pyramid.append(_halve(pyramid[-1]))
        levels.append(pyramid)
    n_levels = max((len(p) for p in levels), default=1)
    chunks, adr, size, start = [np.zeros((1, 3), np.uint8)], [], [], 1
    for pyramid in levels:
        adr_t, size_t = [], []
        for img in pyramid + [pyramid[-1]] * (n_levels - len(pyramid)):
            if len(adr_t) < len(pyramid):
                chunks.append(img.reshape(-1, 3))
                adr_t.append(start)
                start += img.shape[0] * img.shape[1]
            else:  # pad with the coarsest level
                adr_t.append(adr_t[-1])
            size_t.append((img.shape[1], img.shape[0]))
        adr.append(adr_t)
        size.append(size_t)
    return dict(
        texels=jnp.asarray(np.concatenate(chunks)),
        tex_adr=jnp.asarray(np.array(adr, np.int32).reshape(-1, n_levels)),
        tex_size=jnp.asarray(np.array(size, np.int32).reshape(-1, n_levels, 2)),
        tex_levels=jnp.asarray(np.array([len(p) for p in levels], np.int32)),
        tex_cube=jnp.asarray(np.array([model.tex_type[t] != mujoco.mjtTexture.mjTEXTURE_2D
                                       for t in range(model.ntex)] or [False], bool)),
    )


def _halve(img: np.ndarray) -> np.ndarray:
    """One mip level down: average 2×2 blocks (odd sizes drop their last row/column)."""
    h, w = max(img.shape[0] // 2, 1), max(img.shape[1] // 2, 1)
    crop = img[: 2 * h, : 2 * w].astype(np.float32)
    if crop.shape[0] >= 2:
        crop = 0.5 * (crop[0::2] + crop[1::2])
    if crop.shape[1] >= 2:
        crop = 0.5 * (crop[:, 0::2] + crop[:, 1::2])
    return np.round(crop).astype(np.uint8)
