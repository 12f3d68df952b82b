"""Nested dicts ↔ flat dicts keyed by "/"-joined paths: how weights and checkpoints are named and checked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(tree, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": x}}`` → ``{"a/b": x}`` (anything that is not a mapping is a leaf)."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return flat


def nest(flat: Mapping[str, Any]) -> dict:
    """``{"a/b": x}`` → ``{"a": {"b": x}}``."""
    nested: dict = {}
    for name, value in flat.items():
        *parents, last = name.split("/")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return nested
