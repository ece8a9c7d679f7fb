"""What both sides' schemas (``schemas/tourwell.py``, ``schemas/finan.py``) share: ``optional``
and the schema base that ignores unknown fields.

Everything here and in the two schema modules is plain, public marshmallow: ``fields.Nested``
for nested objects, ``fields.List(fields.Nested(...))`` for lists of them, ``Meta.unknown``,
load hooks, and ``fields.Field`` subclasses that override ``_deserialize``/``_serialize``.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields


def optional(field_class: type[fields.Field], *args: Any) -> fields.Field:
    """A ``field_class(*args)`` that may be missing or null: either loads as None."""
    return field_class(*args, load_default=None, allow_none=True)


class ExcludeUnknownSchema(Schema):
    """Base of the schemas of what an outside system sends (the CRM's invoice and bodies,
    Finan's answers): it adds fields over time, and that must not break the bridge.
    marshmallow does not pass ``unknown`` on to nested schemas, so each nested schema
    subclasses it too."""

    class Meta:
        unknown = EXCLUDE
