"""Reading model weights, shared by every loader (`clip_checkpoints`, `internvl_checkpoints`).

- Where: `locate` turns a hub id (downloaded once into the Hugging Face cache, or read from it offline), a local
  directory or a file into a path; `resolve_hub` is the hub half. A name found nowhere raises
  `CheckpointNotFoundError` naming what was looked for, the cache directory and the caller's options.
- What: a `TensorSource` (names and shapes first, arrays on demand) over a single or sharded safetensors
  checkpoint (`hf_directory_source`), a safetensors file, or a PyTorch state dict read with
  ``torch.load(weights_only=True)`` (`torch_source`; only where torch is installed). No pickle otherwise.
- Checked: `validate` compares the names and shapes with what the architecture expects and raises one
  `CheckpointError` listing every missing, unexpected and mis-shaped tensor; `fill_module` puts converted
  arrays into an abstract NNX module, one leaf at a time, and checks the converter's output against the module.
  Nothing is ever partially loaded.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from rewardax.trees import flatten, nest

PathLike = str | os.PathLike

HUB_ALLOW_PATTERNS = (
    "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "chat_template.json", "chat_template.jinja", "model.safetensors", "model.safetensors.index.json",
    "model-*-of-*.safetensors",
)
"""Files fetched for a hub id: configs, tokenizer, processor, chat template and the (possibly sharded)
safetensors; never pickled weights."""


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not match the architecture (lists every problem)."""


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint could not be found locally nor downloaded."""


class TensorSource:
    """Mapping key -> shape, with ``get(key) -> np.ndarray``; ``files`` names the file(s) for error messages."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], get: Callable[[str], np.ndarray], files: str):
        self.shapes, self.get, self.files = shapes, get, files


def safetensors_source(paths: Sequence[pathlib.Path], weight_map: Mapping[str, str] | None = None) -> TensorSource:
    from safetensors import safe_open

    handles, shapes, where = {}, {}, {}
    for path in paths:
        try:
            handle = safe_open(str(path), framework="numpy")
            keys = list(handle.keys())
            for k in keys:
                shapes[k] = tuple(handle.get_slice(k).get_shape())
                where[k] = path
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for bad files
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({type(e).__name__}: {e}); it may be truncated or "
                "corrupt: delete it and download / write it again") from e
        handles[path] = handle
    if weight_map is not None:
        missing = sorted(k for k in weight_map if k not in shapes)
        if missing:
            raise CheckpointError(
                f"{paths[0].parent}: model.safetensors.index.json lists {len(missing)} tensors absent from the "
                f"shards: {short_list(missing)}; a shard is probably incomplete: download it again")

    def get(key: str) -> np.ndarray:
        try:
            return handles[where[key]].get_tensor(key)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{where[key]}: cannot read tensor {key!r} ({e}); the file may be truncated") from e

    return TensorSource(shapes, get, ", ".join(str(p) for p in paths))


def torch_source(path: pathlib.Path) -> TensorSource:
    try:
        import torch
    except ImportError as e:
        raise CheckpointError(
            f"{path}: reading a PyTorch state dict ({path.suffix}) needs torch, which is not installed; install "
            "torch, or convert the file to .safetensors (safetensors.torch.save_file) on a machine that has it") from e
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: torch.load(weights_only=True) failed ({type(e).__name__}: {e}); the file "
                              "may be truncated, corrupt, or not a plain state dict") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(sd).__name__}")
    tensors = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        if v.dtype == torch.bfloat16:
            v = v.float()
        tensors[k] = v.detach().cpu().numpy()
    return TensorSource({k: tuple(v.shape) for k, v in tensors.items()}, tensors.__getitem__, str(path))


def strip_prefix(source: TensorSource, prefix: str) -> TensorSource:
    if not source.shapes or not all(k.startswith(prefix) for k in source.shapes):
        return source
    shapes = {k[len(prefix):]: s for k, s in source.shapes.items()}
    return TensorSource(shapes, lambda k: source.get(prefix + k), source.files)


def short_list(items: Sequence[str], n: int = 12) -> str:
    items = list(items)
    head = ", ".join(items[:n])
    return head + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _same_shape(a, b) -> bool:
    a, b = tuple(a), tuple(b)
    return a == b or (len(a) <= 1 and len(b) <= 1 and math.prod(a) == math.prod(b) == 1)  # scalar vs [1]


def validate(source: TensorSource, expected: Mapping[str, tuple[int, ...]], ignore: Callable[[str], bool], what: str):
    """Raises `CheckpointError` listing missing keys, unexpected keys and shape mismatches."""
    present = source.shapes
    missing = [k for k in expected if k not in present]
    unexpected = sorted(k for k in present if k not in expected and not ignore(k))
    mismatched = [f"{k}: file {list(present[k])} vs expected {list(s)}"
                  for k, s in expected.items() if k in present and not _same_shape(present[k], s)]
    if missing or unexpected or mismatched:
        lines = [f"{source.files}: does not match the {what} architecture"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {short_list(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {short_list(unexpected)}")
        if mismatched:
            lines.append(f"  mismatched shapes ({len(mismatched)}): {short_list(mismatched, 8)}")
        lines.append("  check that the file is complete and that the architecture (config.json / arch=) is the "
                     "one the weights were trained with")
        raise CheckpointError("\n".join(lines))


def hf_cache_dir() -> pathlib.Path:
    """The Hugging Face hub cache directory, read from the environment now (``HF_HUB_CACHE``, ``HF_HOME``)."""
    from huggingface_hub import constants

    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return pathlib.Path(os.path.expandvars(os.path.expanduser(os.environ[var])))
    if os.environ.get("HF_HOME"):
        return pathlib.Path(os.path.expandvars(os.path.expanduser(os.environ["HF_HOME"]))) / "hub"
    return pathlib.Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set (read now, not at import)."""
    from huggingface_hub import constants

    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip().upper()
    return env in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def resolve_hub(repo_id: str, *, what: str, options: str, revision: str | None = None,
                allow_patterns: Sequence[str] = HUB_ALLOW_PATTERNS) -> pathlib.Path:
    """Local snapshot directory of a hub repo: downloaded once into the HF cache, or taken from it offline."""
    from huggingface_hub import snapshot_download

    cache, offline = hf_cache_dir(), hub_offline()
    try:
        return pathlib.Path(snapshot_download(repo_id, revision=revision, cache_dir=str(cache),
                                              allow_patterns=list(allow_patterns), local_files_only=offline))
    except Exception as e:  # noqa: BLE001 - hub errors come as many types (HTTP, offline, not found, ...)
        why = "offline mode is on (HF_HUB_OFFLINE) and it is not cached" if offline else \
            f"it could not be downloaded ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        raise CheckpointNotFoundError(
            f"{what} {repo_id!r} not found: {why}. Looked in the Hugging Face cache {cache}. "
            f"Options: {options}.") from e


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def is_hub_id(s: str) -> bool:
    suffix = pathlib.Path(s).suffix
    return bool(_HUB_ID.match(s)) and suffix not in {".safetensors", ".bin", ".pt", ".pth", ".json"}


def hf_directory_source(directory: pathlib.Path) -> TensorSource:
    index = directory / "model.safetensors.index.json"
    single = directory / "model.safetensors"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{index}: unreadable index ({e})") from e
        shards = sorted({directory / f for f in weight_map.values()})
        absent = [str(s) for s in shards if not s.is_file()]
        if absent:
            raise CheckpointError(f"{index}: shard files missing: {short_list(absent)}")
        return safetensors_source(shards, weight_map)
    if single.is_file():
        return safetensors_source([single])
    others = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.pt*"))
    raise CheckpointError(
        f"{directory}: no model.safetensors or model.safetensors.index.json"
        + (f" (found {', '.join(others)}: only safetensors are read for Hugging Face checkpoints; convert with "
           "safetensors.torch.save_file)" if others else ""))


def fill_module(abstract: nnx.Module, params: Mapping) -> nnx.Module:
    """The module ``abstract`` (from `nnx.eval_shape`: shapes and dtypes, no arrays) holding ``params``: a pure
    dict of arrays, or of zero-argument functions returning arrays (as converters return them, so that leaves
    are read and converted one at a time: peak host memory is the model plus one stacked tensor). A converter
    that does not produce exactly the module's leaves, in its shapes, raises `CheckpointError`."""
    graphdef, state = nnx.split(abstract)
    flat_want = flatten(nnx.to_pure_dict(state))
    flat_have = flatten(params)
    bad = [f"{k}: missing" for k in sorted(flat_want.keys() - flat_have.keys())]
    bad += [f"{k}: unexpected" for k in sorted(flat_have.keys() - flat_want.keys())]
    if bad:  # a bug in a converter, not in the user's file
        raise CheckpointError("converted parameters do not fit the model: " + short_list(bad))
    converted = {}
    for key, abstract_leaf in flat_want.items():
        leaf = flat_have[key]
        value = np.asarray(leaf() if callable(leaf) else leaf)
        if value.shape != tuple(abstract_leaf.shape):
            raise CheckpointError(f"converted parameter {key} has shape {list(value.shape)}, the model expects "
                                  f"{list(abstract_leaf.shape)}")
        converted[key] = jnp.asarray(value, dtype=abstract_leaf.dtype)
        del value
    nnx.replace_by_pure_dict(state, nest(converted))
    return nnx.merge(graphdef, state)


def read_config_json(directory: pathlib.Path, model_types: Sequence[str], what: str) -> dict:
    """``directory/config.json`` as a dict, with one clear error when it is absent or of another model type."""
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{directory}: no config.json (a Hugging Face {what} directory needs config.json, "
                              "model.safetensors and its tokenizer files)")
    try:
        raw = json.loads(path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if raw.get("model_type") not in (*model_types, None):
        expected = " or ".join(map(repr, model_types))
        raise CheckpointError(f"{path}: model_type {raw.get('model_type')!r} is not {expected}"
                              f" (this loader reads {what} checkpoints)")
    return raw


def locate(name_or_path: PathLike, *, what: str, options: str, revision: str | None = None,
           allow_patterns: Sequence[str] = HUB_ALLOW_PATTERNS) -> pathlib.Path:
    """A local file or directory as it is, or a hub id's snapshot directory (an ``hf-hub:`` prefix is accepted)."""
    s = os.fspath(name_or_path)
    path = pathlib.Path(s).expanduser()
    if path.exists():
        return path
    if is_hub_id(s.removeprefix("hf-hub:")):
        return resolve_hub(s.removeprefix("hf-hub:"), what=what, options=options, revision=revision,
                           allow_patterns=allow_patterns)
    raise CheckpointNotFoundError(f"{what} {s}: no such file or directory (nor a valid Hugging Face hub id). "
                                  f"Options: {options}.")


def random_tensors(shapes: Mapping[str, tuple[int, ...]], seed: int = 0,
                   fixed: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Random float32 tensors for a tiny test checkpoint, by name: norm weights near 1, biases and embeddings
    small, layer scales near 0.1, class tokens unit-sized, matrices (stored ``[out, in, ...]``) scaled by their
    fan-in, so activations stay O(1) through the layers; ``fixed`` values are taken as they are."""
    rng = np.random.default_rng(seed)
    fixed = dict(fixed or {})
    out = {}
    for key, shape in shapes.items():
        if key in fixed:
            out[key] = np.asarray(fixed[key], np.float32)
            continue
        if re.search(r"(norm\w*|layrnorm)\d?\.weight$", key):
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif key.endswith(".bias"):
            w = 0.02 * rng.standard_normal(shape)
        elif key.endswith(("class_embedding", "cls_token")):
            w = shape[-1] ** -0.5 * rng.standard_normal(shape)
        elif "embedding" in key:
            w = 0.02 * rng.standard_normal(shape)
        elif re.search(r"lambda_\d$", key):
            w = 0.1 + 0.02 * rng.standard_normal(shape)
        else:
            w = rng.standard_normal(shape) / math.sqrt(math.prod(shape[1:]))
        out[key] = np.asarray(w, np.float32)
    return out
