"""JSON that comes from outside (the CRM's requests and answers, operators' bodies), read
strictly, so that whatever is read can be stored, sent and compared later.

- UTF-8 only; ``NaN``, ``Infinity`` and ``-Infinity`` are refused (not JSON).
- Numbers with a fraction or an exponent are read as ``Decimal``, never ``float``: money
  is read exactly as it was written.
- A ``\\ud800``-``\\udfff`` escape that is not half of a surrogate pair is refused: it is
  not a character, and no UTF-8 text (a record in Redis, a body to Finan) can hold it.

Every refusal is a ``ValueError`` whose message says what is wrong.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

# Any escape in the surrogate range, paired or not. Rare in real text (JSON encoders write
# such characters as UTF-8), so only a body that has one is looked at more closely.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes) -> Any:
    """The JSON value of ``raw``; ``ValueError`` (or ``RecursionError``, nested too deep)."""
    value = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_refuse_constant)
    if _SURROGATE_ESCAPE.search(raw) and _holds_lone_surrogate(value):
        raise ValueError(
            "it has a \\ud800-\\udfff escape that is not half of a surrogate pair, "
            "which is not a character"
        )
    return value


def _holds_lone_surrogate(value: Any) -> bool:
    try:  # a lone surrogate, in a key or a value, can't be encoded as UTF-8
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def kind(value: Any) -> str:
    """What JSON calls ``value``'s type, for messages: "object", "array", "number"..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


SHOWN_LENGTH = 60


def shown(value: Any) -> str:
    """``value`` for a message that echoes input: a string or number as written (cut at
    SHOWN_LENGTH characters), an object or array by its kind only (it may be huge, or
    nested too deep to print)."""
    if isinstance(value, dict | list):
        return f"a JSON {kind(value)}"
    text = repr(value)
    return text if len(text) <= SHOWN_LENGTH else text[: SHOWN_LENGTH - 3] + "..."
