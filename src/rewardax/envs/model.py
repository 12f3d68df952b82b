"""The Gymnasium/Brax humanoid as an `mujoco.MjModel`, edited with `MjSpec` (no copied XML).

The body comes from the MJCF file shipped inside the installed `brax` package. Two edits make it the
VLM-RM humanoid: every body geom touches the floor (brax's copy lets only the feet collide, which would
make kneeling or sitting impossible) and solver settings that converge (`SOLVER_ITERATIONS`). A *look* then dresses
the scene: ``default`` keeps the file's own colours, ``paper`` is the realistic look of the VLM-RM
ablation (sky, tiled floor, light-grey body, a directional light from above).
"""

from __future__ import annotations

import os

import brax
import mujoco
import numpy as np

LOOKS = ("default", "paper")
TIMESTEP = 0.003
SOLVER_ITERATIONS = 6
"""Newton iterations per physics step (line search: `LINE_SEARCH_ITERATIONS`).

brax's MJX humanoid uses 1, which is enough there because only its feet touch the floor and an episode ends
when the torso leaves 1-2 m. Here the whole body collides and nothing ends an episode, so exploration
(saturated actions, a body thrashing on the floor against its joint limits) changes the active contact set
every step. With 1 iteration MuJoCo's own solver left 38% of such steps unconverged and 23 of 48 envs blew up
within 300 steps; with 2 none did; a converged solve takes 2.2 iterations on average and at most 10; with 6,
0.06% of steps stop short (`benchmarks/physics_check.py`).
"""
LINE_SEARCH_ITERATIONS = 8
ASSET = os.path.join(os.path.dirname(brax.__file__), "envs", "assets", "humanoid.xml")


def humanoid_spec(look: str = "paper") -> mujoco.MjSpec:
    """Return the editable humanoid spec in the given look (see module docstring)."""
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}; valid looks are {', '.join(LOOKS)}")
    spec = mujoco.MjSpec.from_file(ASSET)
    spec.option.timestep = TIMESTEP
    spec.option.iterations = SOLVER_ITERATIONS
    spec.option.ls_iterations = LINE_SEARCH_ITERATIONS
    for geom in spec.geoms:
        if geom.name != "floor":
            # contype & floor.conaffinity = 1: body-floor contacts; conaffinity 0: no self-collision.
            geom.contype, geom.conaffinity = 1, 0
    if look == "paper":
        _dress_paper(spec)
    return spec


def humanoid_model(look: str = "paper") -> mujoco.MjModel:
    """Compile the humanoid in the given look."""
    return humanoid_spec(look).compile()


def _dress_paper(spec: mujoco.MjSpec) -> None:
    """Sky, tiled floor, light-grey body and a directional light from above, all as MuJoCo assets."""
    sky = spec.textures[0]  # the file's only skybox
    sky.builtin = mujoco.mjtBuiltin.mjBUILTIN_GRADIENT
    sky.rgb1, sky.rgb2 = [0.35, 0.55, 0.85], [0.85, 0.9, 0.97]
    sky.width = sky.height = 64

    tiles = spec.add_texture(
        name="tiles", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.62, 0.6, 0.57], rgb2=[0.78, 0.76, 0.72], mark=mujoco.mjtMark.mjMARK_EDGE,
        markrgb=[0.45, 0.44, 0.42], width=256, height=256,
    )
    floor_mat = spec.add_material(name="tiles", texrepeat=[1, 1], texuniform=True, specular=0.1, shininess=0.2)
    floor_mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tiles.name
    body_mat = spec.add_material(name="body", rgba=[0.82, 0.82, 0.84, 1], specular=0.35, shininess=0.4)
    for geom in spec.geoms:
        if geom.name == "floor":
            geom.material = floor_mat.name
        else:
            geom.material, geom.rgba = body_mat.name, [0.82, 0.82, 0.84, 1]

    light = spec.lights[0]
    light.type = mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
    light.dir = np.array([-0.25, 0.15, -1.0]) / np.linalg.norm([-0.25, 0.15, -1.0])
    light.pos = [0, 0, 4]
    light.diffuse, light.ambient, light.specular = [0.75] * 3, [0.3] * 3, [0.25] * 3
    light.castshadow = True
    spec.visual.headlight.ambient = [0.1] * 3
    spec.visual.headlight.diffuse = [0.25] * 3
    spec.visual.headlight.specular = [0.1] * 3
