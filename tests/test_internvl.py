"""Flax InternVL vs transformers' PyTorch ``InternVLForConditionalGeneration`` on tiny random configurations: the
last-position logits, the image features, the pixel shuffle (bit-exact), weight keys (state_dict and the legacy names
``save_pretrained`` writes), a shared-prefix KV cache, scan / remat, and the errors for unsupported configurations.

Tolerances ("relative error" = max|ours - reference| / max|reference| over the [B, vocab] logits):

- float32 vs PyTorch float32: <= 1e-4 (measured 3.7e-7 .. 5.9e-7 over configurations A, B, C);
- bfloat16 matmuls vs PyTorch float32: <= 1e-2 (measured 7.1e-3 (A), 6.3e-3 (B), 6.1e-3 (C));
- prefix KV cache + suffix vs the full sequence, both ours in float32: <= 1e-5 (measured 3.8e-7).

The jitted helpers compile with XLA's backend optimisation level 0 (see `jit`) to keep the file well under a minute
on a small shared CPU (about 50 s without a compilation cache, 20 s with one).
"""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from flax import nnx

from rewardax.models import internvl as iv
from rewardax.models import internvl_checkpoints as ckpt

pytestmark = pytest.mark.timeout(300)

IMG = 95  # image_token_id of the tiny configurations (vocabulary 100)

# Each: vision widths / heads / norms / q-k norm / final norm / feature layer, text widths and kv-head ratios,
# tied or untied head, rope; images: how many images each batch row holds; pad: which row is padded and how.
CONFIGS = {
    # LayerNorm InternViT with qkv bias (as InternVL3), kv heads = heads / 2, untied head, rope theta 1e6;
    # image 56 / patch 14: 4x4 grid -> 4 tokens; one image per row, row 1 left-padded.
    "A": dict(
        config=dict(
            vision_config=dict(hidden_size=36, intermediate_size=52, num_hidden_layers=2, num_attention_heads=4,
                               image_size=56, patch_size=14, attention_bias=True, norm_type="layer_norm"),
            text_config=dict(model_type="qwen2", hidden_size=40, intermediate_size=56, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, vocab_size=100,
                             rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
            image_token_id=IMG, image_seq_length=4, tie_word_embeddings=False),
        images=[1, 1], length=12, pad=(1, "left", 3),
    ),
    # RMSNorm InternViT with q/k norm, no qkv bias, final LayerNorm (use_mean_pooling=False) at feature layer -1;
    # kv heads = heads (plain MHA), tied head, linear rope; two images per row, row 0 right-padded.
    "B": dict(
        config=dict(
            vision_config=dict(hidden_size=40, intermediate_size=44, num_hidden_layers=2, num_attention_heads=5,
                               image_size=56, patch_size=14, attention_bias=False, norm_type="rms_norm",
                               use_qk_norm=True, use_mean_pooling=False, layer_norm_eps=1e-5),
            text_config=dict(model_type="qwen2", hidden_size=36, intermediate_size=60, num_hidden_layers=3,
                             num_attention_heads=6, num_key_value_heads=6, vocab_size=100, rms_norm_eps=1e-5,
                             rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 5e5}),
            image_token_id=IMG, image_seq_length=4, tie_word_embeddings=True),
        images=[2, 2], length=14, pad=(0, "right", 2),
    ),
    # 3 vision layers, feature layer -2 (before the final LayerNorm, which is then not applied), image 84: 6x6 grid
    # -> 3x3 = 9 tokens; one kv head (MQA) with an explicit head_dim; images laid out 1, 2, 0 over three rows.
    "C": dict(
        config=dict(
            vision_config=dict(hidden_size=32, intermediate_size=40, num_hidden_layers=3, num_attention_heads=2,
                               image_size=84, patch_size=14, attention_bias=True, use_mean_pooling=False),
            text_config=dict(model_type="qwen2", hidden_size=48, intermediate_size=40, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=1, head_dim=16, vocab_size=100),
            image_token_id=IMG, image_seq_length=9, vision_feature_layer=-2, tie_word_embeddings=True),
        images=[1, 2, 0], length=24, pad=(2, "left", 4),
    ),
}

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def hf_model(config: dict, seed: int = 0):
    """A random ``InternVLForConditionalGeneration`` (eval, float32), with every parameter redrawn so that none is
    at its trivial init (zero position embeddings, lambda = 0.1, unit norms) and the logits are O(1)."""
    cfg = transformers.InternVLConfig(**config)
    torch.manual_seed(seed)
    model = transformers.InternVLForConditionalGeneration(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith(("norm.weight", "layernorm_before.weight", "layernorm_after.weight", "layer_norm.weight",
                              "layernorm.weight")):
                p.copy_(1.0 + 0.2 * noise)
            elif "lambda" in name:
                p.copy_(0.6 + 0.2 * noise)
            elif p.ndim >= 2 and "embed" not in name and "cls_token" not in name:
                p.copy_(noise / np.sqrt(np.prod(p.shape[1:])))
            else:
                p.copy_(0.5 * noise)
    return model


def make_inputs(case: dict, spec: iv.InternVLSpec, seed: int = 0):
    """pixel_values [N, 3, S, S], input_ids [B, T] with the image tokens expanded, attention mask [B, T]."""
    rng = np.random.default_rng(seed)
    s, tpi, length = spec.vision.image_size, spec.tokens_per_image, case["length"]
    n_img = sum(case["images"])
    pixels = rng.standard_normal((n_img, 3, s, s)).astype(np.float32)
    rows = len(case["images"])
    ids = rng.integers(0, IMG - 1, (rows, length))
    mask = np.ones((rows, length), np.int64)
    pad_row, side, n_pad = case["pad"]
    for r, k in enumerate(case["images"]):
        lo, hi = 0, length  # the row's tokens are [lo, hi)
        if r == pad_row:
            lo, hi = (n_pad, length) if side == "left" else (0, length - n_pad)
        start = lo + 1
        for _ in range(k):  # "<img>" token, then the image tokens
            ids[r, start:start + tpi] = IMG
            start += tpi + 1
        assert start <= hi - 1, "inputs do not fit"
        if r == pad_row:
            mask[r, :lo] = 0
            mask[r, hi:] = 0
            ids[r, :lo] = 0
            ids[r, hi:] = 0
    return pixels, ids, mask


def hf_last_logits(model, pixels, ids, mask, position_ids=None):
    kw = {} if position_ids is None else {"position_ids": torch.tensor(np.asarray(position_ids))}
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels),
                       attention_mask=torch.tensor(mask), **kw).logits.numpy()
    last = ids.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return logits[np.arange(len(ids)), last]


def jit(fn):
    """``fn(model, *args)`` compiled with XLA's backend optimisation level 0 (half the compile time of these tiny
    graphs on CPU; the computation is the same), one compilation per model structure and input shapes."""
    compiled = {}

    def run(model, *args):
        graphdef, state = nnx.split(model)
        if graphdef not in compiled:
            compiled[graphdef] = jax.jit(lambda state, *a: fn(nnx.merge(graphdef, state), *a),
                                         compiler_options={"xla_backend_optimization_level": 0})
        return compiled[graphdef](state, *args)

    return run


@jit
def last_logits(model, pixels, ids, mask, position_ids=None):
    """``model.last_token_logits``, compiled."""
    return model.last_token_logits(pixels, ids, mask, position_ids)


def ours(model_hf, spec, **kw):
    sd = {k: v.detach().numpy() for k, v in model_hf.state_dict().items()}
    return ckpt.build_internvl(spec, ckpt.internvl_from_hf(sd.__getitem__, spec), **kw)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def case(request):
    c = CONFIGS[request.param]
    model = hf_model(c["config"])
    spec = iv.InternVLSpec.from_hf_config(model.config)
    return dict(c, name=request.param, hf=model, spec=spec, inputs=make_inputs(c, spec))


def test_keys_and_shapes_match_the_state_dict(case):
    sd = case["hf"].state_dict()
    want = ckpt.internvl_expected_shapes(case["spec"])
    assert set(sd) - set(want) <= ckpt.internvl_optional_keys(case["spec"])
    assert set(want) <= set(sd)
    assert {k: tuple(sd[k].shape) for k in want} == want
    # the dict form of the config gives the same spec
    assert iv.InternVLSpec.from_hf_config(case["hf"].config.to_dict()) == case["spec"]


@jit
def variants(model, pixels, ids, mask, position_ids):
    """The last logits with the mask (HF forward positions), with generate's positions, without a mask; the image
    features. One compilation."""
    feats = model.embed_images(pixels)
    x = model.splice_images(model.embed_tokens(ids), ids, feats)
    return (model.decode(x, None, mask)["logits"], model.decode(x, position_ids, mask)["logits"],
            model.decode(x)["logits"], feats)


def test_last_token_logits_match_transformers(case):
    """float32 and bfloat16 last logits vs PyTorch float32; also with given ``position_ids`` and with no attention
    mask; and the projected image features.

    The positions are generate's (cumsum of the mask - 1) plus a jump of 5 half-way: with contiguous padding
    generate's positions alone differ from forward's ``arange`` by a per-row constant, to which rotary attention is
    invariant (the logits agree to float32 rounding), so they would not test that positions are used."""
    pixels, ids, mask = case["inputs"]
    pos = np.array(iv.generate_position_ids(mask))
    pos[:, ids.shape[1] // 2:] += 5
    ref = hf_last_logits(case["hf"], pixels, ids, mask)
    ref_pos = hf_last_logits(case["hf"], pixels, ids, mask, position_ids=pos)
    ref_nomask = hf_last_logits(case["hf"], pixels, ids, np.ones_like(mask))
    with torch.no_grad():
        ref_feats = case["hf"].model.get_image_features(torch.tensor(pixels)).pooler_output.numpy()
    assert rel_err(ref_pos, ref) > 1e-3  # the positions matter

    got, got_pos, got_nomask, feats = variants(ours(case["hf"], case["spec"]), pixels, ids, mask, pos)
    err = rel_err(got, ref)
    assert err <= 1e-4, err
    assert rel_err(got_pos, ref_pos) <= 1e-4
    assert rel_err(got_nomask, ref_nomask) <= 1e-4
    assert rel_err(feats, ref_feats) <= 1e-4
    err16 = rel_err(last_logits(ours(case["hf"], case["spec"], dtype_mm=jnp.bfloat16), pixels, ids, mask), ref)
    assert err16 <= 1e-2, err16
    print(f"config {case['name']}: float32 rel err {err:.2e}, bfloat16 {err16:.2e}")


def test_pixel_shuffle_is_bit_exact():
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 10)).astype(np.float32)
    ref = transformers.models.internvl.modeling_internvl.InternVLModel.pixel_shuffle(None, torch.tensor(x), 0.5)
    np.testing.assert_array_equal(np.asarray(iv.pixel_shuffle(jnp.asarray(x), 0.5)), ref.numpy())


def test_save_pretrained_names(tmp_path):
    """The legacy names ``save_pretrained`` writes map onto the state_dict names; tied heads have no lm_head."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    for name in ("A", "B"):
        model = hf_model(CONFIGS[name]["config"])
        model.save_pretrained(tmp_path / name)
        raw = safetensors_numpy.load_file(str(tmp_path / name / "model.safetensors"))
        tensors = {ckpt.canonical_hf_key(k): v for k, v in raw.items()}
        spec = iv.InternVLSpec.from_hf_config(model.config)
        want = ckpt.internvl_expected_shapes(spec)
        assert set(tensors) == set(want), set(tensors) ^ set(want)
        assert {k: v.shape for k, v in tensors.items()} == want
        sd = model.state_dict()
        for key in ("model.language_model.layers.0.self_attn.k_proj.weight", "model.vision_tower.embeddings.cls_token"):
            np.testing.assert_array_equal(tensors[key], sd[key].numpy())
        params = ckpt.internvl_from_hf(tensors.__getitem__, spec)
        assert ckpt.build_internvl(spec, params) is not None
    assert ckpt.canonical_hf_key("lm_head.weight") == "lm_head.weight"
    assert ckpt.canonical_hf_key("language_model.lm_head.weight") == "lm_head.weight"


def test_prefix_kv_cache_equals_full_sequence():
    """A shared prefix (text + one image, left-padded) encoded once (batch 1) and reused for B suffixes (a frame
    each, one right-padded) gives the full-sequence last logits; so does the prefix tiled to batch B; and the
    returned KV of prefix + suffix is the full sequence's KV at every non-padding position."""
    c = CONFIGS["A"]
    model_hf = hf_model(c["config"], seed=1)
    spec = iv.InternVLSpec.from_hf_config(model_hf.config)
    model = ours(model_hf, spec)
    rng = np.random.default_rng(1)
    tpi, b = spec.tokens_per_image, 3
    prefix_ids = rng.integers(0, IMG - 1, (1, 9))
    prefix_ids[0, 3:3 + tpi] = IMG
    prefix_mask = np.ones((1, 9), np.int64)
    prefix_mask[0, :2] = 0
    suffix_ids = rng.integers(0, IMG - 1, (b, 8))
    suffix_ids[:, 1:1 + tpi] = IMG
    suffix_mask = np.ones((b, 8), np.int64)
    suffix_mask[1, -2:] = 0
    prefix_img = rng.standard_normal((1, 3, 56, 56)).astype(np.float32)
    frames = rng.standard_normal((b, 3, 56, 56)).astype(np.float32)
    full_ids = np.concatenate([np.repeat(prefix_ids, b, 0), suffix_ids], 1)
    full_mask = np.concatenate([np.repeat(prefix_mask, b, 0), suffix_mask], 1)
    full_pixels = np.stack([prefix_img[0] if i % 2 == 0 else frames[i // 2] for i in range(2 * b)])

    @jit
    def run(model):
        feats = model.embed_images(np.concatenate([prefix_img, frames]))  # the vision tower once
        pre = model.splice_images(model.embed_tokens(prefix_ids), prefix_ids, feats[:1])
        kv = model.decode(pre, attention_mask=prefix_mask, return_kv=True)["kv"]
        suf = model.splice_images(model.embed_tokens(suffix_ids), suffix_ids, feats[1:])
        out = model.decode(suf, attention_mask=suffix_mask, prefix=kv, return_kv=True)
        tiled = jax.tree.map(lambda a: jnp.repeat(a, b, axis=1 if a.ndim == 5 else 0), kv)
        out_tiled = model.decode(suf, attention_mask=suffix_mask, prefix=tiled)
        full_feats = feats[np.array([0 if i % 2 == 0 else 1 + i // 2 for i in range(2 * b)])]
        full = model.splice_images(model.embed_tokens(full_ids), full_ids, full_feats)
        ref = model.decode(full, attention_mask=full_mask, return_kv=True)
        return ref["logits"], kv, out, out_tiled["logits"], tiled.concat(out["kv"]), ref["kv"]

    ref, kv, out, tiled_logits, joined, kv_full = run(model)
    # the full-sequence path is last_token_logits (compared with transformers above)
    np.testing.assert_allclose(np.asarray(last_logits(model, full_pixels, full_ids, full_mask)), np.asarray(ref),
                               rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    assert kv.k.shape == (spec.text.depth, 1, 9, spec.text.kv_heads, spec.text.head_dim)
    print(f"prefix cache: rel err {rel_err(out['logits'], ref):.1e} (shared), {rel_err(tiled_logits, ref):.1e} (tiled)")
    assert rel_err(out["logits"], ref) <= 1e-5
    assert rel_err(tiled_logits, ref) <= 1e-5
    np.testing.assert_array_equal(np.asarray(joined.mask), full_mask.astype(bool))
    np.testing.assert_array_equal(np.asarray(kv_full.mask), full_mask.astype(bool))
    keep = full_mask.astype(bool)  # padding positions' own k / v are never attended to, so they may differ
    for a, r in ((joined.k, kv_full.k), (joined.v, kv_full.v)):
        assert rel_err(np.asarray(a)[:, keep], np.asarray(r)[:, keep]) <= 1e-5


def test_scan_unroll_and_remat_do_not_change_outputs():
    """Fully unrolled layer scans give the same logits; remat (both towers) the same value and gradient (taken
    with respect to the pixels, so that it flows back through both towers' scans)."""
    c = CONFIGS["A"]
    model_hf = hf_model(c["config"])
    spec = iv.InternVLSpec.from_hf_config(model_hf.config)
    pixels, ids, mask = make_inputs(c, spec)

    @jit
    def value_and_grad(m, pixels):
        def f(p):
            logits = m.last_token_logits(p, ids, mask)
            return logits[:, 7].sum(), logits
        return jax.value_and_grad(f, has_aux=True)(pixels)

    (v0, logits), g0 = value_and_grad(ours(model_hf, spec), pixels)
    (v1, _), g1 = value_and_grad(ours(model_hf, spec, remat=True), pixels)
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-6)
    g0, g1 = np.asarray(g0), np.asarray(g1)
    assert np.abs(g0).max() > 0
    np.testing.assert_allclose(g1, g0, rtol=1e-5, atol=1e-5 * np.abs(g0).max())
    logits = np.asarray(logits)
    unrolled = np.asarray(last_logits(ours(model_hf, spec, scan_unroll=True), pixels, ids, mask))
    np.testing.assert_allclose(unrolled, logits, rtol=1e-6, atol=1e-6 * np.abs(logits).max())


def _config(**changes):
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in CONFIGS["A"]["config"].items()}
    for key, value in changes.items():
        if key == "text_config" and "model_type" in value:
            cfg[key] = value
        elif key in ("vision_config", "text_config"):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return transformers.InternVLConfig(**cfg)


@pytest.mark.parametrize("changes, error, match", [
    (dict(vision_feature_select_strategy="full"), ValueError, "select_strategy"),
    (dict(vision_feature_layer=[-1, -2]), ValueError, "vision_feature_layer"),
    (dict(vision_feature_layer=-4), ValueError, "out of range"),
    (dict(downsample_ratio=0.3), ValueError, "downsample_ratio"),
    (dict(vision_config=dict(image_size=[56, 42])), ValueError, "square"),
    (dict(vision_config=dict(norm_type="batch_norm")), ValueError, "norm_type"),
    (dict(text_config=dict(rope_parameters={"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e4})),
     NotImplementedError, "yarn"),
    (dict(text_config=dict(use_sliding_window=True, sliding_window=4, max_window_layers=1)), ValueError,
     "sliding"),
    (dict(text_config=dict(model_type="llama", hidden_size=40, num_attention_heads=4)), ValueError, "Qwen2"),
])
def test_unsupported_configs_raise(changes, error, match):
    config = _config(**changes)
    with pytest.raises(error, match=match):
        iv.InternVLSpec.from_hf_config(config)


def test_bad_inputs_raise():
    model_hf = hf_model(CONFIGS["A"]["config"])
    spec = iv.InternVLSpec.from_hf_config(model_hf.config)
    model = ours(model_hf, spec)
    ids = np.full((1, 6), 3)
    ids[0, 1:5] = IMG
    with pytest.raises(ValueError, match="pixel_values"):
        model.last_token_logits(np.zeros((1, 3, 28, 28), np.float32), ids)
    with pytest.raises(ValueError, match="do not match"):
        model.last_token_logits(np.zeros((2, 3, 56, 56), np.float32), ids)
    params = nnx.to_pure_dict(nnx.state(model))
    del params["vision"]["cls_token"]
    with pytest.raises(ValueError, match="cls_token: missing"):
        ckpt.build_internvl(spec, params)


def test_dynamic_rope_is_the_default_rope_within_max_position_embeddings():
    """InternVL3's text config has dynamic NTK rope: transformers rescales its base only past
    max_position_embeddings, so at the lengths a reward prompt has it is the default rope, as the port reads it."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = _config(text_config=dict(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e6},
                                      max_position_embeddings=64))
    spec = iv.InternVLSpec.from_hf_config(config)
    assert spec.text.rope_type == "default" and spec.text.max_positions == 64
    inv_freq, _ = ROPE_INIT_FUNCTIONS["dynamic"](config.text_config, None)
    np.testing.assert_allclose(spec.text.inv_freq(), inv_freq.numpy(), rtol=1e-6)
