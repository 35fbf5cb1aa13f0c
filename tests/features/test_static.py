"""The static encoder: BPE-keyed token vectors (count once, embed from the same ids), its head and
tail cut, save/load, refusals, and (with the training extras) distillation from MiniLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tierroute.errors import ConfigError, FeatureError
from tierroute.features.static import StaticEncoder
from tierroute.features.tokens import BpeTokenCounter

COUNTER = BpeTokenCounter()


def _ids(text: str) -> list[int]:
    return [int(t) for t in COUNTER._tokenizer.encode(text)]  # type: ignore[attr-defined]


HELLO, WORLD, FOO = _ids("hello")[0], _ids(" world")[0], _ids(" foo")[0]


def _encoder(**kwargs: object) -> StaticEncoder:
    ids = np.array(sorted([HELLO, WORLD, FOO]), dtype=np.int64)
    vectors = {HELLO: [1, 0, 0], WORLD: [0, 1, 0], FOO: [0, 0, 2]}
    table = np.array([vectors[int(i)] for i in ids], dtype=np.float32)
    return StaticEncoder(ids, table, name="tiny", **kwargs)  # type: ignore[arg-type]


def test_the_vector_is_the_normalised_mean_of_known_token_rows() -> None:
    enc = _encoder()
    out = enc.encode(["hello world", " foo", "", "zzz qqq", "hello zzz"])
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_allclose(out[0], [2**-0.5, 2**-0.5, 0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [0, 0, 1])
    np.testing.assert_array_equal(out[2], 0)  # empty text
    np.testing.assert_array_equal(out[3], 0)  # no known token
    np.testing.assert_allclose(out[4], [1, 0, 0])  # unknown tokens are left out of the mean
    assert enc.dims == 3 and enc.id.startswith("tiny:3:")


@pytest.mark.parametrize("text", ["", "hello world", "Extract the order id from: order #1234 🙂 " * 40])
def test_ids_count_once_and_every_path_gives_the_same_vector(text: str) -> None:
    enc = _encoder()
    ids = enc.ids(text)
    assert len(ids) == COUNTER.count(text)  # the embedding's tokens are the token count's
    np.testing.assert_array_equal(enc.encode_ids(ids), enc.encode_one(text))
    np.testing.assert_array_equal(enc.encode([text])[0], enc.encode_one(text))


def test_long_prompts_are_embedded_from_their_head_and_tail_tokens() -> None:
    enc = _encoder(head_tokens=2, tail_tokens=1)
    middle = " world" * 50
    # head: "hello" (known) and " hello" (unknown); tail: " foo"; the 50 " world" are cut out
    np.testing.assert_allclose(enc.encode_one("hello hello" + middle + " foo"), np.array([1, 0, 2]) / 5**0.5, rtol=1e-6)
    assert StaticEncoder.vocabulary(["hello hello" + middle + " foo"], head_tokens=2, tail_tokens=1) == sorted(
        {HELLO, _ids(" hello")[0], FOO}
    )
    no_tail = _encoder(head_tokens=1, tail_tokens=0)
    np.testing.assert_allclose(no_tail.encode_one("hello" + middle), [1, 0, 0])


def test_round_trip_and_id(tmp_path: Path) -> None:
    enc = _encoder()
    enc.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["static.json", "static_ids.npy", "static_table.npy"]
    again = StaticEncoder.load(tmp_path)
    assert again.id == enc.id and again.name == "tiny" and again.tokenizer == "bpe:o200k_base"
    np.testing.assert_array_equal(again.encode(["hello foo"]), enc.encode(["hello foo"]))
    assert StaticEncoder(enc.token_ids, enc.table * 2, name="tiny").id != enc.id


def test_pickles_without_the_rust_table() -> None:
    import pickle

    enc = _encoder(head_tokens=7)
    again = pickle.loads(pickle.dumps(enc))
    assert again.id == enc.id and again.head_tokens == 7
    np.testing.assert_array_equal(again.encode_one("hello foo"), enc.encode_one("hello foo"))


def test_refuses_mismatched_or_corrupt_parts(tmp_path: Path) -> None:
    ids, table = np.array([1, 5, 9]), np.ones((3, 2), dtype=np.float32)
    with pytest.raises(FeatureError, match=r"^A static embedding table must be a 2-D float32 array; got shape \(3, 2\) dtype float64"):
        StaticEncoder(ids, table.astype(np.float64))
    with pytest.raises(
        FeatureError,
        match=r"^The static encoder's token ids must be a 1-D integer array with one id per table row "
        r"\(3\); got shape \(2,\)",
    ):
        StaticEncoder(ids[:2], table)
    with pytest.raises(FeatureError, match=r"^The static encoder's token ids must be distinct, ascending and >= 0"):
        StaticEncoder(np.array([5, 1, 9]), table)
    with pytest.raises(ConfigError, match=r"^The static encoder needs an exact BPE tokenizer \('bpe:<encoding>'\); got 'approx:chars/4'"):
        StaticEncoder(ids, table, tokenizer="approx:chars/4")
    with pytest.raises(FeatureError, match=r"^Cannot read the static encoder in .*Re-export the model\.$"):
        StaticEncoder.load(tmp_path)


PROMPTS = [
    "Extract the order id from this email.",
    "Pull the order number out of the message.",
    "Debug this Python function and explain why it fails.",
    "Translate the reply into German.",
]


def test_distilled_static_agrees_with_minilm_on_what_is_similar() -> None:
    pytest.importorskip("sentence_transformers")
    from tierroute.features.embeddings import MiniLMEncoder
    from tierroute.features.static import distill_static

    steps: list[int] = []
    vocab = sorted(set(StaticEncoder.vocabulary(PROMPTS)) | set(range(1000, 1100)))
    static = distill_static(vocab, dims=16, step=steps.append)
    assert sum(steps) == len(vocab)
    assert static.id.startswith("static-minilm-bpe:16:")
    dense = MiniLMEncoder(batch_size=8).encode(PROMPTS)
    table = static.encode(PROMPTS)
    assert table.shape == (4, 16) and np.allclose(np.linalg.norm(table, axis=1), 1, atol=1e-5)
    for vectors in (dense, table):  # both put the two order-id prompts closest
        sims = vectors @ vectors.T
        assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[1, 2]


def test_distill_needs_enough_tokens() -> None:
    from tierroute.features.static import distill_static

    with pytest.raises(ConfigError, match=r"^distill_static needs more than dims=16 decodable token ids; got 3"):
        distill_static([1, 2, 3], dims=16)


def test_single_and_batch_paths_give_identical_vectors() -> None:
    rng = np.random.default_rng(0)
    vocab = StaticEncoder.vocabulary(PROMPTS)
    enc = StaticEncoder(
        np.asarray(vocab, dtype=np.int64), rng.normal(size=(len(vocab), 16)).astype(np.float32), head_tokens=5, tail_tokens=3
    )
    texts = [*PROMPTS, "", "zzzz qqqq", " ".join(PROMPTS) * 3]
    many = enc.encode_many_ids([enc.ids(t) for t in texts])
    for text, row in zip(texts, many):
        np.testing.assert_array_equal(enc.encode_one(text), row)  # bit for bit: training and serving agree
