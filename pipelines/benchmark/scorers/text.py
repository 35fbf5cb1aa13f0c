"""Scorers: how good one model answer is against the prompt's reference, as a quality in [0, 1].

``tierroute benchmark`` scores every answer with the scorer its prompt names, then records
``correct = quality >= threshold``. Each scorer states its threshold once, in its ``ScorerSpec``
(the registry gathers them: :func:`~tierroute.pipelines.benchmark.scorers.registry.default_thresholds`);
a run may override them, and they are written into every outcome row and the run's summary.

=========  ==========================================================================  =========
scorer     quality                                                                     threshold
=========  ==========================================================================  =========
exact      1 when the normalised answer equals a normalised reference, else 0          1.0
choice     1 when the choice letter found in the answer is the reference letter        1.0
numeric    1 when the answer's number is within a relative 1e-4 of the reference       1.0
f1         SQuAD token F1 (the article's extraction metric), best over the references  0.5
json       0 when no JSON or schema-invalid; else field-level F1 against the reference 0.5
code       1 when the answer's code passes the reference tests in a subprocess         1.0
judge      a judge model's grade: n/10 for a 0-10 score, 1/0 for yes/no                0.7
=========  ==========================================================================  =========

Normalisation (exact, f1, string leaves of json), as SQuAD: lower case, drop ASCII punctuation,
drop the articles a/an/the, collapse whitespace. The text scorers live here; json, code and judge
in :mod:`~tierroute.pipelines.benchmark.scorers.json_scorer`, :mod:`~tierroute.pipelines.benchmark.scorers.code_scorer` and
:mod:`~tierroute.pipelines.benchmark.scorers.judge`.

>>> _score_f1("The order id is A-1234.", "order id A-1234").quality  # 3 of 4 words, all 3 of 3
0.8571428571428571
>>> extract_choice("I think the answer is (B).")
'B'
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from tierroute.pipelines.benchmark.scorers.base import Score, ScorerSpec, normalize_answer

__all__ = ["SCORER_SPECS", "NUMERIC_REL_TOL", "Score", "normalize_answer", "extract_choice", "extract_number", "token_f1"]

#: numeric answers within this relative distance of the reference are right (abs. 1e-9 near zero)
NUMERIC_REL_TOL = 1e-4


# -- exact and f1 ----------------------------------------------------------------------------------


def _answers(reference: Any) -> list[str]:
    return [str(r) for r in reference] if isinstance(reference, (list, tuple)) else [str(reference)]


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 between two texts (after :func:`normalize_answer`); 1.0 when both are empty."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    # 2PR/(P+R) == 2*same/(|pred|+|ref|); one division, so an F1 of exactly 0.5 is 0.5, not
    # 0.49999999999999994 (which would flip ``correct`` at the 0.5 threshold)
    return 2 * same / (len(pred) + len(ref))


def _score_exact(response: str, reference: Any) -> Score:
    answer = normalize_answer(response)
    hit = any(answer == normalize_answer(r) for r in _answers(reference))
    return Score(float(hit), f"normalised answer {answer[:60]!r}" + ("" if hit else " matches no reference"))


def _score_f1(response: str, reference: Any) -> Score:
    best = max(token_f1(response, r) for r in _answers(reference))
    return Score(best, f"token F1 {best:.3f}")


# -- choice ------------------------------------------------------------------------------------------

_ANSWER_IS = re.compile(r"answer\b\s*(?:is\b\s*[:=]?|[:=])\s*(?:option|choice)?\s*[\s(\[*_\"']*([A-Z])(?![A-Za-z0-9])", re.I)
_PRONOUN_I = re.compile(r"'[a-z]|\s+[a-z]")  # "answer: I think ...", "answer is I'd say ..."
_ALONE = re.compile(r"[\s(\[*_\"'.]*([A-Za-z])[\s)\]*_\"'.:]*")
_LEADING = re.compile(r"[\s(\[*_]*([A-Z])[)\].:*_]+(?:\s|$)")
_MARKED = re.compile(r"\(([A-Za-z])\)|\*\*([A-Z])\*\*|\b(?:option|choice)\s+([A-Z])\b", re.I)


def extract_choice(text: str) -> str | None:
    """The choice letter an answer gives, or None. Tried in order: the last "answer is (B)" /
    "Answer: B"; the whole answer being one letter ("B", "(b)", "**B**", "B."); a leading "B)",
    "B." or "**B**:"; else the last "(B)", "**B**" or "option B". Inside a sentence a bare letter must
    be upper case (so the article "a" is not read as choice A), and "I" followed by a lower-case word or
    an apostrophe ("Answer: I think ...") is the pronoun."""
    found = [m.group(1) for m in _ANSWER_IS.finditer(text) if not (m.group(1) == "I" and _PRONOUN_I.match(text, m.end(1)))]
    found = [f for f in found if f.isupper() or re.search(rf"[(\[]\s*{f}\s*[)\]]", text)]
    if found:
        return found[-1].upper()
    alone = _ALONE.fullmatch(text)
    if alone:
        return alone.group(1).upper()
    leading = _LEADING.match(text)
    if leading:
        return leading.group(1)
    marked = list(_MARKED.finditer(text))
    if marked:
        letter = next(g for g in marked[-1].groups() if g)
        return letter.upper()
    return None


def _score_choice(response: str, reference: Any) -> Score:
    letter = extract_choice(response)
    if letter is None:
        return Score(0.0, "no choice letter found in the answer")
    return Score(float(letter == reference), f"chose {letter}, reference {reference}")


def _choice_reference(reference: Any) -> str:
    text = reference.strip().strip("()[]*. ").upper() if isinstance(reference, str) else ""
    if len(text) != 1 or not "A" <= text <= "Z":
        raise ValueError('a \'choice\' reference must be one letter A-Z such as "B" or "(B)"')
    return text


# -- numeric -------------------------------------------------------------------------------------------

# a sign counts only where it cannot be a hyphen: "pages 10-15" is 15, "2024-05-01" ends in 1, not -1
_SIGN = r"(?:(?<![\w.)\]])[-+])?"
_NUMBER = rf"{_SIGN}(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|{_SIGN}\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_HASHES = re.compile(rf"####\s*\$?\s*({_NUMBER})")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_NUMBER = re.compile(rf"answer\s*(?:is\b\s*[:=]?|[:=])[\s*]*\$?\s*({_NUMBER})", re.I)


def _to_float(token: str) -> float:
    return float(token.replace(",", ""))


def extract_number(text: str) -> float | None:
    """The number an answer gives, or None: after "####" (GSM8K), else in the last ``\\boxed{}``,
    else after the last "answer is", else the last number in the text. Thousands commas are
    dropped ("1,234.5"); a unicode minus counts, a hyphen after a word or number does not ("10-15" ends
    in 15, not -15); "$", "%" and units around it are ignored."""
    text = text.replace("\u2212", "-")
    hashes = _HASHES.findall(text)
    if hashes:
        return _to_float(hashes[-1])
    boxed = [n for b in _BOXED.findall(text) for n in _NUMBER_RE.findall(b)]
    if boxed:
        return _to_float(boxed[-1])
    stated = _ANSWER_NUMBER.findall(text)
    if stated:
        return _to_float(stated[-1])
    numbers = _NUMBER_RE.findall(text)
    return _to_float(numbers[-1]) if numbers else None


def _numeric_reference(reference: Any) -> float:
    if isinstance(reference, (int, float)) and not isinstance(reference, bool) and math.isfinite(reference):
        return float(reference)
    if isinstance(reference, str) and _NUMBER_RE.fullmatch(reference.strip().replace("\u2212", "-")):
        return _to_float(reference.strip().replace("\u2212", "-"))
    raise ValueError("a 'numeric' reference must be a finite number such as 42 or \"1,234.5\"")


def _score_numeric(response: str, reference: float, rel_tol: float = NUMERIC_REL_TOL) -> Score:
    value = extract_number(response)
    if value is None:
        return Score(0.0, "no number found in the answer")
    hit = math.isclose(value, reference, rel_tol=rel_tol, abs_tol=1e-9)
    return Score(float(hit), f"answered {value:g}, reference {reference:g}")


# -- the specs the registry collects ----------------------------------------------------------------


def _non_empty(scorer: str, reference: Any) -> None:
    if reference is None or (isinstance(reference, str) and not reference.strip() and scorer != "exact"):
        raise ValueError(f"the {scorer!r} scorer needs a non-empty 'reference'")


def _check_answers(scorer: str) -> Callable[[Any, Any], Any]:
    def check(reference: Any, output_schema: Any = None) -> Any:
        _non_empty(scorer, reference)
        answers = reference if isinstance(reference, (list, tuple)) else [reference]
        if not answers or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in answers):
            raise ValueError(f"an {scorer!r} reference must be a string or a non-empty list of strings")
        return [str(a) for a in answers] if isinstance(reference, (list, tuple)) else str(reference)

    return check


def _check_choice(reference: Any, output_schema: Any = None) -> str:
    _non_empty("choice", reference)
    return _choice_reference(reference)


def _check_numeric(reference: Any, output_schema: Any = None) -> float:
    _non_empty("numeric", reference)
    return _numeric_reference(reference)


SCORER_SPECS = (
    ScorerSpec("exact", 1.0, _check_answers("exact"), lambda response, ref, schema: _score_exact(response, ref), rank=0),
    ScorerSpec("choice", 1.0, _check_choice, lambda response, ref, schema: _score_choice(response, _choice_reference(ref)), rank=1),
    ScorerSpec("numeric", 1.0, _check_numeric, lambda response, ref, schema: _score_numeric(response, _numeric_reference(ref)), rank=2),
    ScorerSpec("f1", 0.5, _check_answers("f1"), lambda response, ref, schema: _score_f1(response, ref), rank=3),
)
