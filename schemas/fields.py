"""marshmallow field bases without marshmallow's per-call overhead, the ``Direct*`` fields
built on them, ``optional`` and the schema base that ignores unknown fields; both sides
(``schemas/tourwell.py``, ``schemas/finan.py``) use them.

A twenty-row CRM invoice is some seventy nested objects and 250 fields, so loading it is
mostly marshmallow's own per-object and per-field work, not the bridge's checks.
``DirectLoad`` skips the validator set-up ``Field.deserialize`` repeats on every call for a
field that has no validators; ``FlatNested`` loads a nested object's fields itself instead
of loading its schema. Results and messages are marshmallow's own:
``tests/schemas/test_direct_fields.py`` compares them with ``fields.Nested`` and with
marshmallow's field classes.

What they lean on: ``Field.deserialize``'s contract (public), and, for ``FlatNested``, a
schema's ``load_fields``, ``unknown`` and ``error_messages``, and that nested schemas have
no load hooks (a test checks every schema of the bridge).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, missing


class DirectLoad(fields.Field):
    """A field base: ``deserialize`` without marshmallow's per-call validator set-up.

    marshmallow's ``Field.deserialize`` builds an ``And`` of the field's validators on every
    call, none or not, and a twenty-row invoice deserialises some 250 fields. A field with no
    validators, ``pre_load`` or ``post_load`` goes straight to its ``_deserialize`` here,
    after the same ``None`` check (``allow_none``, else marshmallow's "null" message); a
    missing value, or a field with any of those, takes marshmallow's own path. Over one of
    marshmallow's field classes it comes first: ``class String(DirectLoad, fields.String)``.
    """

    def deserialize(
        self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any
    ) -> Any:
        if (
            value is missing
            or self.validators
            or getattr(self, "pre_load", None)  # marshmallow 4.3 and later
            or getattr(self, "post_load", None)
        ):
            return super().deserialize(value, attr, data, **kwargs)
        if value is None:
            if self.allow_none:
                return None
            raise self.make_error("null")
        return self._deserialize(value, attr, data, **kwargs)


# FlatNested's plan: (data key, attribute, field) per field, and the keys allowed when
# unknown keys are refused (None when they are ignored).
_Plan = tuple[tuple[tuple[str, str, fields.Field], ...], frozenset[str] | None]


class FlatNested(DirectLoad, fields.Nested):
    """``fields.Nested`` that loads its schema's fields itself, without a schema load.

    Same result and same errors as ``fields.Nested``: a dict of the loaded fields, the
    fields' messages under their keys, ``{"_schema": ["Invalid input type."]}`` for a value
    that is not an object, and ``unknown`` (the field's or the schema's) honoured for
    ``EXCLUDE`` and ``RAISE``. It skips the schema's own machinery, so the nested schema
    must declare no hooks (``pre_load``, ``post_load``, ``validates``, ``validates_schema``;
    ``post_dump`` and ``pre_dump`` are fine: dumping goes through the schema as usual).
    ``many``, ``partial`` and ``unknown=INCLUDE`` are left to ``fields.Nested``.
    A schema load costs as much as its fields; an invoice has seventy nested objects.
    """

    @functools.cached_property
    def _plan(self) -> _Plan | None:
        """What to load, worked out on first use; None where ``fields.Nested`` does it."""
        schema = self.schema
        unknown = self.unknown or schema.unknown
        if self.many or schema.many or unknown not in (EXCLUDE, RAISE):
            return None
        keyed = tuple(
            (name if field.data_key is None else field.data_key, field.attribute or name, field)
            for name, field in schema.load_fields.items()
        )
        known = frozenset(key for key, _, _ in keyed) if unknown == RAISE else None
        return keyed, known

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, partial: Any = None, **kwargs: Any
    ) -> Any:
        plan = self._plan
        if plan is None or partial is not None:
            return super()._deserialize(value, attr, data, partial=partial, **kwargs)
        if type(value) is not dict and not isinstance(value, Mapping):
            message = self.schema.error_messages["type"]
            raise ValidationError({"_schema": [message]}, valid_data={})
        keyed, known = plan
        loaded: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for key, attribute, field in keyed:
            try:
                result = field.deserialize(value.get(key, missing), key, value)
            except ValidationError as error:
                errors[key] = error.messages
                result = error.valid_data or missing
            if result is not missing:
                loaded[attribute] = result
        if known is not None:  # unknown=RAISE: after the fields' errors, as Schema.load does
            for key in set(value) - known:
                errors[key] = [self.schema.error_messages["unknown"]]
        if errors:
            raise ValidationError(errors, valid_data=loaded)
        return loaded


# marshmallow's fields as they are, loading without the per-call validator set-up
# (``DirectLoad``): Finan's decode_request loads about 190 fields for a twenty-item body.


class DirectString(DirectLoad, fields.String):
    """``fields.String``, loaded through ``DirectLoad``."""


class DirectInteger(DirectLoad, fields.Integer):
    """``fields.Integer``, loaded through ``DirectLoad``."""


class DirectBoolean(DirectLoad, fields.Boolean):
    """``fields.Boolean``, loaded through ``DirectLoad``."""


class DirectList(DirectLoad, fields.List):
    """``fields.List``, loaded through ``DirectLoad``."""


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
