"""The status page's languages, times and amounts (Flask-Babel).

Vietnamese by default, and English. The page's language is, in order: the switch in its
header (``?lang=vi`` or ``?lang=en``, kept in the ``bridge_lang`` cookie for the next
pages), else that cookie, else the browser's ``Accept-Language`` (vi or en), else
Vietnamese. The texts are English in the templates and the views (``_("...")``); their
Vietnamese is the catalog ``bridge/web/translations/vi/LC_MESSAGES/messages.po``, compiled
to the ``messages.mo`` beside it (``bridge/web/translations/README.md`` says how to extract
and compile them).

Times are shown in Vietnam time (``07/12/2026 19:22``, UTC+7: Vietnam has kept no daylight
saving time since 1975), inside ``<time datetime="...">`` with the exact UTC instant as its
``title`` (shown on hover). Amounts are Decimals shown with the locale's grouping and the
đồng sign after them: ``40.499.030 ₫`` in Vietnamese, ``40,499,030 ₫`` in English.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from babel.numbers import format_decimal
from flask import Flask, Response, request, url_for
from flask_babel import Babel, get_locale
from markupsafe import Markup, escape

LOCALES = ("vi", "en")
DEFAULT_LOCALE = "vi"
LANG_COOKIE = "bridge_lang"
LANG_COOKIE_AGE = 365 * 24 * 3600
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
# Asia/Ho_Chi_Minh: UTC+7 all year (no daylight saving since 1975), so no tz database needed.
VIETNAM = timezone(timedelta(hours=7), "ICT")
TIME_FORMAT = "%d/%m/%Y %H:%M"
DATE_FORMAT = "%d/%m/%Y"
CURRENCY_SIGN = "₫"

babel = Babel()


def asked_locale() -> str | None:
    """The locale the switch asks for (``?lang=``), if it names one of ours."""
    asked = request.args.get("lang", "")
    return asked if asked in LOCALES else None


def select_locale() -> str:
    cookie = request.cookies.get(LANG_COOKIE, "")
    return (
        asked_locale()
        or (cookie if cookie in LOCALES else None)
        or request.accept_languages.best_match(LOCALES)
        or DEFAULT_LOCALE
    )


def current_locale() -> str:
    return str(get_locale() or DEFAULT_LOCALE)


def init_app(app: Flask, cookie_path: str) -> None:
    """Flask-Babel on ``app`` (the page's templates get ``_``, ``gettext``, ``ngettext``),
    the filters ``vn_time``, ``vn_date`` and ``money``, and the switch's cookie (set on
    the answers under ``cookie_path`` to a request that asked for a language)."""
    app.config.update(
        BABEL_DEFAULT_LOCALE=DEFAULT_LOCALE,
        BABEL_TRANSLATION_DIRECTORIES=str(TRANSLATIONS),
    )
    babel.init_app(app, locale_selector=select_locale)
    app.add_template_filter(vn_time, "vn_time")
    app.add_template_filter(vn_date_text, "vn_date")
    app.add_template_filter(money, "money")
    app.add_template_global(current_locale, "current_locale")
    app.add_template_global(LOCALES, "locales")
    app.add_template_global(lang_url, "lang_url")

    @app.after_request
    def remember_locale(response: Response) -> Response:
        asked = asked_locale()
        if asked and (request.path == cookie_path or request.path.startswith(cookie_path + "/")):
            response.set_cookie(
                LANG_COOKIE,
                asked,
                max_age=LANG_COOKIE_AGE,
                path=cookie_path,
                httponly=True,
                samesite="Strict",
                secure=request.is_secure,
            )
        return response


def parse_instant(value: str | datetime | None) -> datetime | None:
    """An ISO 8601 instant (the records' ``2026-12-07T12:22:00.000Z``) as an aware datetime;
    None for None or anything else."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def vietnam_time_text(value: str | datetime | None) -> str:
    """``value`` as Vietnam time, ``07/12/2026 19:22`` (the CSV's and the page's text)."""
    moment = parse_instant(value)
    return moment.astimezone(VIETNAM).strftime(TIME_FORMAT) if moment else ""


def vn_time(value: str | datetime | None) -> Markup:
    """``<time>`` of ``value`` in Vietnam time, its exact UTC instant in ``datetime`` and as
    the hover ``title``; "—" when there is none."""
    moment = parse_instant(value)
    if moment is None:
        return Markup("—") if value is None else escape(value)
    utc = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Markup('<time datetime="{0}" title="{0} UTC">{1}</time>').format(
        utc, moment.astimezone(VIETNAM).strftime(TIME_FORMAT)
    )


def vn_date_text(value: date | None) -> str:
    return value.strftime(DATE_FORMAT) if value else ""


def vietnam_day_bounds(first: date | None, last: date | None) -> tuple[float, float]:
    """The UTC epoch seconds from the start of ``first`` to the end of ``last`` (Vietnam
    days, both included); open ends are infinite."""
    low = datetime.combine(first, time.min, VIETNAM).timestamp() if first else float("-inf")
    high = (
        datetime.combine(last + timedelta(days=1), time.min, VIETNAM).timestamp()
        if last
        else float("inf")
    )
    return low, high


def money(value: Decimal | int | str | None, locale: str | None = None) -> str:
    """An amount in đồng as people read it: ``40.499.030 ₫`` (vi), ``40,499,030 ₫`` (en).
    Exact: a Decimal (or its text) is never turned into a float."""
    if value is None or value == "":
        return "—"
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    text = format_decimal(amount, format="#,##0.###", locale=locale or current_locale())
    return f"{text}\u00a0{CURRENCY_SIGN}"


def lang_url(locale: str, **overrides: Any) -> str:
    """The current page's URL with ``lang=locale`` (for the switch); the status page's
    for a page that answered a form (its URL takes no GET)."""
    if request.method != "GET":
        return url_for("admin_page.index", lang=locale)
    args = request.args.to_dict()
    args.update(overrides)
    args["lang"] = locale
    return f"{request.path}?{urlencode(args)}"
