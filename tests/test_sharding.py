"""`rewardax.models.sharding`: the split rule on tiny and full-size *abstract* models (InternVL3-1B/8B-shaped,
CLIP ViT-bigG-14: nothing allocated), the `model_dim` mark through split/merge/slicing/optax, `specs` as
shard_map / NamedSharding prefixes, and the gathered (FSDP) models equal to the replicated ones on a 2 × 2
("envs", "model") mesh of the 4 virtual CPU devices: InternVL logits, CLIP outputs, gradients (the all_gather
transpose) and `model_norm`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rewardax.models import internvl as iv
from rewardax.models import internvl3_config_dict
from rewardax.models.clip import CLIP, CLIPSpec, TowerSpec
from rewardax.models.clip_checkpoints import open_clip_spec
from rewardax.models.layers import Dense, add_lora
from rewardax.models.sharding import (MODEL_DIM, full, model_axis, model_dim, model_norm, shard_model, shard_params,
                                      specs, split_dim)

pytestmark = pytest.mark.timeout(300)

IMG = 100
# Vision width 15 (odd): its q/k/v/proj [15, 15] and pos_embed [5, 15] have no dim that 2 divides (replicated),
# fc2 [18, 15] and patch_embed [588, 15] fall back to the dim before; the untied lm_head [16, 101] too.
TINY_VL = iv.InternVLSpec(
    vision=iv.InternViTSpec(image_size=28, patch_size=14, width=15, depth=2, heads=3, mlp_dim=18,
                            attention_bias=True, qk_norm=True),
    text=iv.Qwen2Spec(vocab_size=101, width=16, depth=2, heads=4, kv_heads=2, head_dim=4, mlp_dim=24),
    image_token_id=IMG, tie_word_embeddings=False, image_seq_length=1)
TINY_CLIP = CLIPSpec(embed_dim=12, image_size=32, patch_size=16,
                     vision=TowerSpec(width=16, depth=2, heads=2, mlp_dim=24),
                     vocab_size=50, context_length=8, text=TowerSpec(width=12, depth=2, heads=2, mlp_dim=20),
                     text_pool="argmax", eos_token_id=49)
LORA = ("q", "k", "v", "o")


def is_var(x):
    return isinstance(x, nnx.Variable)


def variables(tree):
    """``{path: Variable}`` of a tree."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_var)
    return {jax.tree_util.keystr(path): v for path, v in flat if is_var(v)}


def marks(tree):
    return {k: model_dim(v) for k, v in variables(tree).items()}


def internvl(spec, lora: int = 0, seed: int = 0, **kw):
    model = iv.InternVL(spec, rngs=nnx.Rngs(seed), **kw)
    if lora:
        add_lora(model.text, LORA, lora, rngs=nnx.Rngs(seed + 1))
    return model


def build(make):
    """``nnx.split(make())`` with the initialisation compiled (one XLA program instead of ~100 eager ops)."""
    graphdef, _ = nnx.split(nnx.eval_shape(make))
    return graphdef, jax.jit(lambda: nnx.state(make()))()


def abstract(name: str):
    """(abstract model, stacked depth per tower) of a named shape, built with ``nnx.eval_shape`` (bf16)."""
    bf16 = dict(dtype_mm=jnp.bfloat16, param_dtype=jnp.bfloat16)
    if name == "clip-bigG":
        spec = open_clip_spec("ViT-bigG-14")
        return nnx.eval_shape(lambda: CLIP(spec, rngs=nnx.Rngs(0), **bf16)), {spec.vision.depth, spec.text.depth}
    spec = TINY_VL if name == "tiny" else iv.InternVLSpec.from_hf_config(internvl3_config_dict(name))
    return (nnx.eval_shape(lambda: internvl(spec, lora=2, **bf16)), {spec.vision.depth, spec.text.depth})


def nbytes(x) -> int:
    return math.prod(x.shape) * jnp.dtype(x.dtype).itemsize


# ---------------------------------------------------------------------------------------------------------------
# The split rule
# ---------------------------------------------------------------------------------------------------------------


def test_split_dim_rule():
    assert split_dim((8, 12), 4) == -1
    assert split_dim((8, 6), 4) == -2  # last does not divide: the dim before
    assert split_dim((7, 6), 4) is None  # neither
    assert split_dim((12,), 4) is None and split_dim((), 4) is None  # vectors, scalars replicated
    assert split_dim((1, 1, 16), 4) is None and split_dim((16, 1), 4) is None  # vectors after squeezing 1s
    assert split_dim((4, 16), 4, stacked=1) is None  # a stacked [L, D] vector: the layer axis is never split
    assert split_dim((4, 8, 6), 4, stacked=1) == -2
    assert split_dim((8, 12), 1) is None


class _Toy(nnx.Module):
    def __init__(self, rngs):
        self.layers = Dense(8, 6, stack=(4,), rngs=rngs)  # stacked: kernel [4, 8, 6], bias [4, 6]
        self.mlp = nnx.List([Dense(8, 6, rngs=rngs)])  # a list is not stacked
        self.blocks = nnx.List([Dense(8, 4, rngs=rngs)])  # named like a stack but indexed: not stacked
        self.cls = nnx.Param(jnp.zeros((1, 1, 8)))
        self.scale = nnx.Param(jnp.zeros(()))
        self.odd = nnx.Param(jnp.zeros((3, 5)))
        self.stacked_vectors = nnx.Param(jnp.zeros((4, 8)))  # not under a stack: a matrix


def test_shard_params_on_a_toy_and_size_one():
    state = build(lambda: _Toy(nnx.Rngs(0)))[1]
    got = marks(shard_params(state, 2))
    assert got == {
        "['blocks'][0]['bias']": None, "['blocks'][0]['kernel']": -1,
        "['cls']": None, "['layers']['bias']": None, "['layers']['kernel']": -1,
        "['mlp'][0]['bias']": None, "['mlp'][0]['kernel']": -1, "['odd']": None, "['scale']": None,
        "['stacked_vectors']": -1}, got
    got4 = marks(shard_params(state, 4))
    assert got4["['layers']['kernel']"] == -2 and got4["['mlp'][0]['kernel']"] == -2
    assert got4["['blocks'][0]['kernel']"] == -1 and got4["['stacked_vectors']"] == -1
    # size 1 removes the marks: the same treedef as never marked
    one = shard_params(shard_params(state, 4), 1)
    assert jax.tree.structure(one) == jax.tree.structure(state)
    assert all(MODEL_DIM not in v.get_metadata() for v in variables(one).values())
    assert jax.tree.structure(shard_params(state, 4)) != jax.tree.structure(state)
    with pytest.raises(ValueError, match="positive"):
        shard_params(state, 0)


@pytest.mark.parametrize("size", [4, 8])
@pytest.mark.parametrize("name", ["tiny", "internvl3-1b", "internvl3-8b", "clip-bigG"])
def test_split_rule_on_abstract_models(name, size):
    model, depths = abstract(name)
    state = nnx.state(model)
    sharded = shard_params(state, size)
    total = per_device = replicated = 0
    replicated_matrices = []
    for path, var in variables(sharded).items():
        shape, dim = tuple(var.shape), model_dim(var)
        stacked = int("['layers']" in path or "['blocks']" in path)
        if stacked:
            assert shape[0] in depths, (path, shape)
        per_layer = shape[stacked:]
        matrix = sum(d != 1 for d in per_layer) >= 2
        if dim is None:
            assert not matrix or all(d % size for d in per_layer[-2:]), (path, shape)  # vectors, or nothing divides
            replicated_matrices += [path] if matrix else []
        else:
            assert dim in (-1, -2) and matrix and shape[dim] % size == 0, (path, shape, dim)
            assert len(shape) + dim >= stacked, (path, shape, dim)  # never a stacked layer axis
            if dim == -2:
                assert shape[-1] % size, (path, shape)  # the last dim first
        total += nbytes(var)
        per_device += nbytes(var) // size if dim is not None else nbytes(var)
        replicated += 0 if dim is not None else nbytes(var)
    got = marks(sharded)
    if name.startswith("internvl"):
        assert got["['text']['lm_head']['kernel']"] == -2  # vocab 151674 divides neither 4 nor 8: split on D
        assert got["['text']['embed']"] == -1
        assert got["['text']['layers']['q']['lora_a']"] == -2  # [L, din, 2]: rank 2 does not divide: din
        assert got["['text']['layers']['q']['lora_b']"] == -1  # [L, 2, dout]
        assert got["['vision']['layers']['lambda_1']"] is None and got["['vision']['cls_token']"] is None
    if name == "tiny" and size == 4:
        assert got["['text']['layers']['q']['lora_a']"] == -2 and got["['text']['layers']['k']['lora_b']"] == -1
    if name == "clip-bigG":
        assert got["['logit_scale']"] is None and got["['vision']['class_embedding']"] is None
        assert got["['vision']['encoder']['blocks']['qkv']['kernel']"] == -1
    assert per_device == (total - replicated) // size + replicated
    if name != "tiny":  # full-size shapes: every matrix splits; what stays replicated is vectors, < 0.5 %
        assert replicated < 0.005 * total, (replicated, total)
        assert not replicated_matrices, replicated_matrices
    base = sum(math.prod(v.shape) for v in variables(state).values() if not isinstance(v, nnx.LoRAParam))
    low, high = {"internvl3-1b": (0.93e9, 0.95e9), "internvl3-8b": (7.93e9, 7.96e9),
                 "clip-bigG": (2.53e9, 2.55e9)}.get(name, (0, 1e6))
    assert low < base < high, base  # the shapes the plan quotes: 0.94 B, 7.94 B, 2.54 B parameters


# ---------------------------------------------------------------------------------------------------------------
# The mark through nnx / jax / optax, specs as prefixes, device_put
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vl():
    """(graphdef, state) of the tiny InternVL with rank-2 adapters (``lora_b`` random) and remat."""
    def make():
        model = internvl(TINY_VL, lora=2, remat=True)
        randomise_lora_b(model)
        return model

    return build(make)


def jit(fn):
    """``jax.jit`` with XLA's backend optimisation level 0 (faster compiles of these tiny graphs, same maths)."""
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})


def test_marks_survive_split_merge_slicing_and_optax(tiny_vl):
    graphdef, state = tiny_vl
    sharded = shard_params(state, 4)
    want = marks(sharded)
    assert sum(d is not None for d in want.values()) >= 15

    _, again = nnx.split(nnx.merge(graphdef, sharded))
    assert marks(again) == want
    adapters, base = nnx.split_state(sharded, nnx.LoRAParam, ...)
    assert set(marks(adapters).values()) == {-1, -2}
    assert marks(nnx.merge_state(adapters, base)) == want
    layer = jax.tree.map(lambda a: a[0], sharded["text"]["layers"])  # scan_layers' per-layer slice
    assert marks(layer) == marks(sharded["text"]["layers"])
    merged_layer = nnx.merge(nnx.split(nnx.merge(graphdef, state).text.layers)[0], layer)
    assert model_dim(merged_layer.q.kernel) == -1 and merged_layer.q.kernel.shape == (16, 16)

    opt = optax.adam(1e-3).init(adapters)
    assert marks(opt[0].mu) == marks(adapters) and marks(opt[0].nu) == marks(adapters)
    grads = jax.eval_shape(jax.grad(lambda s: sum(jnp.sum(x) for x in jax.tree.leaves(s))), sharded)
    assert marks(grads) == want

    for tree in (sharded, opt, (None, adapters)):
        sp = specs(tree, "model")
        pairs = jax.tree.leaves(jax.tree.map(lambda s, x: (s, x), sp, tree, is_leaf=is_var),
                                is_leaf=lambda x: isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], P))
        assert len(pairs) == len(jax.tree.leaves(tree))
        for s, x in pairs:
            dim = model_dim(x)
            assert isinstance(s, P)
            assert s == (P() if dim is None else P(*(("model" if i == x.ndim + dim else None)
                                                     for i in range(x.ndim))))
    assert specs(opt)[0].count == P()  # a plain array
    assert specs((None, adapters))[0] is None

    # (graphdef, state) together: the graphdef's VariableDefs carry the marks too (merge reads the state's)
    graphdef4, state4 = shard_model(graphdef, state, 4)
    assert marks(state4) == want and graphdef4 != graphdef
    assert marks(nnx.state(nnx.merge(graphdef4, state4))) == want
    assert shard_model(graphdef, state, 1)[0] == graphdef  # size 1 changes nothing
    # split weights recompute each layer in the backward pass rather than keep every gathered layer
    plain = nnx.split(internvl(TINY_VL))  # remat off
    remats = lambda g, s: {m.remat for _, m in nnx.iter_modules(nnx.merge(g, s)) if hasattr(m, "remat")}  # noqa: E731
    assert remats(*plain) == remats(*shard_model(*plain, 1)) == {False}
    assert remats(*shard_model(*plain, 4)) == {True}


@pytest.mark.parametrize("shape", [(1, 4), (2, 2)])
def test_device_put_with_specs_holds_one_shard_per_model_device(shape, tiny_vl):
    mesh = Mesh(np.array(jax.devices()).reshape(shape), ("envs", "model"))
    size = shape[1]
    params = shard_params(tiny_vl[1], size)
    opt = optax.adam(1e-3).init(params)
    for tree in (params, opt):
        shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs(tree))
        placed = jax.device_put(tree, shardings)
        for (path, var), (_, orig) in zip(variables(placed).items(), variables(tree).items()):
            local = var.get_value().addressable_shards[0].data.shape
            dim = model_dim(var)
            want = list(orig.shape)
            if dim is not None:
                want[dim] //= size
            assert tuple(local) == tuple(want), (path, local, want)
            np.testing.assert_array_equal(np.asarray(var.get_value()), np.asarray(orig.get_value()))


# ---------------------------------------------------------------------------------------------------------------
# Gathered (FSDP) equals replicated on a 2 × 2 ("envs", "model") mesh
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()).reshape(2, 2), ("envs", "model"))


def fsdp(fn, mesh, in_specs, out_specs):
    """``fn`` under shard_map with `model_axis` set (at trace time) over the mesh's ``model`` axis."""
    def body(*args):
        with model_axis("model", mesh.shape["model"]):
            return fn(*args)

    return jit(jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False))


def vl_inputs(frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pixels = rng.standard_normal((frames, 3, 28, 28)).astype(np.float32)
    ids = rng.integers(0, IMG, (frames, 6)).astype(np.int32)
    ids[:, 2] = IMG  # one image token (tokens_per_image == 1) per row
    return jnp.asarray(pixels), jnp.asarray(ids)


def randomise_lora_b(model, seed: int = 3):
    """Fresh adapters have ``lora_b = 0`` (so ``lora_a``'s gradient would be 0): give them values."""
    key = jax.random.key(seed)
    for _, child in nnx.iter_modules(model):
        if isinstance(child, Dense) and child.lora_b is not None:
            key, sub = jax.random.split(key)
            child.lora_b[...] = 0.1 * jax.random.normal(sub, child.lora_b.shape)


def test_gathered_internvl_logits_equal_replicated(mesh, tiny_vl):
    graphdef, state = tiny_vl
    sharded = shard_params(state, 2)
    got = marks(sharded)  # every case of the rule: split last, split the dim before, replicated matrix
    assert got["['text']['layers']['q']['kernel']"] == -1 and got["['text']['lm_head']['kernel']"] == -2
    assert got["['vision']['layers']['q']['kernel']"] is None and got["['vision']['pos_embed']"] is None
    pixels, ids = vl_inputs(3)

    def logits(s, px, i):
        return nnx.merge(graphdef, s).last_token_logits(px, i)

    want = jit(logits)(state, pixels, ids)
    placed = jax.device_put(sharded, jax.tree.map(lambda s: NamedSharding(mesh, s), specs(sharded)))
    got = fsdp(logits, mesh, (specs(sharded), P(), P()), P())(placed, pixels, ids)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # the decoder alone on random embeddings, with the returned KV cache
    embeds = jax.random.normal(jax.random.key(1), (2, 5, 16))
    dec = lambda s, e: nnx.merge(graphdef, s).decode(e, return_kv=True)  # noqa: E731
    want = jit(dec)(state, embeds)
    got = fsdp(dec, mesh, (specs(sharded), P()), P())(placed, embeds)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_gathered_clip_equals_replicated(mesh):
    graphdef, state = build(lambda: CLIP(TINY_CLIP, rngs=nnx.Rngs(0)))
    sharded = shard_params(state, 2)
    rng = np.random.default_rng(0)
    pixels = jnp.asarray(rng.standard_normal((3, 32, 32, 3)).astype(np.float32))
    ids = jnp.asarray(np.array([[48, 5, 7, 49, 0, 0], [48, 9, 49, 0, 0, 0]], np.int32))

    def run(s, px, i):
        m = nnx.merge(graphdef, s)
        image, text = m.encode_image(px), m.encode_text(i)
        return image, text, m.logits(image, text)

    want = jit(run)(state, pixels, ids)
    got = fsdp(run, mesh, (specs(sharded), P(), P()), P())(sharded, pixels, ids)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_gradients_of_gathered_weights_equal_one_device(mesh, tiny_vl):
    """Each device scores its own frame; sharded leaves' gradients arrive summed over ``model`` (the transpose
    of all_gather is psum_scatter) and are summed over ``envs``, replicated leaves over both axes: the total
    equals one device's gradient of the summed loss."""
    graphdef, state = tiny_vl
    sharded = shard_params(state, 2)
    pixels, ids = vl_inputs(4, seed=1)
    w = jax.random.normal(jax.random.key(2), (TINY_VL.text.vocab_size,))

    def loss(s, px, i):
        return jnp.sum(nnx.merge(graphdef, s).last_token_logits(px, i) * w)

    def summed(g):
        axes = lambda v: "envs" if model_dim(v) is not None else ("envs", "model")  # noqa: E731
        return jax.tree.map(lambda v: v.replace(jax.lax.psum(v.get_value(), axes(v))), g, is_leaf=is_var)

    rows = P(("envs", "model"))
    step = fsdp(lambda s, px, i: summed(jax.grad(loss)(s, px, i)), mesh, (specs(sharded), rows, rows),
                specs(sharded))
    got = step(sharded, pixels, ids)
    hlo = step.lower(sharded, pixels, ids).as_text()
    assert "all_gather" in hlo and "reduce_scatter" in hlo  # gathered at use; gradients scattered back
    want = jit(jax.grad(loss))(state, pixels, ids)
    assert marks(got) == marks(sharded)
    got, want = variables(got), variables(want)
    assert got.keys() == want.keys()
    for path in want:
        a, b = np.asarray(got[path].get_value()), np.asarray(want[path].get_value())
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(b).max())), err_msg=path)
    assert np.abs(np.asarray(want["['text']['layers']['q']['lora_a']"].get_value())).max() > 0


def test_model_norm_equals_optax_norm(mesh, tiny_vl):
    state = tiny_vl[1]
    want = jit(optax.tree.norm)(state)
    for size in (1, 2):
        sharded = shard_params(state, size)
        got = fsdp(lambda s: model_norm(s, "model"), mesh, (specs(sharded),), P())(sharded)
        np.testing.assert_allclose(float(got), float(want), rtol=1e-6)


def test_full_is_the_value_outside_the_context():
    var = shard_params(build(lambda: _Toy(nnx.Rngs(0)))[1], 2)["layers"]["kernel"]
    assert model_dim(var) == -1
    np.testing.assert_array_equal(np.asarray(full(var)), np.asarray(var[...]))
    with model_axis("model", 1):  # size 1 sets nothing: no axis to gather over, and none needed
        np.testing.assert_array_equal(np.asarray(full(var)), np.asarray(var[...]))
    with pytest.raises(ValueError, match="positive"):
        with model_axis("model", 0):
            pass
