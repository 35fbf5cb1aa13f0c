"""Content hashes, one way each: a prompt's short hash and a file's sha256.

A prompt hash identifies a prompt in logs, overlaps and training manifests without holding its
text. It must accept any ``str`` Python can hold, lone surrogates included (they arrive from
hostile or broken clients): such code points are hashed through ``surrogatepass``, which leaves
the UTF-8 bytes of every valid string, and so every hash written before, unchanged.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["prompt_hash", "sha256_file", "text_sha256"]


def text_sha256(text: str) -> str:
    """sha256 hex of ``text``'s UTF-8 bytes (lone surrogates passed through, never an error)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def prompt_hash(prompt: str) -> str:
    """Stable short content hash of a prompt (sha256, 16 hex chars)."""
    return text_sha256(prompt)[:16]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
