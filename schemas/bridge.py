"""The bridge's own envelopes and record, as the CRM and operators see them (DESIGN.md §3).

These schemas shape output only; the bridge's own admin input schemas (later) reject
unknown fields, unlike the CRM's, which the bridge must tolerate as the CRM evolves.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields


class BridgeSchema(Schema):
    class Meta:
        unknown = RAISE


class ProviderErrorSchema(BridgeSchema):
    code = fields.Integer(allow_none=True)
    message = fields.String()


class RecordSchema(BridgeSchema):
    """The public view of a record: ``data`` of every CRM-facing success."""

    invoice_id = fields.Integer(required=True)
    code = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    provider_invoice_id = fields.String()
    provider_order_code = fields.String(allow_none=True)
    provider_system_code = fields.String(allow_none=True)
    # Money leaves as a decimal string: exact, and the CRM's own update body uses strings.
    total_amount = fields.Decimal(as_string=True, allow_none=True)
    tax_amount = fields.Decimal(as_string=True, allow_none=True)
    lookup_url = fields.String(allow_none=True)
    cancel_note = fields.String(allow_none=True)
    last_error = fields.Nested(ProviderErrorSchema, allow_none=True)
    updated_at = fields.String()


class SuccessEnvelopeSchema(BridgeSchema):
    # ``required`` on fields that are only dumped tells the OpenAPI document they are always
    # there.
    success = fields.Constant(True, required=True)
    message = fields.String(required=True)
    data = fields.Nested(RecordSchema, required=True)


class ErrorEnvelopeSchema(BridgeSchema):
    success = fields.Constant(False, required=True)
    message = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), required=True)


success_schema = SuccessEnvelopeSchema()


class HealthSchema(BridgeSchema):
    """``GET /healthz``: the process is alive."""

    status = fields.Constant("ok", required=True)


class ReadinessSchema(BridgeSchema):
    """``GET /readyz``: ready for traffic when Redis answers."""

    status = fields.String(required=True, metadata={"enum": ["ok", "unavailable"]})
    redis = fields.String(required=True, metadata={"enum": ["ok", "unreachable"]})


health_schema = HealthSchema()
readiness_schema = ReadinessSchema()
