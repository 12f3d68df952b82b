"""`load_vlm` and the tiny random InternVL checkpoints: loading, the processor, and one clear error per bad input.

The model's own parity with transformers (several shapes, bfloat16, the prefix cache) is tests/test_internvl.py;
here the whole path a user takes is checked end to end: `write_random_vlm` -> `load_vlm` -> processor inputs ->
`last_token_logits`, against transformers loading the same directory.
"""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from rewardax.models import CheckpointError, CheckpointNotFoundError, load_vlm, write_random_vlm

pytestmark = pytest.mark.timeout(300)

QUESTION = 'Does this figure show "a humanoid robot kneeling"? Please answer yes or no.'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = write_random_vlm(tmp_path_factory.mktemp("vlm") / "tiny")
    model, processor = load_vlm(directory)
    return directory, model, processor


def frames(n, size=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_the_prompt_is_the_chat_template_with_the_image_tokens_expanded(tiny):
    _, _, processor = tiny
    assert processor.prompt(QUESTION) == (
        "<|im_start|>user\n<img>" + "<IMG_CONTEXT>" * 4 + "</img>\n" + QUESTION + "<|im_end|>\n<|im_start|>assistant\n")
    inputs = processor([QUESTION, "yes"], frames(2))
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == 2
    assert (mask[1, :ids.shape[1] - mask[1].sum()] == 0).all()  # the short row is left-padded
    assert ((ids == processor.image_token_id).sum(axis=1) == 4).all()
    assert inputs["pixel_values"].shape == (2, 3, 56, 56)


def test_pixels_are_the_image_processors(tiny):
    """One tile per square frame: at the model's size the pixels are transformers' rescale and ImageNet
    normalisation exactly (GotOcr2's PIL path, which InternVL's processor uses without torchvision)."""
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    directory, _, processor = tiny
    reference = transformers.GotOcr2ImageProcessorPil.from_pretrained(str(directory))
    images = frames(2)
    expected = reference([Image.fromarray(x) for x in images], crop_to_patches=False, return_tensors="np")
    np.testing.assert_allclose(processor(["a", "b"], images)["pixel_values"], expected["pixel_values"], atol=1e-5)


def test_yes_and_no_are_single_tokens_in_several_spellings(tiny):
    _, _, processor = tiny
    yes, no = processor.answer_ids("yes"), processor.answer_ids("no")
    assert len(yes) >= 2 and len(no) >= 2 and not set(yes) & set(no)
    assert processor.tokenizer.decode([yes[0]]) == "yes"
    with pytest.raises(CheckpointError, match="no single token for 'photosynthesis'"):
        processor.answer_ids("photosynthesis")


def test_the_loaded_model_scores_like_transformers_loading_the_same_directory(tiny):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    directory, model, processor = tiny
    reference, info = transformers.InternVLForConditionalGeneration.from_pretrained(
        str(directory), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    inputs = processor([QUESTION, "Is it?"], frames(2))
    with torch.no_grad():
        expected = reference.eval()(**{k: torch.tensor(v if k == "pixel_values" else v.astype(np.int64))
                                       for k, v in inputs.items()}).logits[:, -1].numpy()
    got = np.asarray(jax.jit(model.last_token_logits)(inputs["pixel_values"], inputs["input_ids"],
                                                      inputs["attention_mask"]))
    assert np.abs(got - expected).max() / np.abs(expected).max() <= 1e-4


def test_a_hub_id_resolves_through_the_offline_cache(tiny, tmp_path, monkeypatch):
    directory, model, _ = tiny
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    repo = tmp_path / "hf" / "hub" / "models--rewardax-test--tiny-vlm"
    shutil.copytree(directory, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    again, _ = load_vlm("rewardax-test/tiny-vlm")
    ids = np.asarray([[1, 2, 3]], np.int32)
    np.testing.assert_array_equal(again.last_token_logits(None, ids), model.last_token_logits(None, ids))


def _broken_copy(tiny, tmp_path):
    directory = tmp_path / "broken"
    shutil.copytree(tiny[0], directory)
    return directory


def test_a_missing_or_misshapen_tensor_is_named(tiny, tmp_path):
    from safetensors.numpy import load_file, save_file

    directory = _broken_copy(tiny, tmp_path)
    tensors = load_file(str(directory / "model.safetensors"))
    dropped = next(k for k in tensors if "layers.1.mlp.up_proj" in k)
    reshaped = next(k for k in tensors if k.endswith("norm.weight") and "language_model" in k)
    del tensors[dropped]
    tensors[reshaped] = tensors[reshaped][:-1]
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError) as error:
        load_vlm(directory)
    assert "missing keys (1): model.language_model.layers.1.mlp.up_proj.weight" in str(error.value)
    assert "mismatched shapes (1)" in str(error.value) and "vs expected [32]" in str(error.value)


def test_bad_checkpoints_get_one_clear_error(tiny, tmp_path, monkeypatch):
    directory = _broken_copy(tiny, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "internvl_chat"}))
    with pytest.raises(CheckpointError, match="trust_remote_code.*-hf"):
        load_vlm(directory)
    (directory / "config.json").write_text(json.dumps(config))
    template = directory / "chat_template.jinja"
    template.unlink()
    with pytest.raises(CheckpointError, match="no chat template"):
        load_vlm(directory)
    with pytest.raises(CheckpointNotFoundError, match="no such file"):
        load_vlm(tmp_path / "nothing_here")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(CheckpointNotFoundError, match="OpenGVLab/InternVL3-1B-hf.*write_random_vlm"):
        load_vlm("OpenGVLab/InternVL3-1B-hf")
