"""The bridge's own envelopes and record, as the CRM and operators see them
(docs/contract/http.md#envelope).

These schemas shape output; the admin API's input schemas (below) reject unknown fields,
unlike the CRM's, which the bridge must tolerate as the CRM evolves
(docs/contract/mapping.md#reading).
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas.states import RESYNC_STATES, STATES


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
    lookup_url = fields.String(
        allow_none=True,
        metadata={
            "description": "the Finan link (PROVIDER_LOOKUP_URL_TEMPLATE filled in) once Finan "
            "accepted a body, cancelled or not; without the setting, the last lookup_url the "
            "CRM sent in an update"
        },
    )
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


# --- the operator-facing admin API (docs/contract/http.md#admin-api) ---
# Its bodies reject unknown fields.

MAX_PER_PAGE = 100


class InvoiceListQuerySchema(BridgeSchema):
    """``GET /admin/invoices``: filter by state, search by invoice id or code, page."""

    # The descriptions are the query parameters' in the OpenAPI document (bridge/web/admin_api.py).
    state = fields.String(
        validate=validate.OneOf(STATES), metadata={"description": "Only records in this state."}
    )
    q = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "An invoice id, or the CRM's invoice code or its start."},
    )
    page = fields.Integer(
        load_default=1,
        validate=validate.Range(min=1, max=1_000_000),
        metadata={"description": "From 1."},
    )
    per_page = fields.Integer(
        load_default=50,
        validate=validate.Range(min=1, max=MAX_PER_PAGE),
        metadata={"description": "How many records a page holds."},
    )
    # Vietnam dates (the operators' days), both included: the last change on or after
    # ``from`` and on or before ``to``.
    since = fields.Date(
        data_key="from",
        metadata={
            "description": "Only records last changed on or after this day, in Vietnam time "
            "(YYYY-MM-DD)."
        },
    )
    until = fields.Date(
        data_key="to",
        metadata={
            "description": "Only records last changed on or before this day, in Vietnam time "
            "(YYYY-MM-DD)."
        },
    )

    @validates_schema
    def check_range(self, data: dict[str, object], **kwargs: object) -> None:
        since, until = data.get("since"), data.get("until")
        if since is not None and until is not None and since > until:  # type: ignore[operator]
            raise ValidationError("must not be after 'to'", field_name="from")


class JsonBoolean(fields.Boolean):
    """A JSON body's true or false, and nothing else (not 0, 1 or "true")."""

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class ResyncBodySchema(BridgeSchema):
    """``POST /admin/invoices/{id}/resync``: an optional body, ``{"force": true}``."""

    force = JsonBoolean(load_default=False)


class ResyncQuerySchema(BridgeSchema):
    """``POST /admin/invoices/{id}/resync?force=1``."""

    force = fields.Boolean(
        load_default=False,
        metadata={"description": "send even when Finan already holds exactly this body"},
    )


class BulkResyncSchema(BridgeSchema):
    """``POST /admin/resync``: ``ids`` or ``state``, not both."""

    ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)),
        validate=validate.Length(min=1, max=50_000),
    )
    state = fields.String(validate=validate.OneOf(RESYNC_STATES))
    force = JsonBoolean(load_default=False)

    @validates_schema
    def one_of_ids_or_state(self, data: dict, **kwargs: object) -> None:
        if ("ids" in data) == ("state" in data):
            raise ValidationError("send either ids or state", field_name="_schema")


class PendingSchema(BridgeSchema):
    operation = fields.String(required=True)
    state = fields.String(required=True, metadata={"description": "the state once accepted"})
    attempts = fields.Integer(required=True)
    job_id = fields.String(allow_none=True)
    next_attempt_at = fields.String(allow_none=True)


class AdminRecordSchema(RecordSchema):
    """A record as operators see it: the public view, plus what is pending."""

    created_at = fields.String()
    pending = fields.Nested(PendingSchema, allow_none=True)
    customer = fields.String(
        allow_none=True,
        metadata={"description": "The customer's name as sent to Finan (null: kept before names)."},
    )


class EventSchema(BridgeSchema):
    """One line of an invoice's history."""

    at = fields.String(required=True)
    operation = fields.String(required=True, metadata={"description": "issue, update, ..."})
    actor = fields.String(required=True, metadata={"enum": ["crm", "operator", "worker"]})
    by = fields.String(
        allow_none=True,
        metadata={
            "description": "for an operator's event, the operator's name (their "
            "BRIDGE_ADMIN_TOKENS entry; 'operator' for a bare token); null for the CRM's, the "
            "worker's, the command line's and events kept before names"
        },
    )
    outcome = fields.String(required=True)
    message = fields.String(allow_none=True)
    code = fields.Integer(allow_none=True, metadata={"description": "Finan's code"})


class InvoiceListSchema(BridgeSchema):
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    invoices = fields.List(fields.Nested(AdminRecordSchema), required=True)


class InvoiceDetailSchema(BridgeSchema):
    record = fields.Nested(AdminRecordSchema, required=True)
    history = fields.List(fields.Nested(EventSchema), required=True)
    last_body = fields.Dict(
        allow_none=True, required=True, metadata={"description": "the body Finan accepted last"}
    )
    pending_body = fields.Dict(
        allow_none=True,
        required=True,
        metadata={"description": "the body not accepted yet (queued, failed or dead)"},
    )


class PreviewSchema(BridgeSchema):
    record = fields.Nested(
        AdminRecordSchema,
        required=True,
        allow_none=True,
        metadata={"description": "null: the bridge has no record of the invoice yet"},
    )
    operation = fields.String(required=True, metadata={"enum": ["issue", "update", "cancel"]})
    body = fields.Dict(required=True, metadata={"description": "what a re-sync would send"})
    compared_with = fields.Dict(
        allow_none=True,
        required=True,
        metadata={
            "description": "the body Finan last accepted (not one it refused or never "
            "confirmed); null when Finan has never accepted one"
        },
    )
    changed = fields.Boolean(
        required=True, metadata={"description": "body differs from compared_with"}
    )
    would_send = fields.Boolean(
        required=True,
        metadata={
            "description": "a re-sync without force would send: changed, or the invoice is "
            "failed, dead or queued (always sent), or Finan never accepted it"
        },
    )
    diff = fields.String(
        required=True,
        metadata={"description": "a unified diff of compared_with -> body, '' if equal"},
    )
    summary = fields.String(
        required=True,
        metadata={"description": "one plain sentence: what a re-sync without force does"},
    )


class ResyncResultSchema(BridgeSchema):
    result = fields.String(required=True, metadata={"enum": ["sent", "unchanged", "queued"]})
    record = fields.Nested(AdminRecordSchema, required=True)


class BatchItemSchema(BridgeSchema):
    invoice_id = fields.Integer(required=True)
    result = fields.String(required=True)
    state = fields.String(allow_none=True, required=True)
    message = fields.String(required=True)


class BatchSchema(BridgeSchema):
    batch_id = fields.String(required=True)
    source = fields.String(required=True)
    runner = fields.String(required=True, metadata={"enum": ["queue", "cli"]})
    force = fields.Boolean(required=True)
    total = fields.Integer(required=True)
    done = fields.Integer(required=True)
    finished = fields.Boolean(required=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    created_at = fields.String(required=True)
    finished_at = fields.String(allow_none=True, required=True)
    next_slice_at = fields.String(allow_none=True, required=True)
    problems = fields.List(fields.Nested(BatchItemSchema), required=True)
    kind = fields.String(required=True, metadata={"enum": ["resync", "reconcile"]})
    started_by = fields.String(
        required=True,
        metadata={"description": "who started it (the operator's name when known) and how"},
    )


class BatchSummarySchema(BatchSchema):
    class Meta(BatchSchema.Meta):
        exclude = ("problems",)


class BatchListQuerySchema(BridgeSchema):
    page = fields.Integer(
        load_default=1,
        validate=validate.Range(min=1, max=1_000_000),
        metadata={"description": "From 1."},
    )
    per_page = fields.Integer(
        load_default=50,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "How many batches a page holds."},
    )


class BatchListSchema(BridgeSchema):
    total = fields.Integer(required=True, metadata={"description": "batches of the last 7 days"})
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    batches = fields.List(
        fields.Nested(BatchSummarySchema),
        required=True,
        metadata={"description": "newest first; every kind (re-sync, reconciliation)"},
    )


def _admin_envelope(name: str, data: fields.Field) -> type[Schema]:
    return type(
        name,
        (BridgeSchema,),
        {
            "success": fields.Constant(True, required=True),
            "message": fields.String(required=True),
            "data": data,
        },
    )


InvoiceListEnvelopeSchema = _admin_envelope(
    "InvoiceListEnvelopeSchema", fields.Nested(InvoiceListSchema, required=True)
)
InvoiceDetailEnvelopeSchema = _admin_envelope(
    "InvoiceDetailEnvelopeSchema", fields.Nested(InvoiceDetailSchema, required=True)
)
PreviewEnvelopeSchema = _admin_envelope(
    "PreviewEnvelopeSchema", fields.Nested(PreviewSchema, required=True)
)
ResyncEnvelopeSchema = _admin_envelope(
    "ResyncEnvelopeSchema", fields.Nested(ResyncResultSchema, required=True)
)
BatchEnvelopeSchema = _admin_envelope(
    "BatchEnvelopeSchema", fields.Nested(BatchSchema, required=True)
)
BatchListEnvelopeSchema = _admin_envelope(
    "BatchListEnvelopeSchema", fields.Nested(BatchListSchema, required=True)
)


# --- what Finan holds: one invoice checked, and reconciliation ---


class ReconcileSchema(BridgeSchema):
    """``POST /admin/reconcile``: ``ids`` or ``state``, not both (as for a bulk re-sync)."""

    ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)),
        validate=validate.Length(min=1, max=50_000),
    )
    state = fields.String(validate=validate.OneOf(STATES))

    @validates_schema
    def one_of_ids_or_state(self, data: dict, **kwargs: object) -> None:
        if ("ids" in data) == ("state" in data):
            raise ValidationError("send either ids or state", field_name="_schema")


class DifferenceSchema(BridgeSchema):
    field = fields.String(
        required=True,
        metadata={
            "description": "what differs: total_amount, customer.name, items[1].price, items "
            "(a different number of items), ...; 'invoice' when Finan does not know it"
        },
    )
    bridge = fields.Raw(
        required=True, allow_none=True, metadata={"description": "the bridge's value"}
    )
    finan = fields.Raw(required=True, allow_none=True, metadata={"description": "Finan's value"})


class FinanCheckSchema(BridgeSchema):
    finan = fields.Dict(
        allow_none=True,
        required=True,
        metadata={"description": "Finan's copy as its detail returns it; null: Finan has none"},
    )
    in_sync = fields.Boolean(required=True)
    differences = fields.List(fields.Nested(DifferenceSchema), required=True)
    bridge = fields.Dict(
        required=True,
        metadata={"description": "the last body Finan accepted, with the totals it answered"},
    )
    checked_at = fields.String(required=True)
    record = fields.Nested(AdminRecordSchema, required=True)


FinanCheckEnvelopeSchema = _admin_envelope(
    "FinanCheckEnvelopeSchema", fields.Nested(FinanCheckSchema, required=True)
)
