"""The JAX ray caster: closed-form intersections, agreement with MuJoCo's C ray caster, shading, batching."""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from rewardax.envs.model import humanoid_model
from rewardax.render import FreeCamera, Renderer, geometry, model_camera, primary_rays

SIZE = 64  # image side for the agreement tests: 4096 rays per frame


def mujoco_segmentation(model, data, camera, height, width):
    """Geom id and distance seen through every pixel by MuJoCo's own `mj_multiRay` (−1 / −1 on a miss)."""
    dirs = np.asarray(primary_rays(camera, height, width), np.float64).reshape(-1, 3)
    geomid = np.zeros(len(dirs), np.int32)
    dist = np.zeros(len(dirs), np.float64)
    groups = np.array([1, 1, 1, 0, 0, 0], np.uint8)  # the renderer draws visual groups 0-2
    mujoco.mj_multiRay(model, data, np.asarray(camera.pos, np.float64), dirs.ravel(), groups, 1, -1, geomid, dist,
                       None, len(dirs), mujoco.mjMAXVAL)
    return geomid.reshape(height, width), dist.reshape(height, width)


def assert_depths_close(ours, expected):
    """Float32 distances: tight almost everywhere, looser at grazing silhouette pixels."""
    err = np.abs(ours - expected) / np.maximum(expected, 1.0)
    assert np.quantile(err, 0.999) < 1e-4 and err.max() < 1e-2, f"depth errors: max {err.max():.2e}"


def random_humanoid_poses(model, n, seed):
    """Joint angles uniform in their ranges, random heading and a root height that keeps the body near the floor."""
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(n):
        data = mujoco.MjData(model)
        qpos = model.qpos0.copy()
        lo, hi = model.jnt_range[1:, 0], model.jnt_range[1:, 1]
        qpos[7:] = rng.uniform(lo, hi)
        yaw = rng.uniform(-np.pi, np.pi)
        qpos[3:7] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        qpos[:3] = [rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), rng.uniform(0.8, 1.4)]
        data.qpos[:] = qpos
        mujoco.mj_forward(model, data)
        poses.append(data)
    return poses


def stack(model, datas):
    return jax.tree.map(lambda *x: jnp.stack(x), *[mjx.put_data(model, d) for d in datas])


@pytest.mark.parametrize("look", ["paper", "default"])
def test_segmentation_matches_mujoco_ray_caster_on_random_humanoid_poses(look):
    model = humanoid_model(look)
    datas = random_humanoid_poses(model, 4, seed=1)
    camera = FreeCamera(distance=3.0, elevation=-20.0).at()
    renderer = Renderer(model, SIZE, SIZE)
    frames = jax.jit(jax.vmap(lambda d: renderer(d, camera)))(stack(model, datas))
    for i, data in enumerate(datas):
        expected, dist = mujoco_segmentation(model, data, camera, SIZE, SIZE)
        ours = np.asarray(frames.segmentation[i])
        agree = np.mean(ours == expected)
        assert agree >= 0.995, f"pose {i}: only {agree:.4f} of pixels agree with mj_ray"
        assert (expected > 0).any(), "the body should be in view"
        same = (ours == expected) & (expected >= 0)
        assert_depths_close(np.asarray(frames.depth[i])[same], dist[same])


PRIMITIVES_XML = """
<mujoco>
  <worldbody>
    <light directional="true" dir="0 0 -1" pos="0 0 5"/>
    <geom name="floor" type="plane" size="3 3 0.1" rgba=".8 .8 .8 1"/>
    <body pos="-0.9 -0.6 0.6" euler="20 30 40"><geom type="sphere" size="0.25" rgba="1 0 0 1"/></body>
    <body pos="0 -0.7 0.7" euler="60 10 0"><geom type="capsule" size="0.12 0.3" rgba="0 1 0 1"/></body>
    <body pos="0.9 -0.6 0.6" euler="10 70 20"><geom type="ellipsoid" size="0.3 0.15 0.2" rgba="0 0 1 1"/></body>
    <body pos="-0.8 0.7 0.5" euler="30 40 50"><geom type="box" size="0.2 0.3 0.15" rgba="1 1 0 1"/></body>
    <body pos="0.2 0.8 0.6" euler="80 20 10"><geom type="cylinder" size="0.2 0.25" rgba="0 1 1 1"/></body>
    <body pos="1.0 0.6 0.4"><geom type="capsule" fromto="0 0 0 0 0 0.5" size="0.1" rgba="1 0 1 1"/></body>
  </worldbody>
</mujoco>
"""


@pytest.fixture(scope="module")
def primitives():
    model = mujoco.MjModel.from_xml_string(PRIMITIVES_XML)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


@pytest.mark.parametrize("azimuth,elevation", [(0.0, -35.0), (120.0, -60.0), (250.0, -89.0)])
def test_every_primitive_matches_mujoco_ray_caster(primitives, azimuth, elevation):
    model, data = primitives
    camera = FreeCamera(distance=4.0, lookat=(0.0, 0.0, 0.4), azimuth=azimuth, elevation=elevation).at()
    frame = jax.jit(Renderer(model, SIZE, SIZE))(mjx.put_data(model, data), camera)
    expected, dist = mujoco_segmentation(model, data, camera, SIZE, SIZE)
    ours = np.asarray(frame.segmentation)
    assert np.mean(ours == expected) >= 0.995
    assert set(np.unique(expected)) >= set(range(model.ngeom)), "every geom should be in view"
    same = (ours == expected) & (expected >= 0)
    assert_depths_close(np.asarray(frame.depth)[same], dist[same])


def _ray(origin, direction):
    return tuple(jnp.float32(c) for c in origin), tuple(jnp.float32(c) for c in np.asarray(direction) / np.linalg.norm(direction))


@pytest.mark.parametrize("kind,size,origin,direction,expected", [
    ("sphere", (1.0, 0, 0), (0, 0, -5), (0, 0, 1), 4.0),
    ("sphere", (1.0, 0, 0), (0, 2, -5), (0, 0, 1), np.inf),
    ("capsule", (0.5, 1.0, 0), (3, 0, 0.5), (-1, 0, 0), 2.5),  # side
    ("capsule", (0.5, 1.0, 0), (0, 0, 4), (0, 0, -1), 2.5),  # along the axis onto the top cap: 4 - (1 + 0.5)
    ("capsule", (0.5, 1.0, 0), (0.3, 0, -4), (0, 0, 1), 4 - 1 - np.sqrt(0.25 - 0.09)),  # bottom cap, off axis
    ("capsule", (0.5, 1.0, 0), (3, 0, 1.3), (-1, 0, 0), 3 - np.sqrt(0.25 - 0.09)),  # above the side: top cap
    ("ellipsoid", (1.0, 2.0, 3.0), (0, -5, 0), (0, 1, 0), 3.0),
    ("box", (1.0, 2.0, 3.0), (5, 0.5, 0.5), (-1, 0, 0), 4.0),
    ("box", (1.0, 2.0, 3.0), (0, 0, 0), (0, 0, 1), 3.0),  # from inside: the far face
    ("cylinder", (1.0, 2.0, 0), (0.5, 0, 5), (0, 0, -1), 3.0),  # flat cap
    ("cylinder", (1.0, 2.0, 0), (4, 0, 1.5), (-1, 0, 0), 3.0),  # side
    ("plane", (0, 0, 0), (0, 0, 2), (0, 0.6, -0.8), 2.5),
    ("plane", (0, 0, 0), (0, 0, -2), (0, 0, 1), np.inf),  # planes are one-sided, like mj_ray
    ("plane", (1.0, 1.0, 0), (0, 0, 2), (0.8, 0, -0.6), np.inf),  # lands at x = 8/3, outside the bounded plane
])
def test_intersection_distances_hand_computed(kind, size, origin, direction, expected):
    o, d = _ray(origin, direction)
    t = getattr(geometry, kind)(o, d, tuple(jnp.float32(s) for s in size))
    np.testing.assert_allclose(float(t), expected, rtol=1e-5)


@pytest.mark.parametrize("kind,size,point,expected", [
    ("sphere", (2.0, 0, 0), (0, 2, 0), (0, 1, 0)),
    ("capsule", (0.5, 1.0, 0), (0.5, 0, 0.7), (1, 0, 0)),
    ("capsule", (0.5, 1.0, 0), (0, 0, 1.5), (0, 0, 1)),
    ("ellipsoid", (1.0, 2.0, 3.0), (0, 0, 3), (0, 0, 1)),
    ("cylinder", (1.0, 2.0, 0), (0.2, 0.1, -2), (0, 0, -1)),
    ("cylinder", (1.0, 2.0, 0), (0, -1, 0.5), (0, -1, 0)),
    ("box", (1.0, 2.0, 3.0), (0.3, -2, 1), (0, -1, 0)),
])
def test_normals_hand_computed(kind, size, point, expected):
    geom_type = {"sphere": geometry.SPHERE, "capsule": geometry.CAPSULE, "ellipsoid": geometry.ELLIPSOID,
                 "cylinder": geometry.CYLINDER, "box": geometry.BOX}[kind]
    n = geometry.normal(geom_type, tuple(jnp.float32(c) for c in point), tuple(jnp.float32(s) for s in size))
    np.testing.assert_allclose(np.array([float(c) for c in n]), expected, atol=1e-6)


LIT_SPHERE_XML = """
<mujoco>
  <visual><headlight active="0"/></visual>
  <worldbody>
    <light directional="true" dir="{dir}" pos="0 0 5" ambient=".2 .2 .2" diffuse=".5 .5 .5" specular="0 0 0"
           castshadow="{shadow}"/>
    <geom type="plane" size="0 0 1" rgba=".5 .5 .5 1" pos="0 0 0"/>
    <geom type="sphere" size="0.3" pos="0 0 1" rgba=".8 .4 .2 1"/>
  </worldbody>
</mujoco>
"""


def _top_view(xml, size=33):
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    camera = FreeCamera(distance=3.0, lookat=(0.0, 0.0, 0.0), elevation=-90.0, azimuth=90.0, fovy=60.0).at()
    return jax.jit(Renderer(model, size, size))(mjx.put_data(model, data), camera)


def test_lambert_shading_hand_computed():
    """Looking straight down at a sphere lit from straight above: the centre has n·L = 1."""
    frame = _top_view(LIT_SPHERE_XML.format(dir="0 0 -1", shadow="false"))
    centre = np.asarray(frame.rgb[16, 16], np.float64)
    np.testing.assert_allclose(centre, np.round(255 * np.array([0.8, 0.4, 0.2]) * (0.2 + 0.5)), atol=1)
    assert int(frame.segmentation[16, 16]) == 1


def test_shadows_darken_the_floor_under_the_sphere():
    """Light at 45°: the sphere's shadow falls beside it on the floor, where only ambient light remains."""
    lit = _top_view(LIT_SPHERE_XML.format(dir="1 0 -1", shadow="false"))
    shaded = _top_view(LIT_SPHERE_XML.format(dir="1 0 -1", shadow="true"))
    floor = np.asarray(shaded.segmentation) == 0
    lit_rgb, shaded_rgb = np.asarray(lit.rgb, float), np.asarray(shaded.rgb, float)
    in_shadow = floor & (shaded_rgb[..., 0] < lit_rgb[..., 0])
    assert 10 < in_shadow.sum() < 0.3 * floor.sum()
    np.testing.assert_allclose(shaded_rgb[in_shadow], np.round(255 * 0.5 * 0.2), atol=1)
    np.testing.assert_allclose(lit_rgb[in_shadow], np.round(255 * 0.5 * (0.2 + 0.5 * np.sqrt(0.5))), atol=1)
    np.testing.assert_array_equal(lit_rgb[floor & ~in_shadow], shaded_rgb[floor & ~in_shadow])


def test_model_textures_are_drawn():
    """The paper look's checker floor alternates between its two tile colours; the sky shows its gradient."""
    model = humanoid_model("paper")
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    camera = FreeCamera(distance=6.0, lookat=(4.0, 4.0, 0.0), elevation=-89.0, azimuth=90.0, fovy=30.0).at()
    frame = jax.jit(Renderer(model, 48, 48, shadows=False))(mjx.put_data(model, data), camera)
    floor = np.asarray(frame.rgb)[np.asarray(frame.segmentation) == 0]
    assert len(np.unique(floor // 8, axis=0)) >= 2, "expected both checker colours on the floor"
    up = FreeCamera(distance=1.0, lookat=(0.0, 0.0, 3.0), elevation=60.0).at()
    sky = np.asarray(jax.jit(Renderer(model, 16, 16))(mjx.put_data(model, data), up).rgb, float)
    assert sky[0].mean(axis=0)[2] > sky[0].mean(axis=0)[0], "the sky should be blue"


def test_model_camera_and_unsupported_geoms():
    model = mujoco.MjModel.from_xml_string("""
        <mujoco><worldbody><camera name="top" pos="0 0 3" euler="0 0 0" fovy="50"/>
        <geom type="sphere" size="0.5"/></worldbody></mujoco>""")
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    frame = Renderer(model, 9, 9)(data, model_camera(model, data, 0))
    assert int(frame.segmentation[4, 4]) == 0 and int(frame.segmentation[0, 0]) == -1
    np.testing.assert_allclose(float(frame.depth[4, 4]), 2.5, rtol=1e-5)

    mesh = mujoco.MjModel.from_xml_string("""
        <mujoco><asset><mesh name="tet" vertex="0 0 0 1 0 0 0 1 0 0 0 1"/></asset>
        <worldbody><geom name="rock" type="mesh" mesh="tet"/></worldbody></mujoco>""")
    with pytest.raises(ValueError, match="rock.*MESH.*supported"):
        Renderer(mesh)


def test_render_under_scan_matches_single_calls(primitives):
    model, data = primitives
    renderer = Renderer(model, 16, 16)
    d0 = mjx.put_data(model, data)
    cameras = [FreeCamera(azimuth=a, lookat=(0, 0, 0.4)).at() for a in (0.0, 90.0)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *cameras)

    def body(carry, cam):
        return carry, renderer(d0, cam).rgb

    _, scanned = jax.jit(lambda cams: jax.lax.scan(body, 0, cams))(stacked)
    for i, cam in enumerate(cameras):
        np.testing.assert_array_equal(np.asarray(scanned[i]), np.asarray(renderer(d0, cam).rgb))


def test_batch_matches_single_frames(primitives):
    model, data = primitives
    renderer = Renderer(model, 16, 16)
    d0 = mjx.put_data(model, data)
    cameras = [FreeCamera(azimuth=a, lookat=(0, 0, 0.4)).at() for a in (30.0, 200.0)]
    stack_ = lambda *x: jnp.stack(x)  # noqa: E731
    frames = jax.jit(renderer.batch)(jax.tree.map(lambda x: jnp.stack([x, x]), d0), jax.tree.map(stack_, *cameras))
    for i, cam in enumerate(cameras):
        single = renderer(d0, cam)  # eager: rounding may differ from the compiled batch by one level
        np.testing.assert_allclose(np.asarray(frames.rgb[i], int), np.asarray(single.rgb, int), atol=1)
        np.testing.assert_array_equal(np.asarray(frames.segmentation[i]), np.asarray(single.segmentation))


def test_image_textures_stored_in_the_model_are_drawn_texel_for_texel():
    """A plane with a 2×2 image texture (red, green / blue, white), one repeat per metre, lit by pure ambient
    light: looking straight down at one square metre shows exactly the four texel colours, a quarter each."""
    spec = mujoco.MjSpec()
    spec.visual.headlight.active = 0
    texels = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)
    spec.add_texture(name="image", type=mujoco.mjtTexture.mjTEXTURE_2D, width=2, height=2, nchannel=3,
                     data=texels.ravel().tolist())
    material = spec.add_material(name="image", texuniform=True, texrepeat=[1, 1])
    material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "image"
    spec.worldbody.add_light(type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, dir=[0, 0, -1], ambient=[1, 1, 1],
                             diffuse=[0, 0, 0], specular=[0, 0, 0])
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 1], material="image")
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    # fovy chosen so the 32-pixel image spans exactly the square [0, 1]² of the floor from 2 m up
    camera = FreeCamera(distance=2.0, lookat=(0.5, 0.5, 0.0), elevation=-90.0, azimuth=90.0,
                        fovy=float(2 * np.degrees(np.arctan(0.25)))).at()
    rgb = np.asarray(jax.jit(Renderer(model, 32, 32))(mjx.put_data(model, data), camera).rgb)
    colours, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    assert {tuple(c) for c in colours} == {tuple(t) for t in texels.reshape(-1, 3)}
    np.testing.assert_array_equal(counts, [256] * 4)
