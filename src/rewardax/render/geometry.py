"""Ray–primitive intersections and surface normals in each geom's local frame.

Vectors are passed component-wise (a tuple ``(x, y, z)`` of arrays that broadcast against each other),
never as ``[..., 3]`` arrays: with the three components in separate arrays every operation is a plain
elementwise op that XLA fuses and vectorises across rays (an ``[..., 3]`` layout is strided and was 8×
slower on CPU). Every intersection takes ray origins ``o`` and unit directions ``d`` in the geom's frame and
the geom's MuJoCo ``size`` and returns the distance ``t`` to the first surface point with ``t > EPS``, or
``inf`` on a miss. Local frames follow MuJoCo: capsules and cylinders run along z with half-length
``size[1]``; planes face +z and are hit only from above, as ``mj_ray`` does.
"""

from __future__ import annotations

import jax.numpy as jnp
from mujoco import mjtGeom

EPS = 1e-6
INF = jnp.inf

PLANE, SPHERE, CAPSULE, ELLIPSOID, CYLINDER, BOX = (
    int(mjtGeom.mjGEOM_PLANE), int(mjtGeom.mjGEOM_SPHERE), int(mjtGeom.mjGEOM_CAPSULE),
    int(mjtGeom.mjGEOM_ELLIPSOID), int(mjtGeom.mjGEOM_CYLINDER), int(mjtGeom.mjGEOM_BOX),
)


def dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _first_root(b, c):
    """Smallest root > EPS of t² + 2bt + c = 0, or inf."""
    disc = b * b - c
    root = jnp.sqrt(jnp.maximum(disc, 0.0))
    near, far = -b - root, -b + root
    t = jnp.where(near > EPS, near, jnp.where(far > EPS, far, INF))
    return jnp.where(disc >= 0.0, t, INF)


def _side(o, d, r, h):
    """Lateral surface of the cylinder of radius r, half-length h along z (no caps)."""
    a = d[0] * d[0] + d[1] * d[1]
    safe_a = jnp.where(a > EPS, a, 1.0)
    t = _first_root((o[0] * d[0] + o[1] * d[1]) / safe_a, (o[0] * o[0] + o[1] * o[1] - r * r) / safe_a)
    return jnp.where((a > EPS) & (jnp.abs(o[2] + t * d[2]) <= h), t, INF)


def plane(o, d, size):
    """Plane z = 0 facing +z, bounded to |x| ≤ size[0], |y| ≤ size[1] when those are positive."""
    down = d[2] < 0.0
    t = -o[2] / jnp.where(down, d[2], -1.0)
    inside = [(s <= 0.0) | (jnp.abs(oi + t * di) <= s) for oi, di, s in zip(o[:2], d[:2], size[:2])]
    return jnp.where(down & (o[2] > 0.0) & (t > EPS) & inside[0] & inside[1], t, INF)


def sphere(o, d, size):
    """Sphere of radius size[0] at the origin."""
    return _first_root(dot(o, d), dot(o, o) - size[0] * size[0])


def capsule(o, d, size):
    """Cylinder of radius size[0] and half-length size[1] along z, capped by two hemispheres.

    Only one cap can be hit first: the one on the side where the ray enters the infinite cylinder (or, for
    a ray along the axis, the one it travels towards), so one cap test suffices.
    """
    r, h = size[0], size[1]
    a = d[0] * d[0] + d[1] * d[1]
    axial = a <= EPS
    safe_a = jnp.where(axial, 1.0, a)
    b, c = (o[0] * d[0] + o[1] * d[1]) / safe_a, (o[0] * o[0] + o[1] * o[1] - r * r) / safe_a
    disc = b * b - c
    enter = -b - jnp.sqrt(jnp.maximum(disc, 0.0))
    z = o[2] + enter * d[2]
    side = jnp.where(~axial & (disc >= 0.0) & (jnp.abs(z) <= h) & (enter > EPS), enter, INF)
    cap = jnp.where(axial, -jnp.sign(d[2]), jnp.sign(z)) * h
    t_cap = _first_root(dot(o, d) - cap * d[2], dot(o, o) - 2 * cap * o[2] + cap * cap - r * r)
    return jnp.where(axial | (disc >= 0.0), jnp.minimum(side, t_cap), INF)


def ellipsoid(o, d, size):
    """Ellipsoid with semi-axes size[0:3]: a unit sphere after scaling space by 1/size."""
    os = [oi / s for oi, s in zip(o, size)]
    ds = [di / s for di, s in zip(d, size)]
    a = dot(ds, ds)
    return _first_root(dot(os, ds) / a, (dot(os, os) - 1.0) / a)


def cylinder(o, d, size):
    """Solid cylinder of radius size[0] and half-length size[1] along z."""
    r, h = size[0], size[1]
    best = _side(o, d, r, h)
    axial = jnp.abs(d[2]) > EPS
    for s in (1.0, -1.0):
        t = (s * h - o[2]) / jnp.where(axial, d[2], 1.0)
        x, y = o[0] + t * d[0], o[1] + t * d[1]
        best = jnp.minimum(best, jnp.where(axial & (t > EPS) & (x * x + y * y <= r * r), t, INF))
    return best


def box(o, d, size):
    """Box with half-sizes size[0:3] (slab method)."""
    near, far = -INF, INF
    for oi, di, s in zip(o, d, size):
        inv = 1.0 / jnp.where(jnp.abs(di) > EPS, di, EPS)
        t1, t2 = (-s - oi) * inv, (s - oi) * inv
        near, far = jnp.maximum(near, jnp.minimum(t1, t2)), jnp.minimum(far, jnp.maximum(t1, t2))
    return jnp.where((near <= far) & (far > EPS), jnp.where(near > EPS, near, far), INF)


INTERSECT = {PLANE: plane, SPHERE: sphere, CAPSULE: capsule, ELLIPSOID: ellipsoid, CYLINDER: cylinder, BOX: box}


def normalize(v):
    inv = 1.0 / jnp.sqrt(jnp.maximum(dot(v, v), 1e-24))
    return tuple(vi * inv for vi in v)


def normal(geom_type, p, size):
    """Outward unit normal at local surface point ``p`` for one geom type (a Python int)."""
    zero, one = jnp.zeros_like(p[0]), jnp.ones_like(p[0])
    if geom_type == PLANE:
        return zero, zero, one
    if geom_type == SPHERE:
        return normalize(p)
    if geom_type == CAPSULE:
        return normalize((p[0], p[1], p[2] - jnp.clip(p[2], -size[1], size[1])))
    if geom_type == ELLIPSOID:
        return normalize(tuple(pi / (s * s) for pi, s in zip(p, size)))
    if geom_type == CYLINDER:
        on_cap = jnp.abs(p[2]) - size[1] > jnp.sqrt(p[0] * p[0] + p[1] * p[1]) - size[0]
        return normalize((jnp.where(on_cap, zero, p[0]), jnp.where(on_cap, zero, p[1]),
                          jnp.where(on_cap, jnp.sign(p[2]), zero)))
    if geom_type == BOX:
        q = [jnp.abs(pi) / s for pi, s in zip(p, size)]
        top = jnp.maximum(q[0], jnp.maximum(q[1], q[2]))
        return normalize(tuple(jnp.where(qi == top, jnp.sign(pi), zero) for qi, pi in zip(q, p)))
    raise ValueError(f"geom type {geom_type} is not supported by the renderer")
