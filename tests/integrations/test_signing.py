"""Finan request signing: the documented formula, the auth object, and verification."""

from __future__ import annotations

import hashlib

import pytest
import requests

from bridge.integrations.finan.signing import (
    SIGNATURE_WINDOW_SECONDS,
    FinanAuth,
    SignatureError,
    signature,
    verify,
)

SECRET = "finan-secret-2024"
CLIENT_ID = "tourwell-bridge"
METHOD = "PUT"
PATH = "/api/v1/invoice/update-invoice/f6906b54-edfb-427f-9204-5f74948b33e8"
# Compact JSON with Vietnamese text: the body is signed as UTF-8 bytes, exactly as sent.
BODY_TEXT = '{"reference_code":"HD017","customer":{"name":"Phạm Văn Long"}}'
BODY = BODY_TEXT.encode()
TIMESTAMP = 1725526800


def test_signature_follows_the_documented_formula() -> None:
    documented = f"{SECRET}_{METHOD}_{PATH}_{BODY_TEXT}_{TIMESTAMP}"
    expected = hashlib.sha256(documented.encode()).hexdigest()

    assert signature(SECRET, METHOD, PATH, BODY, TIMESTAMP) == expected
    # Pinned, so a change of formula can't pass by changing both sides of the test.
    assert expected == "ba52633b74b7f248ae9f1330d94241c8dfc36a5c0a3f4db9bbedc4343604e923"


def test_signature_upper_cases_the_method_and_signs_an_empty_body_for_get() -> None:
    path = "/api/v1/invoice/detail/f6906b54-edfb-427f-9204-5f74948b33e8"
    expected = hashlib.sha256(f"{SECRET}_GET_{path}__{TIMESTAMP}".encode()).hexdigest()
    assert signature(SECRET, "get", path, b"", TIMESTAMP) == expected


def _prepare(
    url: str,
    *,
    data: bytes | str | None = None,
    method: str = "PUT",
    base_url: str = "https://finan.example/open",
    clock_value: float = 1725526800.9,
):
    auth = FinanAuth(CLIENT_ID, SECRET, base_url, clock=lambda: clock_value)
    return requests.Request(method, url, data=data, auth=auth).prepare()


def test_finan_auth_signs_the_path_after_the_base_prefix_with_its_query() -> None:
    url = "https://finan.example/open" + PATH + "?lang=vi"
    prepared = _prepare(url, data=BODY)

    assert prepared.headers["x-client-id"] == CLIENT_ID
    assert prepared.headers["x-timestamp"] == "1725526800"  # whole seconds, truncated
    assert prepared.headers["x-signature"] == signature(
        SECRET, "PUT", PATH + "?lang=vi", BODY, 1725526800
    )


def test_finan_auth_signs_str_bodies_as_utf8_and_no_body_as_empty() -> None:
    with_text = _prepare("https://finan.example/open" + PATH, data=BODY_TEXT)
    assert with_text.headers["x-signature"] == signature(SECRET, "PUT", PATH, BODY, TIMESTAMP)

    detail = "/api/v1/invoice/detail/f6906b54-edfb-427f-9204-5f74948b33e8"
    get = _prepare("https://finan.example/open" + detail, method="GET")
    assert get.headers["x-signature"] == signature(SECRET, "GET", detail, b"", TIMESTAMP)


def test_finan_auth_without_a_prefix_signs_the_whole_path() -> None:
    prepared = _prepare(
        "https://finan.example" + PATH, data=BODY, base_url="https://finan.example/"
    )
    assert prepared.headers["x-signature"] == signature(SECRET, "PUT", PATH, BODY, TIMESTAMP)


def test_finan_auth_refuses_a_url_outside_its_base() -> None:
    with pytest.raises(ValueError, match="not under the Finan base URL"):
        _prepare("https://finan.example/other" + PATH, data=BODY)


def test_finan_auth_repr_hides_the_secret() -> None:
    auth = FinanAuth(CLIENT_ID, SECRET, "https://finan.example/open")
    assert SECRET not in repr(auth)
    assert CLIENT_ID in repr(auth)


# --- verify ---------------------------------------------------------------------------


def _headers(**overrides: str | None) -> dict[str, str]:
    """Good headers for (METHOD, PATH, BODY, TIMESTAMP); override or drop (None) any."""
    headers = {
        "x-client-id": CLIENT_ID,
        "x-timestamp": str(TIMESTAMP),
        "x-signature": signature(SECRET, METHOD, PATH, BODY, TIMESTAMP),
    }
    for name, value in overrides.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    return headers


def _verify(
    headers: dict[str, str], *, body: bytes = BODY, now: float = TIMESTAMP, secret: str = SECRET
) -> None:
    verify(headers, METHOD, PATH, body, client_id=CLIENT_ID, secret=secret, now=now)


def test_verify_accepts_a_good_request_with_any_header_case() -> None:
    _verify(_headers())
    _verify({name.upper(): value for name, value in _headers().items()})


@pytest.mark.parametrize("edge", [-SIGNATURE_WINDOW_SECONDS, SIGNATURE_WINDOW_SECONDS])
def test_verify_accepts_the_edges_of_the_window(edge: int) -> None:
    _verify(_headers(), now=TIMESTAMP + edge)


@pytest.mark.parametrize("missing", ["x-client-id", "x-timestamp", "x-signature"])
def test_verify_names_a_missing_header(missing: str) -> None:
    with pytest.raises(SignatureError, match=f"^missing header {missing}$"):
        _verify(_headers(**{missing: None}))


@pytest.mark.parametrize(
    ("overrides", "kwargs", "message"),
    [
        ({"x_client_id": "someone-else"}, {}, "^unknown client id$"),
        ({"x_timestamp": "1725526800.5"}, {}, "is not an integer"),
        ({"x_timestamp": "yesterday"}, {}, "is not an integer"),
        ({}, {"now": TIMESTAMP + SIGNATURE_WINDOW_SECONDS + 1}, "is stale: 31 s old"),
        ({}, {"now": TIMESTAMP - SIGNATURE_WINDOW_SECONDS - 1}, "is in the future: 31 s"),
        ({}, {"body": BODY.replace(b"HD017", b"HD018")}, "^signature mismatch$"),
        ({}, {"secret": "wrong-secret"}, "^signature mismatch$"),
        ({"x_signature": "0" * 64}, {}, "^signature mismatch$"),
    ],
    ids=[
        "client-id",
        "fractional-ts",
        "word-ts",
        "stale",
        "future",
        "tampered-body",
        "wrong-secret",
        "forged-signature",
    ],
)
def test_verify_refuses_with_a_distinct_message(overrides, kwargs, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        _verify(_headers(**overrides), **kwargs)


def test_verify_checks_the_signed_timestamp_not_just_the_clock() -> None:
    # A valid signature replayed with a fresh timestamp header no longer matches.
    later = TIMESTAMP + 100
    with pytest.raises(SignatureError, match="^signature mismatch$"):
        _verify(_headers(x_timestamp=str(later)), now=later)
