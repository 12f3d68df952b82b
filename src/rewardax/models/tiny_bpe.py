"""Tiny but valid byte-level BPE vocabularies, for the random test checkpoints (no download).

Both tokenizers the models use are byte-level BPEs over GPT-2's byte-to-unicode table: CLIP's marks the end of a
word (``"cat</w>"``), Qwen2's the space before it (``"Ġcat"``). A tiny vocabulary holds the 256 byte symbols
(plus the marked forms CLIP needs) and merges that build each listed word left to right, so the listed words
are single tokens and every other text still tokenizes (byte by byte).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable unicode character table (bytes with a visible glyph map to themselves)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in keep:
        table[b] = chr(b)
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return {b: table[b] for b in keep + [b for b in range(256) if b not in keep]}


def tiny_bpe(base: Sequence[str], words: Iterable[Sequence[str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """``(tokens, merges)``: the ``base`` symbols, then the merges (and their results) that join the symbols of
    each word in ``words`` left to right."""
    tokens, known = list(base), set(base)
    merges: list[tuple[str, str]] = []
    for parts in words:
        current = parts[0]
        for following in parts[1:]:
            pair = (current, following)
            current = current + following
            if pair not in merges:
                merges.append(pair)
                if current not in known:
                    tokens.append(current)
                    known.add(current)
    return tokens, merges
