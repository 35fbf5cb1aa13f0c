"""prompt_shape: language-independent size and structure markers, hand-computed."""

from __future__ import annotations

import pytest

from tierroute.features.shape import SHAPE_FEATURE_NAMES, PromptShape, prompt_shape


def test_feature_names_match_fields():
    assert SHAPE_FEATURE_NAMES == (
        "shape_chars",
        "shape_lines",
        "shape_code_blocks",
        "shape_has_code",
        "shape_questions",
        "shape_list_items",
        "shape_urls",
        "shape_digit_frac",
        "shape_non_ascii_frac",
    )
    assert [f"shape_{name}" for name in PromptShape.__slots__] == list(SHAPE_FEATURE_NAMES)


def test_empty_prompt():
    s = prompt_shape("")
    assert s == PromptShape(0, 0, 0, 0, 0, 0, 0, 0.0, 0.0)
    assert s.as_vector() == (0.0,) * 9


def test_plain_text():
    s = prompt_shape("Pull the order id")
    assert s == PromptShape(
        chars=17, lines=1, code_blocks=0, has_code=0, questions=0, list_items=0, urls=0, digit_frac=0.0, non_ascii_frac=0.0
    )


def test_markdown_lists():
    text = "Items:\n- a\n- b\n* c\n+ d\n1. e\n2) f\na) g\n(x) h\n  • i\n-nospace\n-\n10 apples"
    s = prompt_shape(text)
    assert s.list_items == 9
    assert s.lines == 13


def test_docstring_example():
    assert prompt_shape("Why?\n- a\n- b").list_items == 2


@pytest.mark.parametrize(
    ("text", "blocks", "has_code"),
    [
        ("```py\nx = 1\n```\ntext", 1, 1),  # closed
        ("```\nx = 1\n", 1, 1),  # unclosed still counts
        ("~~~\na\n~~~\n```\nb\n```", 2, 1),  # two closed, both fence styles
        ("```\na\n```\n```\nb", 2, 1),  # one closed, one unclosed
        ("  ```\nindented fence\n  ```", 1, 1),
        ("inline ``` is not a fence", 0, 0),
        ("int x;", 0, 1),  # a line ending in ;
        ("if (x) {\n  y\n}", 0, 1),  # a line ending in {
        ("    indented code", 0, 1),
        ("\tindented with a tab", 0, 1),
        ("no code here", 0, 0),
    ],
)
def test_code(text, blocks, has_code):
    s = prompt_shape(text)
    assert (s.code_blocks, s.has_code) == (blocks, has_code)


@pytest.mark.parametrize(
    ("text", "questions"),
    [
        ("Why? How?", 2),
        ("你好吗？", 1),  # fullwidth CJK question mark
        ("كيف حالك؟", 1),  # Arabic question mark
        ("\u03a4\u03b9 \u03ba\u03ac\u03bd\u03b5\u03b9\u03c2\u037e", 1),  # Greek question mark U+037E
        ("Ինչպե՞ս ես", 1),  # Armenian question mark U+055E
        ("No question.", 0),
    ],
)
def test_questions_in_several_scripts(text, questions):
    assert prompt_shape(text).questions == questions


def test_cjk_and_arabic_non_ascii_fraction():
    assert prompt_shape("你好吗？").non_ascii_frac == 1.0
    assert prompt_shape("كيف حالك؟").non_ascii_frac == pytest.approx(8 / 9)
    assert prompt_shape("ab你好").non_ascii_frac == 0.5


def test_urls():
    s = prompt_shape("See https://example.com/a and http://x.org/b, not ftp://y.org or example.com.")
    assert s.urls == 2


def test_digit_fraction():
    assert prompt_shape("abc1").digit_frac == 0.25
    assert prompt_shape("order 1234").digit_frac == pytest.approx(0.4)


def test_lines():
    assert prompt_shape("a").lines == 1
    assert prompt_shape("a\nb\n").lines == 3
    assert prompt_shape("\n").lines == 2


def test_as_vector_order_and_types():
    s = prompt_shape("Why?\n```\nx;\n```\nhttps://a.b 12")
    v = s.as_vector()
    assert len(v) == len(SHAPE_FEATURE_NAMES)
    assert all(isinstance(x, float) for x in v)
    assert v[:7] == (float(s.chars), float(s.lines), 1.0, 1.0, 1.0, 0.0, 1.0)
    assert v[7] == s.digit_frac and v[8] == s.non_ascii_frac


def _reference_shape(prompt: str) -> tuple[float, ...]:
    """The plain regex definition the fast paths must reproduce exactly."""
    import re

    from tierroute.features import shape as mod

    n = len(prompt)
    fences = len(mod._FENCE.findall(prompt))
    return (
        n,
        prompt.count("\n") + 1 if n else 0,
        (fences + 1) // 2,
        1 if fences or mod._CODE_LINE.search(prompt) else 0,
        sum(prompt.count(m) for m in mod._QUESTION_MARKS),
        len(mod._LIST_ITEM.findall(prompt)),
        len(mod._URL.findall(prompt)),
        len(re.findall(r"\d", prompt)) / n if n else 0.0,
        (n - len(prompt.encode("ascii", "ignore"))) / n if n else 0.0,
    )


def test_fast_paths_equal_the_regex_definition_on_random_prompts() -> None:
    import random

    from tierroute.features.shape import prompt_shape

    pieces = [
        "a",
        "7",
        "?",
        "？",
        "٣",
        "é",
        "\n",
        "    x",
        "\tcode",
        "x;",
        "{",
        "```",
        "~~~",
        "http://a.b/c",
        "- item",
        "1. one",
        " ",
        "why",
        "https://x",
    ]
    rng = random.Random(0)
    for _ in range(400):
        prompt = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert prompt_shape(prompt).as_vector() == tuple(float(v) for v in _reference_shape(prompt)), repr(prompt)


def test_the_fast_counts_are_the_plain_definitions():
    """Digits and list items counted the quick way equal the regex definitions on random text
    (one line and several, ASCII and not)."""
    import random
    import re

    rng = random.Random(4)
    alphabet = "ab 0123456789\n\t-*.)(?;{é٣"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50)))
        shape = prompt_shape(text)
        assert shape.list_items == len(re.findall(r"^[ \t]*(?:[-*•+·▪‣]|\d{1,3}[.)]|[a-zA-Z][.)]|\(\w\))[ \t]+\S", text, re.MULTILINE))
        assert shape.digit_frac == (len(re.findall(r"\d", text)) / len(text) if text else 0.0)
