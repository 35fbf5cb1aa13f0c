"""tierroute.safejson: untrusted JSON refused with one exception class, never a RecursionError,
a bare int() ValueError or a blocked read."""

from __future__ import annotations

import doctest
import json
import os
import sys
from pathlib import Path

import pytest

from tierroute import safejson
from tierroute.safejson import UnsafeJSONError, check_depth, find_surrogate, loads, read_json_file


def test_the_module_docstring_examples_hold() -> None:
    assert doctest.testmod(safejson).failed == 0


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, "x", null, true]}', "[]", '"just text"', "3", '{"s": "[[[[{{{"}'])
def test_ordinary_json_parses_as_json_loads_does(text: str) -> None:
    assert loads(text) == json.loads(text)
    assert loads(text.encode("utf-8")) == json.loads(text)
    assert loads(text.encode("utf-16")) == json.loads(text)


def test_nesting_at_the_limit_passes_and_one_more_is_refused() -> None:
    assert loads("[" * 64 + "]" * 64, max_depth=64) == json.loads("[" * 64 + "]" * 64)
    with pytest.raises(
        UnsafeJSONError,
        match=r"^The JSON nests arrays/objects more than 64 levels deep; at most 64 "
        r"are accepted\. Flatten it",
    ) as caught:
        loads("[" * 65 + "]" * 65, max_depth=64)
    assert caught.value.reason == "depth" and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000 + "]" * 10_000,
        '{"metadata": ' + '{"a": ' * 10_000 + "1" + "}" * 10_001,
        "[" * 100_000,
        '{"a": "' + "]" * 500 + '", "b": ' + "[" * 200 + "]" * 200 + "}",
    ],
)
def test_deep_nesting_is_refused_without_recursion(text: str) -> None:
    with pytest.raises(UnsafeJSONError, match=r"^The body nests arrays/objects more than 64 levels deep") as caught:
        loads(text, where="The body")
    assert caught.value.reason == "depth"


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"prompt": "[[[[{{{{" * 100 + '\\" ]]]', "n": [[1]]})
    assert loads(text)["n"] == [[1]]


@pytest.mark.parametrize("token", ["1" * 5000, "-" + "9" * 101, "1." + "0" * 200])
def test_huge_numbers_are_refused(token: str) -> None:
    with pytest.raises(
        UnsafeJSONError,
        match=r"^The body holds a number written with [\d,]+ characters \(.{20}\.\.\.\); "
        r"at most 100 are accepted\. Send it as a string",
    ) as caught:
        loads('{"latency_sla_ms": ' + token + "}", where="The body")
    assert caught.value.reason == "number"
    assert loads("[" + "9" * 100 + "]") == [int("9" * 100)]


def test_a_float_beyond_double_range_is_refused() -> None:
    with pytest.raises(UnsafeJSONError, match=r"holds the number 1e400, beyond the range of a 64-bit float"):
        loads("[1e400]")


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_tokens_are_refused(token: str) -> None:
    with pytest.raises(
        UnsafeJSONError,
        match=rf"^The JSON holds the token {token}, which is not JSON \(JSON has no NaN "
        r"or Infinity\); send null or a finite number\.$",
    ) as caught:
        loads(f'{{"latency_sla_ms": {token}}}')
    assert caught.value.reason == "constant"


@pytest.mark.parametrize(
    ("data", "reason", "match"),
    [
        ("{not json", "syntax", r"^line 3 is not JSON \(Expecting property name enclosed in double quotes at char 1\); "),
        (b"\xff\xfe\x00", "encoding", r"^line 3 is not UTF-8 text \("),
        (b'{"a": "\xed\xa0\x80"}', "encoding", r"^line 3 is not UTF-8 text \(invalid continuation byte"),
    ],
)
def test_malformed_input_is_one_error_class(data: str | bytes, reason: str, match: str) -> None:
    with pytest.raises(UnsafeJSONError, match=match) as caught:
        loads(data, where="line 3")
    assert caught.value.reason == reason


def test_the_size_cap() -> None:
    assert loads(b"[1, 2]", max_bytes=6) == [1, 2]
    with pytest.raises(UnsafeJSONError, match=r"^The JSON has 7 bytes; at most 6 are accepted\. Send less\.$"):
        loads(b"[1,  2]", max_bytes=6)


def test_lone_surrogates_are_found_and_refused_when_asked() -> None:
    value = loads('{"id": "a\\ud800b", "ok": ["\\ud83d\\ude42"]}')  # the escape of a lone surrogate is valid JSON
    assert value["id"] == "a\ud800b" and value["ok"] == ["🙂"]
    assert find_surrogate(value) == "$.id"
    assert find_surrogate({"messages": [{"content": "fine"}, {"content": "\udc00"}]}) == "$.messages[1].content"
    assert find_surrogate({"\ud800": 1}) == "$ (a key)"
    assert find_surrogate({"id": "fine", "n": [1, 2.0, None]}) is None
    with pytest.raises(
        UnsafeJSONError,
        match=r"^The JSON holds a lone surrogate \(half of a UTF-16 pair\) at \$\.id, "
        r"which is not text; send valid Unicode\.$",
    ) as caught:
        loads('{"id": "\\udfff"}', allow_surrogates=False)
    assert caught.value.reason == "surrogate"


def test_check_depth_walks_built_values_iteratively() -> None:
    deep: list = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]
    with pytest.raises(UnsafeJSONError, match=r"^output_schema nests arrays/objects more than 128 levels deep"):
        check_depth(deep, max_depth=128, where="output_schema")
    cyclic: dict = {}
    cyclic["self"] = cyclic
    with pytest.raises(UnsafeJSONError, match="self-reference"):
        check_depth(cyclic)
    check_depth({"a": [{"b": (1, 2)}]}, max_depth=4)  # the same count as loads: {"a": [1]} is 2 deep
    with pytest.raises(UnsafeJSONError):
        check_depth({"a": [{"b": (1, 2)}]}, max_depth=3)
    assert loads("[" * 4 + "]" * 4, max_depth=4) == [[[[]]]]


def test_read_json_file(tmp_path: Path) -> None:
    good = tmp_path / "m.json"
    good.write_text('{"kind": "x"}', encoding="utf-8")
    assert read_json_file(good, max_bytes=100) == {"kind": "x"}
    with pytest.raises(
        UnsafeJSONError,
        match=r"m\.json' has 13 bytes; at most 12 are accepted\. Check it is the right "
        r"file\.$",
    ) as caught:
        read_json_file(good, max_bytes=12)
    assert caught.value.reason == "size"
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(UnsafeJSONError, match=r"^'deep\.json' nests arrays/objects more than 64 levels deep"):
        read_json_file(deep, max_bytes=1 << 20)
    with pytest.raises(FileNotFoundError):
        read_json_file(tmp_path / "missing.json", max_bytes=100)
    with pytest.raises(UnsafeJSONError, match=r"is a folder, not a regular file; expected a JSON file\.") as caught:
        read_json_file(tmp_path, max_bytes=100)
    assert caught.value.reason == "not_a_file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "manifest.json"
    os.mkfifo(fifo)  # nobody writes to it: a blocking open or read would hang the test
    with pytest.raises(
        UnsafeJSONError,
        match=r"manifest\.json' is a FIFO \(named pipe\), not a regular file; expected a "
        r"JSON file\. Replace it with the file itself\.$",
    ):
        read_json_file(fifo, max_bytes=100)
    link = tmp_path / "link.json"
    link.symlink_to(fifo)
    with pytest.raises(UnsafeJSONError, match="is a FIFO"):
        read_json_file(link, max_bytes=100)


def test_the_module_imports_nothing_heavy() -> None:
    import subprocess

    code = (
        "import sys, tierroute.safejson; heavy = {'numpy', 'tierroute.features', 'tierroute.models', "
        "'tierroute.serving', 'tierroute.pipelines'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
