"""Encryption at rest for what the bridge keeps in Redis about a customer's invoice.

With ``BRIDGE_ENCRYPTION_KEY`` set, records (which hold the last body sent to Finan, with
the customer's name, email, phone and address) are stored as Fernet tokens. Several
comma-separated keys rotate with ``MultiFernet``: the first encrypts, any decrypts. A value
written before encryption was turned on is still read (plain JSON), and is encrypted the
next time it is saved.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bridge.errors import Unavailable

# Every Fernet token starts with its version byte 0x80, base64-encoded: "gA".
_TOKEN_PREFIX = b"gA"


class StoredDataUnreadable(Unavailable):
    """A stored value can't be read: encrypted with a key the bridge does not have (an
    operator must restore the key to BRIDGE_ENCRYPTION_KEY), or damaged. A 503 until then,
    never a wrong answer."""

    reason = "stored_data_unreadable"


class Cipher:
    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys]) if keys else None

    def seal(self, text: str) -> bytes:
        data = text.encode()
        return self._fernet.encrypt(data) if self._fernet else data

    def open(self, stored: bytes) -> str:
        if not stored.startswith(_TOKEN_PREFIX):
            return stored.decode()  # plain JSON, from before encryption was turned on
        if self._fernet is None:
            raise StoredDataUnreadable(
                "a record in Redis is encrypted but BRIDGE_ENCRYPTION_KEY is not set"
            )
        try:
            return self._fernet.decrypt(stored).decode()
        except InvalidToken:
            raise StoredDataUnreadable(
                "a record in Redis is encrypted with a key that is not in BRIDGE_ENCRYPTION_KEY; "
                "keep the old key in the list (after the new one) while rotating"
            ) from None
