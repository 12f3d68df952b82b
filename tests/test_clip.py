"""Flax CLIP vs transformers' PyTorch CLIPModel, checkpoint loading (HF dirs, hub cache, open_clip files, errors),
tokenisation and preprocessing vs CLIPImageProcessor.

Tolerances: "relative error" is max|ours - reference| / max|reference| over the whole array. float32 must be
<= 1e-5 and bfloat16 matmuls <= 2e-2 against the float32 PyTorch reference.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rewardax.models import clip_checkpoints as ckpt
from rewardax.models.clip import CLIP
from rewardax.models.layers import count_params
from rewardax.models.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, preprocess_frames, resize_images
from rewardax.models.tiny_bpe import bytes_to_unicode

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, MERGES = ckpt.tiny_clip_vocab()
V = len(VOCAB)
EOS, BOS = V - 1, V - 2

# Tiny configurations: widths, depths, heads, patch / image sizes, projection sizes, activations, pooling rule.
CONFIGS = {
    "A": dict(  # quick_gelu, new eos rule (first eos), pad = eos
        projection_dim=24,
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, hidden_act="quick_gelu"),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=16, vocab_size=V, hidden_act="quick_gelu",
                         bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS),
    ),
    "B": dict(  # exact gelu, legacy eos_token_id == 2 (argmax pooling), odd patch size, pad = 0
        projection_dim=16,
        vision_config=dict(hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=3,
                           image_size=28, patch_size=7, hidden_act="gelu"),
        text_config=dict(hidden_size=40, intermediate_size=72, num_hidden_layers=1, num_attention_heads=5,
                         max_position_embeddings=12, vocab_size=V, hidden_act="gelu",
                         bos_token_id=BOS, eos_token_id=2, pad_token_id=0),
    ),
    "C": dict(  # mixed activations, one vision layer, one text head, text shorter than context, attention mask
        projection_dim=32,
        vision_config=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=1, num_attention_heads=2,
                           image_size=48, patch_size=16, hidden_act="gelu"),
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=1,
                         max_position_embeddings=20, vocab_size=V, hidden_act="quick_gelu",
                         bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS),
    ),
}
TEXT_LEN = {"A": 16, "B": 12, "C": 14}
PAD = {"A": EOS, "B": 0, "C": EOS}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def make_ids(rng, n, length, pad):
    ids = np.full((n, length), pad, np.int64)
    for r, eos_pos in enumerate([length - 1, length // 2, 2][:n]):
        ids[r, 0] = BOS
        ids[r, 1:eos_pos] = rng.integers(0, V - 2, eos_pos - 1)
        ids[r, eos_pos] = EOS
    mask = (np.arange(length)[None] <= np.array([length - 1, length // 2, 2][:n])[:, None]).astype(np.int64)
    return ids, mask


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory):
    return tmp_path_factory.mktemp("clip")


@pytest.fixture(scope="module")
def tok_dir(tmp_module):
    d = tmp_module / "tokenizer"
    ckpt.write_clip_tokenizer(d, VOCAB, MERGES)
    return d


def _save_torch_clip(name, directory, tok_dir, seed=0):
    torch.manual_seed(seed)
    config = transformers.CLIPConfig(**CONFIGS[name])
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():  # make every LayerNorm / bias non-trivial so that loading them is tested
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(directory)
    for f in tok_dir.iterdir():
        shutil.copy(f, directory / f.name)
    return model


@pytest.fixture(scope="module")
def cases(tmp_module, tok_dir):
    """``cases(name)``: a tiny random transformers CLIPModel saved with save_pretrained, and its PyTorch outputs
    (built once per module)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _make_case(name, tmp_module, tok_dir)
        return cache[name]

    return get


def _make_case(name, tmp_module, tok_dir):
    directory = tmp_module / f"hf_{name}"
    model = _save_torch_clip(name, directory, tok_dir)
    rng = np.random.default_rng(1)
    s = model.config.vision_config.image_size
    pixels = rng.standard_normal((2, s, s, 3)).astype(np.float32)
    ids, mask = make_ids(rng, 3, TEXT_LEN[name], PAD[name])
    use_mask = name == "C"
    tp = torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())
    ti = torch.from_numpy(ids)
    tm = torch.from_numpy(mask) if use_mask else None
    with torch.no_grad():
        out = model(input_ids=ti, pixel_values=tp, attention_mask=tm)
        vis = model.vision_model(pixel_values=tp, output_hidden_states=True)
        txt = model.text_model(input_ids=ti, attention_mask=tm)
        ref = {
            "image_embeds": model.get_image_features(pixel_values=tp).pooler_output.numpy(),
            "text_embeds": model.get_text_features(input_ids=ti, attention_mask=tm).pooler_output.numpy(),
            "logits_per_image": out.logits_per_image.numpy(),
            "logits_per_text": out.logits_per_text.numpy(),
            "image_pooled": vis.pooler_output.numpy(),
            "image_layers": np.stack([h.numpy() for h in vis.hidden_states[1:]]),
            "text_pooled": txt.pooler_output.numpy(),
        }
    return dict(name=name, dir=directory, torch_model=model, pixels=pixels, ids=ids.astype(np.int32),
                mask=mask.astype(np.int32) if use_mask else None, ref=ref)


@nnx.jit
def run_all(model: CLIP, pixels, ids, mask):
    image, image_int = model.encode_image(pixels, return_intermediates=True)
    text, text_int = model.encode_text(ids, mask, return_intermediates=True)
    out = model(pixels, ids, mask)
    return {"image_embeds": image, "text_embeds": text, "logits_per_image": out["logits_per_image"],
            "logits_per_text": out["logits_per_text"], "image_pooled": image_int["pooled"],
            "image_layers": image_int["per_layer"], "text_pooled": text_int["pooled"]}


# --------------------------------------------------------------------------------------------------------------
# Numerics vs transformers
# --------------------------------------------------------------------------------------------------------------


# bfloat16: the similarity logits (100 × a cosine near 0 for random towers) carry the largest relative error, 1.6e-2 to
# 2.3e-2 on config C depending on where the attention weights are rounded (before or after normalising).
@pytest.mark.parametrize("dtype_mm,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_transformers(cases, name, dtype_mm, tol):
    case = cases(name)
    model, tok = ckpt.load_clip(case["dir"], dtype_mm=dtype_mm)  # the code path a hub id takes after download
    assert tok is not None
    got = run_all(model, case["pixels"], case["ids"], case["mask"])
    keys = ["image_embeds", "text_embeds", "logits_per_image", "logits_per_text"]
    if dtype_mm == jnp.float32:
        keys += ["image_pooled", "image_layers", "text_pooled"]
    errs = {k: rel_err(got[k], case["ref"][k]) for k in keys}
    print(case["name"], jnp.dtype(dtype_mm).name, {k: f"{v:.2e}" for k, v in errs.items()})
    assert all(v <= tol for v in errs.values()), errs
    assert got["logits_per_image"].shape == (2, 3)


def test_text_pooling_rules(cases):
    """Legacy configs (eos_token_id == 2) pool at argmax(ids); others at the first eos."""
    for name in CONFIGS:
        model, _ = ckpt.load_clip(cases(name)["dir"], tokenizer=False)
        assert model.spec.text_pool == ("argmax" if name == "B" else "first_eos"), name


def test_remat_same_values_and_grads(cases):
    case = cases("A")
    plain, _ = ckpt.load_clip(case["dir"], tokenizer=False)
    remat, _ = ckpt.load_clip(case["dir"], tokenizer=False, remat=True)

    @nnx.jit
    def value_and_grad(model, pixels):
        return jax.value_and_grad(lambda x: jnp.sum(model.encode_image(x) ** 2))(pixels)

    v1, g1 = value_and_grad(plain, case["pixels"])
    v2, g2 = value_and_grad(remat, case["pixels"])
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------------------------
# Loading paths: hub cache, sharded safetensors, open_clip layout, write_random_clip
# --------------------------------------------------------------------------------------------------------------


def _outputs(directory_or_file, case, **kw):
    model, _ = ckpt.load_clip(directory_or_file, tokenizer=kw.pop("tokenizer", False), **kw)
    return run_all(model, case["pixels"], case["ids"], case["mask"])


def _torch_state(case) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in case["torch_model"].state_dict().items()}


def test_hub_id_from_offline_cache(cases, tmp_path, monkeypatch):
    """A hub id resolves through huggingface_hub's cache layout (offline) to the same loader."""
    case = cases("A")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    repo = tmp_path / "hf" / "hub" / "models--rewardax-test--tiny-clip"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(case["dir"], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    model, tok = ckpt.load_clip("rewardax-test/tiny-clip")
    got = run_all(model, case["pixels"], case["ids"], case["mask"])
    assert rel_err(got["logits_per_image"], case["ref"]["logits_per_image"]) <= 1e-5
    assert tok("a robot")["input_ids"][-1] == EOS


def test_sharded_safetensors(cases, tmp_path):
    case = cases("B")
    from safetensors.numpy import save_file

    state = _torch_state(case)
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for f in case["dir"].iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, tmp_path / f.name)
    weight_map = {}
    for fname, ks in shards.items():
        save_file({k: state[k] for k in ks}, str(tmp_path / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in ks})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    got = _outputs(tmp_path, case)
    ref = _outputs(case["dir"], case)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])


def hf_to_open_clip_state(hf: dict[str, np.ndarray], vdepth: int, tdepth: int, ctx: int) -> dict[str, np.ndarray]:
    """The test's own re-layout of a transformers CLIPModel state dict into open_clip's state-dict layout."""
    oc = {
        "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
        "visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
        "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
        "visual.ln_pre.weight": hf["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": hf["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": hf["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": hf["vision_model.post_layernorm.bias"],
        "visual.proj": hf["visual_projection.weight"].T,  # open_clip stores [width, embed]
        "token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": hf["text_model.final_layer_norm.weight"],
        "ln_final.bias": hf["text_model.final_layer_norm.bias"],
        "text_projection": hf["text_projection.weight"].T,
        "logit_scale": hf["logit_scale"],
        "attn_mask": np.triu(np.full((ctx, ctx), -np.inf, np.float32), 1),  # buffer present in old checkpoints
    }
    for src, dst, depth in (("vision_model", "visual.transformer", vdepth), ("text_model", "transformer", tdepth)):
        for i in range(depth):
            a, b = f"{src}.encoder.layers.{i}.", f"{dst}.resblocks.{i}."
            oc[b + "attn.in_proj_weight"] = np.concatenate([hf[a + f"self_attn.{n}_proj.weight"] for n in "qkv"])
            oc[b + "attn.in_proj_bias"] = np.concatenate([hf[a + f"self_attn.{n}_proj.bias"] for n in "qkv"])
            for ours, theirs in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                                 ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                oc[b + ours + ".weight"] = hf[a + theirs + ".weight"]
                oc[b + ours + ".bias"] = hf[a + theirs + ".bias"]
    return {k: np.ascontiguousarray(v) for k, v in oc.items()}


def open_clip_arch(name: str) -> dict:
    """open_clip-style architecture dict for a tiny test configuration."""
    c = CONFIGS[name]
    v, t = c["vision_config"], c["text_config"]
    assert v["hidden_act"] == t["hidden_act"], "open_clip has one activation for both towers"
    return {
        "embed_dim": c["projection_dim"],
        "quick_gelu": v["hidden_act"] == "quick_gelu",
        "vision_cfg": {"image_size": v["image_size"], "layers": v["num_hidden_layers"], "width": v["hidden_size"],
                       "patch_size": v["patch_size"], "head_width": v["hidden_size"] // v["num_attention_heads"],
                       "mlp_ratio": v["intermediate_size"] / v["hidden_size"]},
        "text_cfg": {"context_length": t["max_position_embeddings"], "vocab_size": t["vocab_size"],
                     "width": t["hidden_size"], "heads": t["num_attention_heads"], "layers": t["num_hidden_layers"],
                     "mlp_ratio": t["intermediate_size"] / t["hidden_size"]},
    }


def _write_open_clip(case, directory: pathlib.Path):
    from safetensors.numpy import save_file

    c = CONFIGS[case["name"]]
    oc = hf_to_open_clip_state(_torch_state(case), c["vision_config"]["num_hidden_layers"],
                               c["text_config"]["num_hidden_layers"], c["text_config"]["max_position_embeddings"])
    st = directory / "tiny_open_clip.safetensors"
    save_file(oc, str(st))
    pt = directory / "tiny_open_clip.pt"
    torch.save({k: torch.from_numpy(v) for k, v in oc.items()}, pt)
    return oc, st, pt


@pytest.mark.parametrize("name", ["A", "B"])  # open_clip has one activation for both towers
def test_open_clip_layout_loads_identically(cases, name, tmp_path, tok_dir):
    """The same random weights in open_clip's layout (.safetensors and torch .pt) give identical outputs."""
    case = cases(name)
    _, st, pt = _write_open_clip(case, tmp_path)
    arch = open_clip_arch(case["name"])
    ref = _outputs(case["dir"], case)
    for path in (st, pt):
        model, tok = ckpt.load_clip(path, arch=arch, tokenizer=tok_dir)
        assert model.spec.text_pool == "argmax"  # what open_clip does
        got = run_all(model, case["pixels"], case["ids"], case["mask"])
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-6 * float(np.max(np.abs(ref[k]))),
                                       err_msg=f"{path.name}: {k}")


def test_write_random_clip_matches_transformers(tmp_module):
    """write_random_clip (no torch) writes a checkpoint transformers loads; both give the same embeddings."""
    path = ckpt.write_random_clip(tmp_module / "random_clip", seed=3)
    assert "RANDOM" in (path / "README.md").read_text()
    model, tok = ckpt.load_clip(path)
    tm = transformers.CLIPModel.from_pretrained(path).eval()
    ttok = transformers.CLIPTokenizer.from_pretrained(path)
    prompts = ["a humanoid robot kneeling", "a humanoid robot"]
    ids = ckpt.tokenize(tok, prompts, model.spec.context_length)
    np.testing.assert_array_equal(ids, ttok(prompts, padding="max_length", max_length=77, return_tensors="np")[
        "input_ids"])
    frames = np.random.default_rng(0).integers(0, 256, (2, 60, 80, 3), dtype=np.uint8)
    pixels = np.asarray(preprocess_frames(jnp.asarray(frames), model.spec.image_size))
    with torch.no_grad():
        out = tm(input_ids=torch.from_numpy(ids.astype(np.int64)),
                 pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()))
    got = model(jnp.asarray(pixels), jnp.asarray(ids))
    assert rel_err(got["logits_per_image"], out.logits_per_image.numpy()) <= 1e-5
    assert rel_err(got["image_embeds"], out.image_embeds.numpy()) <= 1e-5


def test_open_clip_arch_table_parameter_counts():
    """The named architectures reproduce open_clip's published parameter counts (millions)."""
    expected = {"ViT-B-32": 151.28, "ViT-B-16": 149.62, "ViT-L-14": 427.62, "ViT-H-14": 986.11,
                "ViT-bigG-14": 2539.57}
    for name, millions in expected.items():
        abstract = nnx.eval_shape(lambda n=name: CLIP(ckpt.open_clip_spec(n), rngs=nnx.Rngs(0)))
        assert round(count_params(abstract) / 1e6, 2) == millions, name
    assert ckpt.open_clip_spec("ViT-B-32-quickgelu").vision.act == "quick_gelu"
    assert ckpt.open_clip_spec("ViT-bigG-14").vision.act == "gelu"
    assert ckpt.open_clip_spec("ViT-bigG-14").vision.mlp_dim == 8192
    # transformers' default CLIPConfig is OpenAI's ViT-B/32.
    abstract = nnx.eval_shape(lambda: CLIP(transformers.CLIPConfig(), rngs=nnx.Rngs(0)))
    assert count_params(abstract) == 151_277_313


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


def test_error_truncated_safetensors(tmp_module, tmp_path):
    src = ckpt.write_random_clip(tmp_module / "random_for_truncation")
    shutil.copytree(src, tmp_path / "ckpt")
    f = tmp_path / "ckpt" / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_clip(tmp_path / "ckpt")
    assert str(f) in str(e.value)


def test_error_missing_unexpected_and_mismatched_keys(cases, tmp_path, tok_dir):
    case = cases("A")
    from safetensors.numpy import save_file

    oc, _, _ = _write_open_clip(case, tmp_path)
    del oc["visual.ln_post.bias"], oc["transformer.resblocks.1.mlp.c_fc.weight"]
    oc["visual.extra_head.weight"] = np.zeros((2, 2), np.float32)
    oc["token_embedding.weight"] = oc["token_embedding.weight"][:-5]
    bad = tmp_path / "bad_open_clip.safetensors"
    save_file(oc, str(bad))
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_clip(bad, arch=open_clip_arch("A"), tokenizer=False)
    msg = str(e.value)
    for piece in (str(bad), "missing keys (2)", "visual.ln_post.bias", "transformer.resblocks.1.mlp.c_fc.weight",
                  "unexpected keys (1)", "visual.extra_head.weight", "mismatched shapes (1)",
                  "token_embedding.weight"):
        assert piece in msg, (piece, msg)

    # The same for a Hugging Face directory with a tensor removed.
    from safetensors.numpy import load_file

    hf = tmp_path / "hf_missing"
    shutil.copytree(case["dir"], hf)
    state = load_file(str(hf / "model.safetensors"))
    del state["text_projection.weight"]
    save_file(state, str(hf / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ckpt.CheckpointError, match="text_projection.weight"):
        ckpt.load_clip(hf)

    # A truncated torch file.
    pt = tmp_path / "tiny_open_clip.pt"
    pt.write_bytes(pt.read_bytes()[:1000])
    with pytest.raises(ckpt.CheckpointError, match="tiny_open_clip.pt"):
        ckpt.load_clip(pt, arch=open_clip_arch("A"), tokenizer=False)


def test_error_torch_file_without_torch(tmp_path, monkeypatch):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ckpt.CheckpointError, match="needs torch"):
        ckpt.load_clip(f, arch="ViT-B-32", tokenizer=False)


def test_error_offline_hub_id_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ckpt.CheckpointNotFoundError) as e:
        ckpt.load_clip("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k")
    msg = str(e.value)
    for piece in ("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", str(tmp_path / "empty_home" / "hub"), "HF_HOME",
                  "local directory", "smoke"):
        assert piece in msg, (piece, msg)


def test_error_open_clip_default_tokenizer_offline(cases, tmp_path, monkeypatch):
    """An open_clip file without tokenizer= falls back to the cached openai tokenizer, else says what to pass."""
    _, st, _ = _write_open_clip(cases("A"), tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ckpt.CheckpointNotFoundError) as e:
        ckpt.load_clip(st, arch=open_clip_arch("A"))
    for piece in ("CLIP tokenizer", ckpt.DEFAULT_OPEN_CLIP_TOKENIZER, "tokenizer=", "vocab.json", "HF_HOME"):
        assert piece in str(e.value), (piece, str(e.value))


def test_error_bad_arch_and_missing_path(tmp_path):
    with pytest.raises(ValueError, match="ViT-bigG-14"):
        ckpt.open_clip_spec("ViT-X-99")
    with pytest.raises(ckpt.CheckpointNotFoundError, match="no such file"):
        ckpt.load_clip(tmp_path / "nothing_here.safetensors")


# --------------------------------------------------------------------------------------------------------------
# Tokenisation (offline)
# --------------------------------------------------------------------------------------------------------------

PROMPTS = [
    "a humanoid robot practicing gymnastics, doing the side splits",
    "Pole   vertically UPRIGHT on top of the cart.",
    "a car at the peak of the mountain, next to the yellow flag!!",
    "it's a zebra's 7 legs",
]


def reference_clip_bpe(text: str) -> list[int]:
    """CLIP's tokenisation algorithm written out (the algorithm of OpenAI's / open_clip's SimpleTokenizer without
    ftfy / HTML unescaping): fold whitespace, lower-case, split with CLIP's regex, byte-encode, greedy BPE."""
    regex = pytest.importorskip("regex")
    b2u = bytes_to_unicode()
    ranks = {tuple(m): i for i, m in enumerate(MERGES)}
    text = regex.sub(r"\s+", " ", text).strip().lower()
    pattern = regex.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"
                            r"[^\s\p{L}\p{N}]+", regex.IGNORECASE)
    ids = [VOCAB["<|startoftext|>"]]
    for piece in pattern.findall(text):
        chars = [b2u[b] for b in piece.encode("utf-8")]
        word = chars[:-1] + [chars[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
            best = min(pairs)[0]
            if best == 1 << 30:
                break
            a, b = MERGES[best]
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        ids += [VOCAB[w] for w in word]
    return ids + [VOCAB["<|endoftext|>"]]


def test_tokenisation_offline(cases, tmp_path, tok_dir):
    """Our text pipeline gives the same ids for: the HF checkpoint's tokenizer, the open_clip path's
    ``tokenizer=`` (vocab.json + merges.txt only), and CLIP's BPE algorithm written out."""
    case = cases("A")
    _, tok_hf = ckpt.load_clip(case["dir"])
    vm = tmp_path / "vocab_merges_only"
    vm.mkdir()
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(tok_dir / f, vm / f)
    tok_vm = ckpt.load_tokenizer(vm)
    a = ckpt.tokenize(tok_hf, PROMPTS, 32)
    b = ckpt.tokenize(tok_vm, PROMPTS, 32)
    np.testing.assert_array_equal(a, b)
    for row, prompt in zip(a, PROMPTS):
        ref = reference_clip_bpe(prompt)
        np.testing.assert_array_equal(row[: len(ref)], ref, err_msg=prompt)
        assert (row[len(ref):] == tok_hf.pad_token_id).all()
    # Truncation keeps the end-of-text token.
    long = ckpt.tokenize(tok_hf, [" ".join(["robot"] * 40)], 16)
    assert long.shape == (1, 16) and long[0, -1] == EOS and long[0, 0] == BOS


# --------------------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------------------


def _smooth_frames(rng, n, h, w):
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([127 + 120 * np.sin(x / 7.0 + c) * np.cos(y / 11.0 - c) for c in range(3)], -1)
    return np.clip(img[None] + rng.normal(0, 10, (n, h, w, 3)), 0, 255).astype(np.uint8)


def _levels(diff):
    return np.abs(diff) * np.asarray(OPENAI_CLIP_STD) * 255.0  # normalised difference -> uint8 levels


@pytest.mark.parametrize("h,w,size", [(64, 48, 32), (20, 30, 32), (37, 53, 24)],
                         ids=["down-portrait", "up-landscape", "odd"])
def test_preprocess_matches_clip_image_processor(h, w, size):
    """center_crop mode vs CLIPImageProcessor (PIL bicubic on uint8, resize shortest side + centre crop)."""
    rng = np.random.default_rng(h * w)
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": size},
                                                crop_size={"height": size, "width": size})
    for frames, kind in ((rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8), "noise"),
                         (_smooth_frames(rng, 2, h, w), "smooth")):
        ref = processor(images=list(frames), return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
        exact = np.asarray(preprocess_frames(jnp.asarray(frames), size, "center_crop"))
        lv = _levels(exact - ref)
        # PIL arithmetic reproduced: <= 2 uint8 levels anywhere (0.03 normalised), > 0.5 level on <= 0.5%.
        assert lv.max() <= 2.01 and (lv > 0.5).mean() <= 5e-3, (kind, lv.max(), (lv > 0.5).mean())
        smooth = np.asarray(preprocess_frames(jnp.asarray(frames), size, "center_crop", round_to_uint8=False))
        d = np.abs(smooth - ref)
        if kind == "smooth":  # one float pass: ~0.5 level mean, a few levels max
            assert d.mean() <= 0.006 and d.max() <= 0.08, (d.mean(), d.max())
        else:  # noise: PIL clips the cubic overshoot between its passes (tens of levels)
            assert d.mean() <= 0.01 and d.max() <= 0.5, (d.mean(), d.max())
        print(f"{kind} {h}x{w}->{size}: PIL-exact max {lv.max():.2f} levels, frac>0.5 {(lv > 0.5).mean():.1e}; "
              f"float max {d.max():.4f} mean {d.mean():.4f}")


@pytest.mark.parametrize("h,w", [(32, 24), (37, 53), (100, 90)], ids=["half", "down-up", "up"])
def test_resize_images_bilinear_matches_pil(h, w):
    """``resize_images(method="bilinear")`` (the resize a new adaptive reference image takes in the train step) vs
    PIL's ``BILINEAR`` on uint8 frames: whole values, bit-exact where the weights are dyadic (halving), elsewhere
    one level per pass at most (ties at .5, which PIL's 22-bit fixed-point weights break either way)."""
    from PIL import Image

    rng = np.random.default_rng(h * w)
    frames = np.concatenate([_smooth_frames(rng, 1, 64, 48), rng.integers(0, 256, (1, 64, 48, 3), dtype=np.uint8)])
    ref = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames]).astype(int)
    fn = jax.jit(resize_images, static_argnums=(1, 2), static_argnames=("method",))
    got = np.asarray(fn(jnp.asarray(frames), h, w, method="bilinear"))
    assert got.shape == (2, h, w, 3) and got.dtype == np.float32 and (got == np.round(got)).all()
    d = np.abs(got.astype(int) - ref)
    if (h, w) == (32, 24):
        assert d.max() == 0
    assert d.max() <= 2 and (d > 1).mean() <= 1e-3 and d.mean() <= 0.3, (d.max(), (d > 1).mean(), d.mean())
    single = resize_images(jnp.asarray(frames[1]), h, w, method="bilinear")  # any leading axes, or none
    np.testing.assert_array_equal(single, got[1])
    np.testing.assert_array_equal(resize_images(jnp.asarray(frames), 64, 48, method="bilinear"), frames)
    with pytest.raises(ValueError, match="unknown resize method 'nearest'"):
        resize_images(jnp.asarray(frames), h, w, method="nearest")

def test_preprocess_squash_vs_pil_and_jit():
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = _smooth_frames(rng, 3, 40, 60)
    size = 32
    ref = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])
    ref = (ref / 255.0 - np.asarray(OPENAI_CLIP_MEAN)) / np.asarray(OPENAI_CLIP_STD)
    fn = jax.jit(preprocess_frames, static_argnames=("image_size", "mode", "round_to_uint8"))
    got = np.asarray(fn(jnp.asarray(frames), image_size=size))
    assert got.shape == (3, size, size, 3) and got.dtype == np.float32
    lv = _levels(got - ref)
    assert lv.max() <= 2.01 and (lv > 0.5).mean() <= 5e-3
    single = preprocess_frames(jnp.asarray(frames[0]), size)
    np.testing.assert_allclose(single, got[0], atol=1e-6)
