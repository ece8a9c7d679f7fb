"""The operators' status page at ``/admin/``: server-rendered HTML, no front-end build.

Log in with an admin token (``BRIDGE_ADMIN_TOKENS``) and the page keeps a session: in the
bridge's Redis, its cookie only a random id, HttpOnly, SameSite=Strict, limited to
``/admin``, Secure whenever the request came over TLS (directly, or through a proxy gunicorn
trusts; see ``forwarded_allow_ips``). Logging out ends it, and so do an idle timeout and an
absolute cap (``bridge/web/admin_session.py``). The session names which token logged in (by
a digest), checked on each request, so removing a token from ``BRIDGE_ADMIN_TOKENS`` ends
the sessions it opened. The key that signs the CSRF tokens is derived from the admin
tokens, so every web process agrees on it without another setting.

Every form carries a CSRF token (Flask-WTF's ``CSRFProtect``, checked only for this page's
forms: the JSON APIs authenticate with Bearer tokens and need none). The login form's is a
double-submit pair instead (a nonce in its own cookie, its HMAC in the form: ``login_form``),
so that serving the form to anyone stores nothing in Redis: a session exists only once
someone has logged in. Templates are
autoescaped Jinja; no script runs on the page at all (its Content-Security-Policy forbids
any).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import re
import secrets
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import (
    Flask,
    Response,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.views import MethodView
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_smorest import Api
from flask_wtf.csrf import CSRFError, CSRFProtect
from marshmallow import ValidationError

from bridge.config import AdminToken
from bridge.errors import BridgeError, NotFound, ProviderRejected
from bridge.invoices import rules
from bridge.invoices.mapping import finan_totals
from bridge.observability import logs
from bridge.store.admin_sessions import AdminSessions
from bridge.store.records import STATES
from bridge.web import admin_session, i18n
from bridge.web.admin_api import (
    finan_check_data,
    invoice_detail,
    list_invoices,
    operator_name,
)
from bridge.web.http import matching_token, services, token_matched
from bridge.web.openapi import (
    INVOICE_ID,
    PAGE_TAG,
    REQUEST_ID_HEADERS,
    Blueprint,
    error_responses,
)
from schemas.bridge import RESYNC_STATES, ErrorEnvelopeSchema, InvoiceListQuerySchema
from schemas.finan import decode_request

bp = Blueprint(
    "admin_page", __name__, url_prefix="/admin", template_folder="templates", tag=PAGE_TAG
)
csrf = CSRFProtect()

SESSION_COOKIE_NAME = "bridge_admin"
# Headers on every page: no scripts, no framing, nothing cached, no Referer to other sites
# (same-origin, not no-referrer: over https Flask-WTF checks the Referer of each form post).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_list_query = InvoiceListQuerySchema()


def session_secret(admin_tokens: tuple[str, ...]) -> bytes:
    """The key that signs the CSRF tokens: derived from the admin tokens (random without
    any: then nobody can log in anyway)."""
    if not admin_tokens:
        return os.urandom(32)
    material = "\n".join(sorted(admin_tokens)).encode()
    return hmac.new(material, b"bridge admin page session", hashlib.sha256).digest()


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def init_app(app: Flask, api: Api) -> None:
    """Register the page (documented in ``api``), its session settings and CSRF protection
    on ``app``."""
    settings = app.extensions["bridge"].settings
    app.secret_key = session_secret(settings.admin_tokens)
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE_NAME,
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        WTF_CSRF_CHECK_DEFAULT=False,  # only this page's forms (see ``check_csrf``)
        WTF_CSRF_TIME_LIMIT=None,  # a form is good for as long as its session
    )
    admin_session.install(  # in Redis; 503 without it
        app,
        AdminSessions(
            app.extensions["bridge"].redis,
            settings.admin_session_idle_seconds,
            settings.admin_session_max_seconds,
        ),
    )
    csrf.init_app(app)
    app.after_request(set_login_cookie)  # before i18n's: runs after it
    i18n.init_app(app, "/admin")  # Vietnamese by default, and English (bridge/web/i18n.py)
    api.register_blueprint(bp)


# --- the session ---


def session_admin() -> AdminToken | None:
    """The BRIDGE_ADMIN_TOKENS entry whose token opened this session (None: logged out, or
    its token was removed from the settings since)."""
    opened_by = session.get("admin")
    if opened_by is None:
        return None
    for admin in services().settings.admins:
        if token_id(admin.token) == opened_by:
            return admin
    return None


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(**kwargs: Any) -> Any:
        admin = session_admin()
        if admin is None:
            session.clear()
            return redirect(url_for(".login", next=request.full_path.rstrip("?")))
        # Name the operator for this request (``operator_name``, the log lines).
        g.operator = admin.name
        logs.bind(operator=admin.name)  # unbound with the request's log context
        return view(**kwargs)

    return wrapper


@bp.context_processor
def the_operator() -> dict[str, Any]:
    """``operator_name`` in every template: "logged in as …"."""
    return {"operator_name": operator_name()}


@bp.before_request
def check_csrf() -> None:
    if request.method != "POST":
        return
    if request.endpoint == LOGIN_ENDPOINT:
        check_login_csrf()
    else:
        csrf.protect()


# --- the login form's CSRF token, kept out of Redis ---
#
# Flask-WTF keeps a form's token in the session, and the session is in Redis: a login form
# served to anyone would store a session for each (50 cookieless GETs, 50 keys for 30
# minutes). The login form's token is instead a double-submit pair: a random nonce in a
# cookie of its own (HttpOnly, SameSite=Strict, only for the form's path) and, in the form,
# its HMAC under the page's secret. Nothing is stored before a login succeeds.

LOGIN_ENDPOINT = "admin_page.login"
LOGIN_COOKIE_NAME = "bridge_admin_login"


def login_form_token(nonce: str) -> str:
    secret = current_app.secret_key
    assert isinstance(secret, bytes)
    return hmac.new(secret, b"login form\n" + nonce.encode(), hashlib.sha256).hexdigest()


def check_login_csrf() -> None:
    nonce = request.cookies.get(LOGIN_COOKIE_NAME, "")
    presented = request.form.get("csrf_token", "")
    if not nonce or not hmac.compare_digest(presented.encode(), login_form_token(nonce).encode()):
        raise CSRFError("The login form's CSRF token is missing or does not match.")


def login_form(error: str | None, next_path: str, status: int = 200) -> Response:
    """The login form, its token from the browser's nonce (a new one, and its cookie, when
    it has none); no session is written."""
    nonce = request.cookies.get(LOGIN_COOKIE_NAME, "")
    if not LOGIN_NONCE.fullmatch(nonce):
        nonce = g.new_login_nonce = secrets.token_urlsafe(32)  # set by ``set_login_cookie``
    return make_response(
        render_template(
            "admin/login.html",
            error=error,
            next_path=next_path,
            login_csrf_token=login_form_token(nonce),
        ),
        status,
    )


LOGIN_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")


def set_login_cookie(response: Response) -> Response:
    """The new nonce's cookie, set after the language switch's (the session's goes last)."""
    nonce = g.pop("new_login_nonce", None)
    if nonce is not None:
        response.set_cookie(
            LOGIN_COOKIE_NAME,
            nonce,
            path=url_for("admin_page.login"),
            httponly=True,
            samesite="Strict",
            secure=bool(current_app.config["SESSION_COOKIE_SECURE"]) or request.is_secure,
        )
    return response


@bp.after_request
def page_headers(response: Response) -> Response:
    response.headers.update(PAGE_HEADERS)
    return response


@bp.errorhandler(CSRFError)
def csrf_failed(exc: CSRFError) -> Response:
    session.clear()
    return login_form(_("The form expired or was not sent from this page; log in again."), "", 403)


@bp.errorhandler(BridgeError)
def bridge_error(exc: BridgeError) -> tuple[str, int]:
    return page_error(exc.status, exc.message)


@bp.errorhandler(redis.RedisError)
def redis_error(exc: redis.RedisError) -> tuple[str, int]:
    return page_error(503, _("The bridge's Redis is unavailable; try again shortly."))


@bp.app_template_filter("pretty_json")
def pretty_json(value: Any) -> str:
    """A Finan body (JSON text or parsed) indented for reading; autoescaped like the rest."""
    parsed = json.loads(value) if isinstance(value, str) else value
    return json.dumps(parsed, indent=2, ensure_ascii=False)


def page_error(status: int, message: str) -> tuple[str, int]:
    return render_template("admin/error.html", status=status, message=message), status


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this page, never another site (nor anything
    with a control character, which can't go in a Location header)."""
    if target and target.isprintable():
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/admin/"):
            return target
    return url_for(".index")


# --- views, each documented where it is defined (bridge/web/openapi.py) ---


def html(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An HTML answer in the document."""
    return {
        "description": description,
        "headers": {**REQUEST_ID_HEADERS, **(headers or {})},
        "content": {"text/html": {"schema": {"type": "string"}}},
    }


def redirect_to(description: str) -> dict[str, Any]:
    return html(description, {"Location": {"schema": {"type": "string"}}})


def form(**properties: dict[str, Any]) -> dict[str, Any]:
    """A form's fields in the document: each form carries its CSRF token."""
    return {
        "type": "object",
        "required": ["csrf_token"],
        "properties": {"csrf_token": {"type": "string"}, **properties},
    }


_PAGE = (
    "Part of the operators' status page (HTML, server-rendered); its session cookie comes "
    "from logging in with an admin token."
)
_LOGIN = redirect_to("Not logged in (or the session ended): to the login form.")
_FORBIDDEN = html("The form's CSRF token is missing, wrong or expired: log in again.")
_NOT_FOUND = {
    "description": "The invoice or batch is unknown to the bridge (a page); or the path is "
    "not one of the bridge's, such as a negative id (the JSON error envelope).",
    "headers": REQUEST_ID_HEADERS,
    "content": {
        "text/html": {"schema": {"type": "string"}},
        "application/json": {"schema": ErrorEnvelopeSchema},
    },
}


def page(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    form: dict[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``bp.doc`` of a page or form: no token (a session), HTML answers."""
    doc: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": _PAGE,
        "security": [],
        "parameters": ["RequestId"],
        "responses": responses,
    }
    if form is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": form}},
        }
    return bp.doc(**doc)


class Login(MethodView):
    @page(
        "loginForm",
        "The login form",
        {"200": html("The form.")},
    )
    def get(self) -> Any:
        return login_form(None, request.args.get("next", ""))

    @page(
        "logIn",
        "Log in with an admin token",
        {
            "303": redirect_to("Logged in: to the status page."),
            "401": html("The token is not one of BRIDGE_ADMIN_TOKENS."),
            "429": error_responses(429)["429"],
            "403": _FORBIDDEN,
        },
        form=form(token={"type": "string"}),
    )
    def post(self) -> Any:
        token = matching_token(
            request.form.get("token", "").strip(), services().settings.admin_tokens
        )
        if token is None:
            return login_form(
                _("That token is not one of the admin tokens (BRIDGE_ADMIN_TOKENS)."),
                request.form.get("next", ""),
                401,
            )
        token_matched()
        session.clear()
        session.permanent = True
        session["admin"] = token_id(token)
        return redirect(safe_next(request.form.get("next")), 303)


bp.add_url_rule("/login", view_func=Login, endpoint="login")


@bp.post("/logout")
@page(
    "logOut",
    "Log out",
    {"303": redirect_to("Logged out: to the login form."), "403": _FORBIDDEN},
    form=form(),
)
def logout() -> Any:
    session.clear()
    return redirect(url_for(".login"), 303)


@bp.get("/")
@page(
    "statusPage",
    "Counts per state and the searchable table of records",
    {"200": html("The page."), "302": _LOGIN, "422": html("A bad filter.")},
)
@login_required
def index() -> Any:
    raw, query = list_query()
    if query is None:
        return raw
    data = list_invoices(query)
    pages = max(1, -(-data["total"] // query["per_page"]))
    return render_template(
        "admin/index.html",
        data=data,
        states=STATES,
        resync_states=RESYNC_STATES,
        state=query.get("state", ""),
        q=query.get("q", ""),
        since=raw.get("from", ""),
        until=raw.get("to", ""),
        page=query["page"],
        pages=pages,
        # Kept in the paging links only when it was asked for: the default needs no mention.
        per_page=query["per_page"] if "per_page" in raw else None,
        out_of_sync=services().finan_checks.out_of_sync.listed(),
    )


def list_query() -> tuple[Any, dict[str, Any] | None]:
    """The list's filters from the query string (the language switch's ``lang`` aside):
    (the filters as given, loaded), or (the 422 page, None)."""
    raw = {name: value for name, value in request.args.items() if value.strip() and name != "lang"}
    try:
        return raw, _list_query.load(raw)  # 50 a page unless per_page says otherwise
    except ValidationError as exc:
        names = ", ".join(sorted(exc.messages))
        message = _("The filter has invalid parameters: %(names)s.", names=names)
        return page_error(422, message), None


# The CSV's columns; the list is read this many records at a time.
CSV_CHUNK = 500
# A text a spreadsheet would read as a formula (names and codes come from the CRM): "'"
# first. Only the CRM's texts: a negative total the bridge writes stays a number.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@bp.get("/invoices.csv")
@page(
    "invoicesCsv",
    "The list as a CSV file: every page, with the same filters (q, state, from, to)",
    {
        "200": {
            "description": "UTF-8 with a byte order mark (Excel reads Vietnamese right): "
            "invoice id, code, customer, total, state, updated at (Vietnam time).",
            "headers": REQUEST_ID_HEADERS,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        "302": _LOGIN,
        "422": html("A bad filter."),
    },
)
@login_required
def invoices_csv() -> Any:
    raw, query = list_query()
    if query is None:
        return raw
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        [_("Invoice id"), _("Code"), _("Customer"), _("Total"), _("State"), _("Updated at")]
    )
    page_number = 1
    while True:
        data = list_invoices({**query, "page": page_number, "per_page": CSV_CHUNK})
        for record in data["invoices"]:
            writer.writerow(
                [
                    record.invoice_id,
                    csv_cell(record.code or ""),  # the CRM's texts; the rest are the bridge's
                    csv_cell(record.customer or ""),
                    "" if record.total_amount is None else str(record.total_amount),
                    state_name(record.state) if record.state else "",
                    i18n.vietnam_time_text(record.updated_at),
                ]
            )
        if page_number * CSV_CHUNK >= data["total"] or not data["invoices"]:
            break
        page_number += 1
    name = "-".join(["invoices", *(part for part in (raw.get("from"), raw.get("to")) if part)])
    return Response(
        out.getvalue().encode("utf-8"),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"',
        },
    )


# The states and results as people read them; the API's words stay as they are.
STATE_NAMES = {
    "issued": lazy_gettext("issued"),
    "cancelled": lazy_gettext("cancelled"),
    "queued": lazy_gettext("queued"),
    "failed": lazy_gettext("failed"),
    "dead": lazy_gettext("dead"),
}


@bp.app_template_global("state_name")
def state_name(state: str | None) -> str:
    return str(STATE_NAMES.get(state, state)) if state else "—"


# What a re-sync answers, in the page's language (the API keeps the rules' English).
OUTCOME_TEXTS = {
    rules.RESYNCED_MESSAGE: lazy_gettext(
        "Invoice re-synced: Finan accepted it; the outcome is written back to the CRM"
    ),
    rules.RECOVERED_MESSAGE: lazy_gettext(
        "Invoice re-synced: the bridge had no record of it; Finan accepted it as its first "
        "issue, and the outcome is written back to the CRM"
    ),
    rules.RESYNC_UNCHANGED_MESSAGE: lazy_gettext(
        "Invoice unchanged since Finan last accepted it; nothing sent (force to send anyway)"
    ),
    rules.QUEUED_MESSAGE: lazy_gettext(
        "Finan is unavailable; the operation is queued and will be sent, and its outcome "
        "written back to the CRM"
    ),
    rules.PREVIEW_DIFFERS: lazy_gettext(
        "A re-sync would send this invoice: Finan holds a different version"
    ),
    rules.PREVIEW_SAME: lazy_gettext(
        "Finan already holds exactly this; a re-sync sends nothing unless forced"
    ),
    rules.PREVIEW_NEVER_ACCEPTED: lazy_gettext(
        "Finan has never accepted this invoice; a re-sync sends it as its first issue"
    ),
    rules.PREVIEW_NEVER_ACCEPTED_CANCEL: lazy_gettext(
        "Finan has never accepted this invoice; a re-sync sends its cancel"
    ),
    **{
        rules.PREVIEW_SAME_UNSETTLED.format(state=state): lazy_gettext(
            "Finan already holds exactly this, but the invoice is %(state)s: a re-sync sends "
            "it again",
            state=STATE_NAMES[state],
        )
        for state in ("queued", "failed", "dead")
    },
}


@bp.app_template_global("said")
def said(message: str) -> str:
    """A sentence of the invoices' rules in the page's language (else as it is)."""
    return str(OUTCOME_TEXTS.get(message, message))


def readable_body(body: str | None) -> dict[str, Any] | None:
    """The Finan body as people read it: customer, items with their line totals (price ×
    quantity, plus VAT when prices exclude it), the discounts, and Finan's totals
    (``finan_totals``: docs/contract/mapping.md#finan-arithmetic). Decimals throughout."""
    if body is None:
        return None
    try:
        decoded = decode_request(body)
        total, tax = finan_totals(decoded)
    except ValueError:
        return None
    excluding = decoded["tax_type"] == "price_excluding_tax"
    lines, goods = [], Decimal(0)
    for item in decoded["items"]:
        rate = sum((Decimal(tax["rate"]) for tax in item["taxes"]), Decimal(0))
        amount = Decimal(item["price"]) * item["quantity"]
        line_total = amount + (amount * rate / 100 if excluding else 0)
        goods += line_total
        lines.append(
            {
                "name": item["name"],
                "quantity": item["quantity"],
                "price": item["price"],
                "taxes": [f"{tax['name']} ({tax['rate']}%)" for tax in item["taxes"]],
                "total": line_total.quantize(Decimal(1), ROUND_HALF_UP),
            }
        )
    return {
        "customer": decoded["customer"],
        "items": lines,
        "tax_type": decoded["tax_type"],
        "goods": goods.quantize(Decimal(1), ROUND_HALF_UP),
        "discounts": decoded["discounts"],
        "tax": tax,
        "total": total,
        "reference_code": decoded["reference_code"],
        "value_at": decoded["value_at"],
        "due_at": decoded["due_at"],
    }


@bp.get("/invoice/<int:invoice_id>", parameters=[INVOICE_ID])
@page(
    "invoicePage",
    "An invoice: its record, history, last body, and the re-sync buttons",
    {"200": html("The page."), "302": _LOGIN, "404": _NOT_FOUND},
)
@login_required
def invoice(invoice_id: int) -> Any:
    record = services().records.get(invoice_id)
    if record is None:
        return page_error(
            404, _("Invoice %(invoice_id)s is unknown to the bridge.", invoice_id=invoice_id)
        )
    return render_template(
        "admin/invoice.html", **invoice_detail(record), readable=readable_body(record.last_body)
    )


@bp.get("/invoice/<int:invoice_id>/finan", parameters=[INVOICE_ID])
@page(
    "finanCheckPage",
    "What Finan holds beside the last body it accepted, and what differs",
    {
        "200": html("The comparison (asked of Finan now: a signed GET detail)."),
        "302": _LOGIN,
        "404": _NOT_FOUND,
        "409": html("Finan has never accepted a body for the invoice: nothing to compare."),
        "502": html("Finan refused the detail request."),
        "503": html("Finan or Redis is unavailable."),
    },
)
@login_required
def finan_check(invoice_id: int) -> Any:
    check = services().finan_checks.check(invoice_id)
    return render_template("admin/finan.html", check=finan_check_data(check), record=check.record)


@bp.get("/invoice/<int:invoice_id>/preview", parameters=[INVOICE_ID])
@page(
    "previewPage",
    "Preview of a re-sync: the body and its diff; sends nothing",
    {
        "200": html("The preview."),
        "302": _LOGIN,
        "404": _NOT_FOUND,
        "422": html("The invoice can't be mapped: why."),
        "502": html("The CRM refused the bridge's token."),
        "503": html("The CRM or Redis is unavailable."),
    },
)
@login_required
def preview(invoice_id: int) -> Any:
    result = services().operations.preview(invoice_id)
    return render_template(
        "admin/preview.html", preview=result, record=result.record, invoice_id=invoice_id
    )


@bp.post("/invoice/<int:invoice_id>/resync", parameters=[INVOICE_ID])
@page(
    "resyncForm",
    "Re-sync an invoice (force: send even when unchanged)",
    {
        "200": html(
            "force=1 without confirm=1: the page that says what a force re-sync does and asks "
            "to confirm it; nothing is sent."
        ),
        "303": redirect_to("Done (or refused, with the reason): back to the invoice."),
        "302": _LOGIN,
        "403": _FORBIDDEN,
        "404": _NOT_FOUND,
    },
    form=form(
        force={"type": "string", "enum": ["0", "1"]},
        confirm={"type": "string", "enum": ["1"]},
    ),
)
@login_required
def resync(invoice_id: int) -> Any:
    force = request.form.get("force") == "1"
    if force and request.form.get("confirm") != "1":  # a force re-sync is confirmed first
        return render_template("admin/force_confirm.html", invoice_id=invoice_id)
    try:
        outcome = services().operations.resync(invoice_id, force=force, by=operator_name())
    except NotFound as exc:
        return page_error(404, exc.message)
    except ProviderRejected:  # Finan's words may quote the customer: the record shows them
        flash(
            _("Re-sync did not go through: Finan rejected it (its answer is on this page)"),
            "error",
        )
    except BridgeError as exc:  # in flight, CRM trouble: the bridge's own words
        flash(_("Re-sync did not go through: %(why)s", why=exc.message), "error")
    else:
        flash(said(outcome.message), "ok" if outcome.status == 200 else "warn")
    return redirect(url_for(".invoice", invoice_id=invoice_id), 303)


# The "re-sync invoice by id" box: an id the bridge may have no record of (the CRM's call
# never came). ASCII digits only (``str.isdigit`` takes other scripts' digits too).
INVOICE_ID_FIELD = re.compile(r"[0-9]{1,18}")


@bp.post("/resync-by-id")
@page(
    "resyncByIdForm",
    "Preview or re-sync an invoice by its id, known to the bridge or not",
    {
        "303": redirect_to(
            "Preview: to the preview page. Re-sync: done (or refused, with the reason), to "
            "the invoice."
        ),
        "302": _LOGIN,
        "403": _FORBIDDEN,
        "404": _NOT_FOUND,
        "422": html("The id is not a whole number of ASCII digits, or the action is unknown."),
    },
    form=form(
        invoice_id={"type": "string", "pattern": "^[0-9]{1,18}$"},
        action={"type": "string", "enum": ["preview", "resync"]},
    ),
)
@login_required
def resync_by_id() -> Any:
    raw = request.form.get("invoice_id", "").strip()
    action = request.form.get("action", "")
    if not INVOICE_ID_FIELD.fullmatch(raw) or int(raw) < 1:
        return page_error(422, _("An invoice id is a whole number from 1, in digits 0-9."))
    if action == "preview":
        return redirect(url_for(".preview", invoice_id=int(raw)), 303)
    if action == "resync":
        return resync(invoice_id=int(raw))
    return page_error(422, _("Choose Preview or Re-sync."))


@bp.post("/bulk-resync")
@page(
    "bulkResyncForm",
    "Re-sync every failed or dead invoice, paced",
    {
        "200": html(
            "Without confirm=1: the confirmation page, listing the invoices (ids, codes, "
            "states; at most 1000) with, for dead ones, the warning to check the CRM first."
        ),
        "303": redirect_to("Confirmed: accepted, to the batch's progress."),
        "302": _LOGIN,
        "403": _FORBIDDEN,
        "422": html("Not a state that can be re-synced in bulk, or bad ids."),
    },
    form=form(
        state={"type": "string", "enum": list(RESYNC_STATES)},
        confirm={"type": "string", "enum": ["1"]},
        ids={
            "type": "string",
            "pattern": "^[0-9 ]*$",
            "description": "With confirm=1: the ids the confirmation page listed, "
            "space-separated; those still in the state are re-synced.",
        },
    ),
)
@login_required
def bulk_resync() -> Any:
    state = request.form.get("state", "")
    if state not in RESYNC_STATES:
        return page_error(422, _("Only failed or dead invoices can be re-synced in bulk."))
    if request.form.get("confirm") != "1":  # first the list, and a form to confirm it
        total, listed = services().records.page(state, 0, BULK_CONFIRM_LISTED)
        return render_template("admin/bulk_confirm.html", state=state, total=total, invoices=listed)
    raw_ids = request.form.get("ids", "").split()
    if len(raw_ids) > BULK_CONFIRM_LISTED or not all(
        INVOICE_ID_FIELD.fullmatch(raw) for raw in raw_ids
    ):
        return page_error(422, _("The confirmed list of invoices is not valid; start again."))
    started = services().batches.start_confirmed(
        [int(raw) for raw in raw_ids],
        state,
        runner="queue",
        started_by=started_by("status page"),
    )
    return redirect(url_for(".batch", batch_id=started.batch_id), 303)


# A bulk re-sync from the page lists (and re-syncs) at most this many invoices at once.
BULK_CONFIRM_LISTED = 1000
BATCH_ITEMS_PAGE = 100  # a batch page shows this many invoices' results a page
BATCHES_PAGE = 50  # the list of batches, a page


def started_by(channel: str) -> str:
    """Who started a batch, as the batch keeps it: the operator's name and the way in."""
    name = operator_name()
    return f"{name} ({channel})" if name else channel


# Any text: the page redirects to the login before it looks at the id.
@bp.get(
    "/batch/<batch_id>",
    parameters=[{"in": "path", "name": "batch_id", "schema": {"type": "string"}}],
)
@page(
    "batchPage",
    "Progress of a bulk re-sync or reconciliation: every invoice's result, a page at a time",
    {"200": html("The page."), "302": _LOGIN, "404": _NOT_FOUND},
)
@login_required
def batch(batch_id: str) -> Any:
    found = services().batches.get(batch_id) or services().reconciliations.get(batch_id)
    if found is None:
        return page_error(404, _("No such bulk re-sync (they are kept for 7 days)."))
    number = page_number()
    pages = max(1, -(-found.done // BATCH_ITEMS_PAGE))
    items = services().batches.items(batch_id, (number - 1) * BATCH_ITEMS_PAGE, BATCH_ITEMS_PAGE)
    return render_template("admin/batch.html", batch=found, items=items, page=number, pages=pages)


MAX_PAGE = 1_000_000  # beyond it, a page's offset could overflow Redis's integers


def page_number() -> int:
    """The ``page`` query parameter (from 1; anything else is the first page)."""
    raw = request.args.get("page", "")
    if not INVOICE_ID_FIELD.fullmatch(raw):
        return 1
    return min(int(raw), MAX_PAGE)  # far past the last page is the last page's neighbour


@bp.get("/batches")
@page(
    "batchesPage",
    "Bulk re-syncs and reconciliations of the last 7 days, newest first",
    {"200": html("The page."), "302": _LOGIN},
)
@login_required
def batches() -> Any:
    number = page_number()
    total, listed = services().batches.listed((number - 1) * BATCHES_PAGE, BATCHES_PAGE)
    pages = max(1, -(-total // BATCHES_PAGE))
    return render_template(
        "admin/batches.html", batches=listed, total=total, page=number, pages=pages
    )
