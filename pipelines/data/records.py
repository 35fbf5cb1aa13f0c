"""The canonical outcome record and its row-level validation.

One row per request x candidate model: what the model scored on that request, what it cost, how
long it took. Every adapter brings its format to this shape; :class:`OutcomeValidator` normalises
types and sends each bad row to quarantine with a reason code, never dropping it silently.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tierroute.errors import FeatureError, RequestError
from tierroute.errors import describe as _describe
from tierroute.hashing import prompt_hash
from tierroute.pipelines.data.feature_rows import FeatureFieldError, feature_fields
from tierroute.request import messages_to_prompt
from tierroute.schema import summarize_schema

__all__ = [
    "OUTCOME_FIELDS",
    "FEATURE_FIELDS",
    "REQUIRED_FIELDS",
    "QUARANTINE_REASONS",
    "RowIssue",
    "OutcomeValidator",
    "prompt_hash",
    "quarantine_line",
    "escape_text",
]

#: The canonical field names, in order (the contract with every adapter and every consumer).
OUTCOME_FIELDS: tuple[str, ...] = (
    "request_id",
    "prompt",
    "output_schema",
    "latency_sla_ms",
    "task",
    "model",
    "quality",
    "correct",
    "cost_usd",
    "latency_ms",
    "timestamp",
    "chosen",
    "propensity",
)
#: Fields a row cannot do without (plus at least one of quality / correct). A feature-only row
#: (below) holds ``features`` and ``feature_spec`` in place of the prompt.
REQUIRED_FIELDS: tuple[str, ...] = ("request_id", "prompt", "model", "cost_usd")
#: The optional fields of a feature-only row (privacy mode, ``serve --log-features``): the feature
#: vector the serving bundle's model read (numbers, null for a missing value) and that bundle's
#: FeatureSpec fingerprint (64 hex digits). A canonical record holds them only when the row does.
FEATURE_FIELDS: tuple[str, ...] = ("features", "feature_spec")

#: Reason codes a quarantined row can carry, with what each means.
QUARANTINE_REASONS: dict[str, str] = {
    "unparseable_row": "the line/record could not be parsed at all",
    "missing_field": "a required field is absent or empty",
    "wrong_type": "a field has the wrong type",
    "quality_nan": "quality is NaN (the benchmark recorded no score)",
    "quality_out_of_range": "quality outside [0, 1]",
    "negative_cost": "cost_usd below zero",
    "negative_latency": "latency_ms or latency_sla_ms below zero",
    "propensity_out_of_range": "propensity outside (0, 1]",
    "bad_features": "features is not a list of numbers and nulls, or feature_spec is not a FeatureSpec fingerprint",
    "bad_schema": "output_schema is not a schema tierroute can read",
    "bad_timestamp": "timestamp is neither ISO 8601 nor epoch seconds",
    "bad_encoding": "the line is not UTF-8, or a text field holds a lone surrogate (not text)",
    "conflicting_request_id": "request_id already used for a different prompt",
    "duplicate_request_model": "a second outcome for the same request x model",
    "contaminated": "prompt listed as contaminated by the data's publisher (excluded on purpose)",
}


@dataclass(frozen=True, slots=True)
class RowIssue:
    """Why one row was quarantined."""

    reason: str
    detail: str


def escape_text(text: str) -> str:
    """``text`` unchanged when it is valid Unicode; otherwise every lone surrogate written out as
    an escape, so it can be stored as UTF-8: ``\\xNN`` for an undecodable byte that
    ``surrogateescape`` carried, ``\\udNNN`` for any other lone surrogate.

    >>> escape_text("ok"), escape_text("a\\udcff b\\ud800")
    ('ok', 'a\\\\xff b\\\\ud800')
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _json_safe(value: Any) -> Any:
    """A JSON-writable copy of a quarantined row: non-finite floats and odd objects as text, text
    with lone surrogates escaped (:func:`escape_text`), integers too long to print summarised."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 1000 else _show(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {escape_text(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return escape_text(str(value))


def quarantine_line(where: str, reason: str, detail: str, row: Any) -> str:
    """One line of ``quarantine.jsonl`` (without the newline): ``{"where", "reason", "detail",
    "row"}``, always valid UTF-8 JSON whatever the row held (see :func:`_json_safe`)."""
    record = {"where": where, "reason": reason, "detail": detail, "row": row}
    return json.dumps(_json_safe(record), ensure_ascii=False)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


#: the reason a number too large for a float gets, per field (a range reason where the field has one)
_OVERFLOW_REASON = {
    "quality": "quality_out_of_range",
    "latency_ms": "negative_latency",
    "latency_sla_ms": "negative_latency",
    "propensity": "propensity_out_of_range",
}


def _show(value: object) -> str:
    """:func:`tierroute.errors.describe`, safe for integers too long to print (Python refuses to
    turn one of over 4,300 digits into text)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1000:
        digits = int((value.bit_length() - 1) * math.log10(2)) + 1  # exact but for one power of ten
        digits += abs(value) >= 10**digits
        return f"an integer of {digits:,} digits (int)"
    return _describe(value)


def _as_float(name: str, value: object) -> float:
    if isinstance(value, bool):
        raise _Bad("wrong_type", f"{name} must be a number; got {_show(value)}")
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise _Bad(
                _OVERFLOW_REASON.get(name, "wrong_type"),
                f"{name} must be a finite number; got {_show(value)}, beyond a float's range (about 1.8e308)",
            ) from None
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _Bad("wrong_type", f"{name} must be a number; got {_show(value)}")


_EPOCH = re.compile(r"-?\d{1,12}(?:\.\d+)?")
_TRUE = {"true", "1", "1.0", "yes", "t", "y"}
_FALSE = {"false", "0", "0.0", "no", "f", "n"}


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Bad("wrong_type", f"{name} must be true/false (or 1/0); got {_show(value)}")


def _as_timestamp(value: object) -> str:
    try:
        if isinstance(value, str) and _EPOCH.fullmatch(value.strip()):
            value = float(value)  # one rule for JSON numbers and CSV text alike: digits are epoch seconds
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), tz=timezone.utc).isoformat()
        if isinstance(value, datetime):
            stamp = value
        elif isinstance(value, str):
            stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        else:
            raise TypeError
    except (TypeError, ValueError, OverflowError, OSError):
        raise _Bad("bad_timestamp", f"timestamp must be ISO 8601 or epoch seconds; got {_show(value)}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.astimezone(timezone.utc).isoformat()


def _check_text(record: Mapping[str, Any]) -> None:
    """Refuse a text field holding a lone surrogate (a JSON ``"\\ud800"`` escape, bytes decoded
    with ``surrogateescape``): it is not text, cannot be stored as UTF-8 and would break every
    reader downstream."""
    for name, value in record.items():
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _Bad(
                    "bad_encoding",
                    f"{name} holds a lone surrogate (U+{ord(value[exc.start]):04X}) at character {exc.start}, "
                    "half of a UTF-16 pair that is not text; fix the writer (it split a pair or decoded bytes "
                    "wrongly) and export the row again",
                ) from None


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.issue = RowIssue(reason, detail)


@dataclass
class OutcomeValidator:
    """Normalises raw rows into canonical outcome records, remembering what it has seen so that
    duplicates and conflicting ids are caught across files.

    ``correct_threshold``: when a row has a quality but no ``correct``, correct = quality >= it.
    """

    correct_threshold: float = 0.5
    _prompts: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    _seen: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def validate(self, raw: Mapping[str, Any], where: str) -> dict[str, Any] | RowIssue:
        """Return the canonical record, or the :class:`RowIssue` that sends the row to quarantine.
        ``where`` names the row's origin (``file:line``) for messages."""
        record = self.normalise(raw)
        return record if isinstance(record, RowIssue) else self.check_unique(record, where)

    def normalise(self, raw: Mapping[str, Any]) -> dict[str, Any] | RowIssue:
        """The row-local half of :meth:`validate` (types, ranges, schema): no state, so files can be
        normalised in parallel (the Dask engine) and then pass :meth:`check_unique` in order."""
        try:
            return self._normalise(raw)
        except _Bad as bad:
            return bad.issue

    def check_unique(self, record: dict[str, Any], where: str) -> dict[str, Any] | RowIssue:
        """The stateful half of :meth:`validate`: one prompt per request_id, one outcome per
        request x model, in the order rows arrive."""
        key = (record["request_id"], record["model"])
        phash = prompt_hash(
            record["prompt"] if record["prompt"] is not None else json.dumps([record.get("feature_spec"), record.get("features")])
        )  # a feature-only row: its vector stands for the prompt
        first = self._prompts.get(record["request_id"])
        if first is not None and first[0] != phash:
            return RowIssue(
                "conflicting_request_id",
                f"request_id {record['request_id']!r} was first used for a different prompt at {first[1]}; give one of them another id",
            )
        if key in self._seen:
            return RowIssue(
                "duplicate_request_model", f"request_id {key[0]!r} x model {key[1]!r} already has an outcome (first at {self._seen[key]})"
            )
        self._prompts.setdefault(record["request_id"], (phash, where))
        self._seen[key] = where
        return record

    def _normalise(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        try:
            vector = feature_fields(raw)
        except FeatureFieldError as exc:
            raise _Bad(exc.reason, exc.detail) from None
        for name in REQUIRED_FIELDS:
            if _is_missing(raw.get(name)) and not (name == "prompt" and (raw.get("messages") or vector is not None)):
                raise _Bad("missing_field", f"required field {name!r} is missing or empty")
        if _is_missing(raw.get("quality")) and _is_missing(raw.get("correct")):
            raise _Bad("missing_field", "a row needs 'quality' or 'correct'; both are missing")

        request_id = raw["request_id"]
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
            raise _Bad("wrong_type", f"request_id must be a string or an int; got {_show(request_id)}")
        if isinstance(request_id, int) and request_id.bit_length() > 256:
            raise _Bad("wrong_type", f"request_id must be an int of at most 77 digits (or a string); got {_show(request_id)}")
        model = raw["model"]
        if not isinstance(model, str):
            raise _Bad("wrong_type", f"model must be a string; got {_show(model)}")

        prompt = raw.get("prompt")
        if _is_missing(prompt) and vector is not None and _is_missing(raw.get("messages")):
            prompt = None  # a feature-only row
        elif _is_missing(prompt):
            try:
                prompt = messages_to_prompt(raw.get("messages"))
            except RequestError as exc:
                raise _Bad("wrong_type", str(exc)) from None
        if isinstance(prompt, list):
            try:
                prompt = messages_to_prompt(prompt)
            except RequestError as exc:
                raise _Bad("wrong_type", str(exc)) from None
        if not isinstance(prompt, str) and vector is None:
            raise _Bad("wrong_type", f"prompt must be text or chat messages; got {_show(prompt)}")

        quality: float | None = None
        if not _is_missing(raw.get("quality")):
            quality = _as_float("quality", raw["quality"])
            if math.isnan(quality):
                raise _Bad("quality_nan", "quality is NaN: the source recorded no score for this model")
            if not 0.0 <= quality <= 1.0:
                raise _Bad("quality_out_of_range", f"quality must be in [0, 1]; got {quality!r}")
        correct = None if _is_missing(raw.get("correct")) else _as_bool("correct", raw["correct"])
        if quality is None:
            quality = 1.0 if correct else 0.0
        if correct is None:
            correct = quality >= self.correct_threshold

        cost = _as_float("cost_usd", raw["cost_usd"])
        if not math.isfinite(cost):
            raise _Bad("wrong_type", f"cost_usd must be a finite number; got {cost!r}")
        if cost < 0:
            raise _Bad("negative_cost", f"cost_usd must be >= 0; got {cost!r}")

        record: dict[str, Any] = {
            "request_id": str(request_id),
            "prompt": prompt,
            "output_schema": self._schema(raw.get("output_schema")),
            "latency_sla_ms": self._non_negative("latency_sla_ms", raw.get("latency_sla_ms")),
            "task": None if _is_missing(raw.get("task")) else str(raw["task"]),
            "model": model.strip(),
            "quality": quality,
            "correct": bool(correct),
            "cost_usd": cost,
            "latency_ms": self._non_negative("latency_ms", raw.get("latency_ms")),
            "timestamp": None if _is_missing(raw.get("timestamp")) else _as_timestamp(raw["timestamp"]),
            "chosen": None if _is_missing(raw.get("chosen")) else _as_bool("chosen", raw["chosen"]),
            "propensity": self._propensity(raw.get("propensity")),
        }
        if vector is not None:
            record["features"], record["feature_spec"] = vector
        _check_text(record)
        return record

    @staticmethod
    def _non_negative(name: str, value: object) -> float | None:
        if _is_missing(value):
            return None
        number = _as_float(name, value)
        if math.isnan(number):
            return None
        if number < 0 or math.isinf(number):
            raise _Bad("negative_latency", f"{name} must be a finite number >= 0; got {number!r}")
        return number

    @staticmethod
    def _propensity(value: object) -> float | None:
        if _is_missing(value):
            return None
        p = _as_float("propensity", value)
        if not 0.0 < p <= 1.0:
            raise _Bad("propensity_out_of_range", f"propensity must be in (0, 1]; got {p!r}")
        return p

    @staticmethod
    def _schema(value: object) -> str | None:
        """Canonical JSON text of the schema (Arrow needs one type per column), or None."""
        if _is_missing(value):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise _Bad("bad_schema", f"output_schema is not valid JSON ({exc.msg})") from None
        try:
            present = summarize_schema(value).present
        except FeatureError as exc:
            raise _Bad("bad_schema", str(exc)) from None
        if not present:  # "null", {"type": "text"}: free text, no schema
            return None
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
