"""The operators' status page at ``/admin/``: server-rendered HTML, no front-end build.

Log in with an admin token (``BRIDGE_ADMIN_TOKENS``) and the page keeps a session cookie:
Flask's signed cookie, HttpOnly, SameSite=Strict, limited to ``/admin``, Secure whenever the
request came over TLS (directly, or through a proxy gunicorn trusts; see
``forwarded_allow_ips``). The key that signs it is derived from the admin tokens, so every
web process agrees on it without another setting, and changing the tokens ends every
session. The session names which token logged in (by a digest), so removing a token from
``BRIDGE_ADMIN_TOKENS`` also ends the sessions it opened.

Every form carries a CSRF token (Flask-WTF's ``CSRFProtect``, checked only for this page's
forms: the JSON APIs authenticate with Bearer tokens and need none). Templates are
autoescaped Jinja; no script runs on the page at all (its Content-Security-Policy forbids
any).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import (
    Flask,
    Request,
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.views import MethodView
from flask_smorest import Api
from flask_wtf.csrf import CSRFError, CSRFProtect
from marshmallow import ValidationError

from bridge.errors import BridgeError, NotFound
from bridge.observability import logs
from bridge.store.records import STATES
from bridge.web.admin_api import (
    finan_check_data,
    invoice_detail,
    list_invoices,
    operator_name,
)
from bridge.web.http import matching_token, services
from bridge.web.openapi import INVOICE_ID, PAGE_TAG, REQUEST_ID_HEADERS, Blueprint
from schemas.bridge import RESYNC_STATES, ErrorEnvelopeSchema, InvoiceListQuerySchema

bp = Blueprint(
    "admin_page", __name__, url_prefix="/admin", template_folder="templates", tag=PAGE_TAG
)
csrf = CSRFProtect()

SESSION_LIFETIME = timedelta(hours=8)
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


class AdminSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure whenever the request came over TLS.

    Opened only under the cookie's path: a browser sends the cookie nowhere else, so every
    other request (the CRM's) gets Flask's null session without the work of opening one.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        path = app.config["SESSION_COOKIE_PATH"]
        if request.path != path and not request.path.startswith(path + "/"):
            return None  # Flask then uses ``make_null_session``
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def session_secret(admin_tokens: tuple[str, ...]) -> bytes:
    """The session-signing key: derived from the admin tokens (random without any: then
    nobody can log in anyway)."""
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
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        WTF_CSRF_CHECK_DEFAULT=False,  # only this page's forms (see ``check_csrf``)
        WTF_CSRF_TIME_LIMIT=None,  # a form is good for as long as its session
    )
    app.session_interface = AdminSessionInterface()
    csrf.init_app(app)
    api.register_blueprint(bp)


# --- the session ---


def logged_in() -> bool:
    current = {token_id(token) for token in services().settings.admin_tokens}
    return session.get("admin") in current


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(**kwargs: Any) -> Any:
        if not logged_in():
            session.clear()
            return redirect(url_for(".login", next=request.full_path.rstrip("?")))
        name_operator()
        return view(**kwargs)

    return wrapper


def name_operator() -> None:
    """Name the logged-in operator for this request (``operator_name``, the log lines): the
    BRIDGE_ADMIN_TOKENS entry whose token opened the session."""
    opened_by = session.get("admin")
    for admin in services().settings.admins:
        if token_id(admin.token) == opened_by:
            g.operator = admin.name
            logs.bind(operator=admin.name)  # unbound with the request's log context
            return


@bp.context_processor
def the_operator() -> dict[str, Any]:
    """``operator_name`` in every template: "logged in as …"."""
    return {"operator_name": operator_name()}


@bp.before_request
def check_csrf() -> None:
    if request.method == "POST":
        csrf.protect()


@bp.after_request
def page_headers(response: Response) -> Response:
    response.headers.update(PAGE_HEADERS)
    return response


@bp.errorhandler(CSRFError)
def csrf_failed(exc: CSRFError) -> tuple[str, int]:
    session.clear()
    return render_template(
        "admin/login.html",
        error="The form expired or was not sent from this page; log in again.",
        next_path="",
    ), 403


@bp.errorhandler(BridgeError)
def bridge_error(exc: BridgeError) -> tuple[str, int]:
    return page_error(exc.status, exc.message)


@bp.errorhandler(redis.RedisError)
def redis_error(exc: redis.RedisError) -> tuple[str, int]:
    return page_error(503, "The bridge's Redis is unavailable; try again shortly.")


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
        next_path = request.args.get("next", "")
        return render_template("admin/login.html", error=None, next_path=next_path)

    @page(
        "logIn",
        "Log in with an admin token",
        {
            "303": redirect_to("Logged in: to the status page."),
            "401": html("The token is not one of BRIDGE_ADMIN_TOKENS."),
            "403": _FORBIDDEN,
        },
        form=form(token={"type": "string"}),
    )
    def post(self) -> Any:
        token = matching_token(
            request.form.get("token", "").strip(), services().settings.admin_tokens
        )
        if token is None:
            return render_template(
                "admin/login.html",
                error="That token is not one of the admin tokens (BRIDGE_ADMIN_TOKENS).",
                next_path=request.form.get("next", ""),
            ), 401
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
    raw = {name: value for name, value in request.args.items() if value.strip()}
    try:
        query = _list_query.load(raw)  # 50 a page unless per_page says otherwise
    except ValidationError as exc:
        names = ", ".join(sorted(exc.messages))
        return page_error(422, f"The filter has invalid parameters: {names}.")
    data = list_invoices(query)
    pages = max(1, -(-data["total"] // query["per_page"]))
    return render_template(
        "admin/index.html",
        data=data,
        states=STATES,
        resync_states=RESYNC_STATES,
        state=query.get("state", ""),
        q=query.get("q", ""),
        page=query["page"],
        pages=pages,
        # Kept in the paging links only when it was asked for: the default needs no mention.
        per_page=query["per_page"] if "per_page" in raw else None,
        out_of_sync=services().finan_checks.out_of_sync.listed(),
    )


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
        return page_error(404, f"Invoice {invoice_id} is unknown to the bridge.")
    return render_template("admin/invoice.html", **invoice_detail(record))


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
        "303": redirect_to("Done (or refused, with the reason): back to the invoice."),
        "302": _LOGIN,
        "403": _FORBIDDEN,
        "404": _NOT_FOUND,
    },
    form=form(force={"type": "string", "enum": ["0", "1"]}),
)
@login_required
def resync(invoice_id: int) -> Any:
    force = request.form.get("force") == "1"
    try:
        outcome = services().operations.resync(invoice_id, force=force, by=operator_name())
    except NotFound as exc:
        return page_error(404, exc.message)
    except BridgeError as exc:  # rejected, in flight, CRM trouble: say so on the page
        flash(f"Re-sync did not go through: {exc.message}", "error")
    else:
        flash(outcome.message, "ok" if outcome.status == 200 else "warn")
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
        return page_error(422, "An invoice id is a whole number from 1, in digits 0-9.")
    if action == "preview":
        return redirect(url_for(".preview", invoice_id=int(raw)), 303)
    if action == "resync":
        return resync(invoice_id=int(raw))
    return page_error(422, "Choose Preview or Re-sync.")


@bp.post("/bulk-resync")
@page(
    "bulkResyncForm",
    "Re-sync every failed or dead invoice, paced",
    {
        "303": redirect_to("Accepted: to the batch's progress."),
        "302": _LOGIN,
        "403": _FORBIDDEN,
        "422": html("Not a state that can be re-synced in bulk."),
    },
    form=form(state={"type": "string", "enum": list(RESYNC_STATES)}),
)
@login_required
def bulk_resync() -> Any:
    state = request.form.get("state", "")
    if state not in RESYNC_STATES:
        return page_error(422, "Only failed or dead invoices can be re-synced in bulk.")
    started = services().batches.start(state=state, runner="queue")
    return redirect(url_for(".batch", batch_id=started.batch_id), 303)


# Any text: the page redirects to the login before it looks at the id.
@bp.get(
    "/batch/<batch_id>",
    parameters=[{"in": "path", "name": "batch_id", "schema": {"type": "string"}}],
)
@page(
    "batchPage",
    "Progress of a bulk re-sync",
    {"200": html("The page."), "302": _LOGIN, "404": _NOT_FOUND},
)
@login_required
def batch(batch_id: str) -> Any:
    found = services().batches.get(batch_id)
    if found is None:
        return page_error(404, "No such bulk re-sync (they are kept for 7 days).")
    return render_template("admin/batch.html", batch=found)
