"""Embeddings: the head/tail cut, the static encoder's runtime, the content-hash cache, and (with
the training extras) distillation from MiniLM and MiniLM itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tierroute.errors import ConfigError, FeatureError
from tierroute.features.embeddings import EmbeddingCache, StaticEncoder, head_tail


def tiny_tokenizer_json(words: list[str]) -> str:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return tok.to_str()


WORDS = ["[UNK]", "hello", "world", "foo", "unseen"]
TABLE = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 2], [0, 0, 0]], dtype=np.float32)


@pytest.fixture
def encoder() -> StaticEncoder:
    return StaticEncoder(table=TABLE, tokenizer_json=tiny_tokenizer_json(WORDS), name="tiny")


@pytest.mark.parametrize(
    "text,head,tail,expected",
    [("short", 3, 2, "short"), ("abcdefghij", 3, 2, "abc\nij"), ("abcdefghij", 3, 0, "abc"), ("abcde", 3, 2, "abcde")],
)
def test_head_tail(text: str, head: int, tail: int, expected: str) -> None:
    assert head_tail(text, head, tail) == expected


def test_static_encoding_is_the_normalised_mean_of_known_rows(encoder: StaticEncoder) -> None:
    out = encoder.encode(["hello world", "foo", "", "unseen [UNK] zzz", "hello unseen"])
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_allclose(out[0], [2 ** -0.5, 2 ** -0.5, 0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [0, 0, 1])
    np.testing.assert_array_equal(out[2], 0)  # empty text
    np.testing.assert_array_equal(out[3], 0)  # only zero rows: nothing known
    np.testing.assert_allclose(out[4], [1, 0, 0])  # the zero row of "unseen" is left out of the mean
    assert encoder.dims == 3 and encoder.id.startswith("tiny:3:")
    assert encoder.token_ids(["hello foo", "world"]) == {1, 2, 3}


def test_static_encoder_round_trip_and_id(tmp_path: Path, encoder: StaticEncoder) -> None:
    encoder.save(tmp_path)
    again = StaticEncoder.load(tmp_path, name="tiny")
    assert again.id == encoder.id
    np.testing.assert_array_equal(again.encode(["hello foo"]), encoder.encode(["hello foo"]))
    other = StaticEncoder(table=TABLE * 2, tokenizer_json=encoder.tokenizer_json, name="tiny")
    assert other.id != encoder.id


def test_static_encoder_refuses_mismatched_or_corrupt_parts(tmp_path: Path) -> None:
    good = tiny_tokenizer_json(WORDS)
    with pytest.raises(FeatureError, match=r"^The static table has 4 rows but the tokenizer 5 tokens"):
        StaticEncoder(table=TABLE[:4], tokenizer_json=good)
    with pytest.raises(FeatureError, match=r"^A static embedding table must be a 2-D float32 array; got shape \(5, 3\) dtype float64"):
        StaticEncoder(table=TABLE.astype(np.float64), tokenizer_json=good)
    with pytest.raises(FeatureError, match=r"^The static encoder's tokenizer could not be read"):
        StaticEncoder(table=TABLE, tokenizer_json="{not json")
    with pytest.raises(FeatureError, match=r"^Cannot read the static encoder in .*Re-export the model\.$"):
        StaticEncoder.load(tmp_path)


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


@pytest.fixture(scope="module")
def minilm_parts() -> tuple[object, object]:
    pytest.importorskip("sentence_transformers")
    from tierroute.features.embeddings import MiniLMEncoder, distill_static, minilm_path

    minilm = MiniLMEncoder(batch_size=8)
    # distil only the tokens these prompts use: a few seconds instead of the whole vocabulary
    tokenizer_json = (minilm_path() / "tokenizer.json").read_text(encoding="utf-8")
    probe = StaticEncoder(table=np.zeros((len(json.loads(tokenizer_json)["model"]["vocab"]), 2), dtype=np.float32),
                          tokenizer_json=tokenizer_json)
    vocab = sorted(probe.token_ids(PROMPTS) | set(range(1000, 1100)))
    return minilm, distill_static(dims=16, vocabulary=vocab)


PROMPTS = [
    "Extract the order id from this email.",
    "Pull the order number out of the message.",
    "Debug this Python function and explain why it fails.",
    "Translate the reply into German.",
]


def test_minilm_and_distilled_static_agree_on_what_is_similar(minilm_parts: tuple[object, object]) -> None:
    minilm, static = minilm_parts
    dense = minilm.encode(PROMPTS)
    assert dense.shape == (4, 384) and np.allclose(np.linalg.norm(dense, axis=1), 1, atol=1e-5)
    table = static.encode(PROMPTS)
    assert table.shape == (4, 16) and static.id.startswith("static-minilm:16:")
    # both put the two order-id prompts closer to each other than to the debugging prompt
    for vectors in (dense, table):
        sims = vectors @ vectors.T
        assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[1, 2]


def test_distill_needs_enough_tokens() -> None:
    pytest.importorskip("sentence_transformers")
    from tierroute.features.embeddings import distill_static

    with pytest.raises(ConfigError, match=r"^distill_static needs at least dims=16 distinct token ids"):
        distill_static(dims=16, vocabulary=[1, 2, 3])


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
