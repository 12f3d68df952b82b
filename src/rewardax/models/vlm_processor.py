"""Text and images -> the inputs of `rewardax.models.internvl.InternVL`, as transformers' InternVLProcessor makes them.

    processor = VLMProcessor.from_directory(checkpoint_dir)
    inputs = processor(["Does this figure show \\"a cat\\"? Please answer yes or no."], frames)   # numpy arrays
    logits = model.last_token_logits(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])

- Text: each question goes through the checkpoint's chat template (a user turn holding the images, then the
  text, then the assistant's turn opened), and each image placeholder becomes ``<img>`` + ``image_seq_length``
  × ``<IMG_CONTEXT>`` + ``</img>``, InternVLProcessor's expansion; rows are left-padded (its default), so the
  answer position is the last column.
- Images: one 448² tile per frame (the tiling InternVLProcessor picks for a square frame of up to ~630 px;
  frames of another aspect ratio are squashed to the square, as the CLIP reward does), resized and normalised
  with the checkpoint's ImageNet mean and std in JAX (`preprocess`, jittable: it runs inside the training step).
  transformers' image processor needs torchvision or PIL; this one needs neither.
- Answers: `answer_ids` finds the single-token spellings of a word ("yes", "Yes", " yes", ...).

transformers' own InternVLProcessor cannot be built without torchvision (its video processor needs it), which
this project does not install; the tests check this one against the expansion, template and pixel arithmetic
transformers uses.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardax.models.preprocess import preprocess_frames
from rewardax.models.weights import CheckpointError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"}
"""InternVL's image tokens: the tokenizer's named special tokens, with these defaults."""


@dataclasses.dataclass(frozen=True)
class VLMProcessor:
    tokenizer: object
    """A transformers tokenizer with the checkpoint's chat template."""
    image_size: int
    image_seq_length: int
    """``<IMG_CONTEXT>`` tokens per image (the model's tokens per tile after the pixel shuffle)."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise CheckpointError("the tokenizer has no chat template: a chat checkpoint ships one "
                                  "(chat_template.jinja or in tokenizer_config.json)")
        for name, default in IMAGE_TOKENS.items():
            token = getattr(self.tokenizer, name, None) or default
            if self.tokenizer.convert_tokens_to_ids(token) in (None, self.tokenizer.unk_token_id):
                raise CheckpointError(f"the tokenizer has no {token!r} token ({name}): not an InternVL tokenizer")

    @classmethod
    def from_directory(cls, directory: pathlib.Path, image_size: int, image_seq_length: int) -> VLMProcessor:
        """The tokenizer and chat template of a Hugging Face directory, mean and std from its
        preprocessor_config.json (ImageNet's when absent)."""
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
        except Exception as e:  # noqa: BLE001 - transformers raises many types for a bad tokenizer
            raise CheckpointError(f"{directory}: cannot load its tokenizer ({type(e).__name__}: {e})") from e
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        config = directory / "preprocessor_config.json"
        if config.is_file():
            raw = json.loads(config.read_text())
            mean, std = tuple(raw.get("image_mean", mean)), tuple(raw.get("image_std", std))
        return cls(tokenizer, image_size, image_seq_length, mean, std)

    def token(self, name: str) -> str:
        return getattr(self.tokenizer, name, None) or IMAGE_TOKENS[name]

    @property
    def image_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.token("context_image_token")))

    def prompt(self, text: str, images: int = 1) -> str:
        """The chat-formatted prompt of one user turn with ``images`` images then ``text``, the assistant's turn
        opened, image placeholders expanded."""
        content = [{"type": "image"}] * images + [{"type": "text", "text": text}]
        chat = self.tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                  add_generation_prompt=True)
        context = self.token("context_image_token")
        if chat.count(context) != images:
            raise CheckpointError(f"the chat template writes {chat.count(context)} {context} placeholders for "
                                  f"{images} images: not an InternVL chat template")
        tile = self.token("start_image_token") + context * self.image_seq_length + self.token("end_image_token")
        return chat.replace(context, tile)

    def tokenize(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` int32 ``[B, T]``, left-padded."""
        encoded = self.tokenizer(list(prompts), padding=True, padding_side="left", return_tensors="np",
                                 add_special_tokens=False)
        return np.asarray(encoded["input_ids"], np.int32), np.asarray(encoded["attention_mask"], np.int32)

    def preprocess(self, frames: jax.Array) -> jax.Array:
        """uint8 frames ``[B, H, W, 3]`` -> normalised ``[B, 3, image_size, image_size]`` float32 (jittable)."""
        x = preprocess_frames(frames, self.image_size, "squash", mean=self.mean, std=self.std)
        return jnp.transpose(x, (0, 3, 1, 2))

    def __call__(self, texts: Sequence[str], frames=None) -> dict[str, np.ndarray]:
        """Questions (one image each when ``frames`` is given, in order) -> the model's inputs."""
        images = 0 if frames is None else 1
        if frames is not None and len(frames) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(frames)} frames: one frame per text")
        input_ids, attention_mask = self.tokenize([self.prompt(t, images) for t in texts])
        out = {"input_ids": input_ids, "attention_mask": attention_mask}
        if frames is not None:
            out["pixel_values"] = np.asarray(self.preprocess(jnp.asarray(frames)))
        return out

    def answer_ids(self, word: str) -> list[int]:
        """Ids of the single-token spellings of ``word``: lower, capitalised and upper case, each with and
        without a leading space (how a model may start its answer). One clear error when there are none."""
        ids = []
        for spelling in dict.fromkeys(f"{space}{case}" for case in (word.lower(), word.capitalize(), word.upper())
                                      for space in ("", " ")):
            encoded = self.tokenizer.encode(spelling, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] not in ids:
                ids.append(int(encoded[0]))
        if not ids:
            raise CheckpointError(f"the tokenizer has no single token for {word!r} in any case, with or without a "
                                  f"leading space: the answer cannot be read from one next-token distribution")
        return ids
