"""The devices' mesh (envs × model): the --mesh syntax, and the layout that makes every shape lay the envs out as
one axis does (the step on every shape: tests/test_step.py)."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from rewardax.mesh import AXIS, make_mesh, mesh_shape, mesh_sizes
from rewardax.stats import device_sum
from rewardax.train import TrainConfig


@pytest.mark.parametrize("text, devices, shape", [
    ("", 8, (8, 1)), ("envs=4,model=2", 8, (4, 2)), ("model=2", 8, (4, 2)), ("envs=2", 8, (2, 4)),
    (" envs = 2 , model = -1 ", 8, (2, 4)), ("envs=-1,model=8", 8, (1, 8)), ("model=1", 4, (4, 1))])
def test_mesh_shapes_infer_the_size_left_out(text, devices, shape):
    assert mesh_shape(text, devices) == shape


@pytest.mark.parametrize("text, message", [
    ("gpus=4", "unknown axis 'gpus'"), ("envs=4,envs=2", "envs is given twice"), ("model=two", "integer size"),
    ("model=0", "positive size"), ("envs=-1,model=-1", "only one size can be inferred")])
def test_bad_mesh_text_is_one_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        mesh_sizes(text)
    with pytest.raises(ValueError, match="invalid training config: .*" + message):
        TrainConfig(mesh=text)


@pytest.mark.parametrize("text, devices, message", [
    ("envs=4,model=4", 8, "needs 16 devices; this job has 8"), ("model=3", 8, "multiple of 3 devices"),
    ("model=-1", 8, "give the size of envs or of model")])
def test_a_mesh_that_does_not_fit_the_devices_says_so(text, devices, message):
    with pytest.raises(ValueError, match=message):
        mesh_shape(text, devices)


def test_envs_lie_envs_major_so_every_shape_numbers_devices_as_one_axis():
    for shape in [(4, 1), (2, 2), (1, 4)]:
        mesh = make_mesh(shape)
        assert mesh.axis_names == AXIS and mesh.devices.shape == shape
        assert list(mesh.devices.ravel()) == jax.devices()  # device (e, m) is device e·M + m
        index = jax.jit(jax.shard_map(lambda: jax.lax.axis_index(AXIS)[None], mesh=mesh, in_specs=(),
                                      out_specs=P(AXIS), check_vma=False))()
        np.testing.assert_array_equal(index, np.arange(4))


def test_a_model_group_must_lie_within_one_process():
    devices = [types.SimpleNamespace(process_index=i // 2, id=i) for i in range(4)]  # 2 processes × 2 devices
    with pytest.raises(ValueError, match="model=4 spans processes"):
        make_mesh((1, 4), devices)


def test_device_ordered_sums_over_both_axes_equal_those_over_one_axis_bit_for_bit():
    x = jax.random.normal(jax.random.key(0), (4, 3)) * jnp.asarray([1.0, 1e6, 1e-6])

    def total(mesh):
        return jax.jit(jax.shard_map(lambda v: device_sum(v[0], AXIS), mesh=mesh, in_specs=P(AXIS), out_specs=P(),
                                     check_vma=False))(x)

    one_axis = total(make_mesh())
    for shape in [(2, 2), (1, 4)]:
        np.testing.assert_array_equal(total(make_mesh(shape)), one_axis)

