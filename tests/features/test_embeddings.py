"""Embeddings: the head/tail cut, the static encoder's runtime, the content-hash cache, and (with
the training extras) MiniLM itself. The static encoder's tests are in test_static.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tierroute.errors import ConfigError, FeatureError
from tierroute.features.embeddings import EmbeddingCache, head_tail


@pytest.mark.parametrize(
    "text,head,tail,expected",
    [("short", 3, 2, "short"), ("abcdefghij", 3, 2, "abc\nij"), ("abcdefghij", 3, 0, "abc"), ("abcde", 3, 2, "abcde")],
)
def test_head_tail(text: str, head: int, tail: int, expected: str) -> None:
    assert head_tail(text, head, tail) == expected


class CountingEncoder:
    id = "counting:2"
    dims = 2

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.seen += list(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_cache_encodes_each_text_once(tmp_path: Path) -> None:
    cache, enc = EmbeddingCache(tmp_path / "cache"), CountingEncoder()
    first = cache.encode(enc, ["a", "bb", "a"])
    assert sorted(enc.seen) == ["a", "bb"]
    np.testing.assert_array_equal(first[:, 0], [1, 2, 1])
    second = EmbeddingCache(tmp_path / "cache").encode(enc, ["bb", "ccc"])  # a new process: reads the file
    assert sorted(enc.seen) == ["a", "bb", "ccc"]
    np.testing.assert_array_equal(second[:, 0], [2, 3])
    assert cache.encode(enc, []).shape == (0, 2)


def test_cache_encodes_new_texts_in_chunks_with_a_bar(tmp_path: Path) -> None:
    import io

    from tierroute.progress import Progress

    class Chunked(CountingEncoder):
        calls: list[int] = []

        def encode(self, texts: list[str]) -> np.ndarray:
            self.calls.append(len(texts))
            return super().encode(texts)

    enc, stream = Chunked(), io.StringIO()
    texts = [f"t{i}" for i in range(7)]
    out = EmbeddingCache(tmp_path / "c").encode(enc, texts, progress=Progress(stream=stream), chunk=3)
    assert enc.calls == [3, 3, 1]
    np.testing.assert_array_equal(out[:, 0], [len(t) for t in texts])
    assert "embedding 7 new prompts" in stream.getvalue()


def test_encoder_registry_refuses_what_a_bundle_cannot_serve(tmp_path: Path) -> None:
    from tierroute.features.embeddings import encoder_manifest, load_encoder

    with pytest.raises(ConfigError, match=r"^Bundles serve the static or the MiniLM-ONNX encoder .*'counting:2'"):
        encoder_manifest(CountingEncoder())
    for info in ({"kind": "bert", "files": []}, ["static"], None):
        with pytest.raises(FeatureError, match=r"this tierroute serves 'static' and 'minilm_onnx'"):
            load_encoder(tmp_path, info)
    # a manifest naming other files than the kind's: the loader would open files no checksum covered
    with pytest.raises(FeatureError, match=r"lists files \['static.json'\]; expected"):
        load_encoder(tmp_path, {"kind": "static", "files": ["static.json"]})
    with pytest.raises(FeatureError, match=r"Cannot read the static encoder"):
        load_encoder(tmp_path, {"kind": "static", "files": ["static_ids.npy", "static_table.npy", "static.json"]})
    with pytest.raises(FeatureError, match=r"Cannot read the MiniLM-ONNX encoder"):
        load_encoder(tmp_path, {"kind": "minilm_onnx", "files": ["minilm.onnx", "minilm_tokenizer.json", "minilm.json"]})


def test_encoder_registry_round_trips_a_static_encoder(tmp_path: Path) -> None:
    from tierroute.features.embeddings import StaticEncoder, encoder_manifest, load_encoder

    encoder = StaticEncoder(np.array([1, 5, 9], dtype=np.int64), np.eye(3, 4, dtype=np.float32))
    encoder.save(tmp_path)
    info = encoder_manifest(encoder)
    assert info == {
        "kind": "static",
        "id": encoder.id,
        "dims": 4,
        "tokenizer": "bpe:o200k_base",
        "files": ["static_ids.npy", "static_table.npy", "static.json"],
    }  # what bundles always recorded
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(info["files"])
    assert load_encoder(tmp_path, json.loads(json.dumps(info))).id == encoder.id
