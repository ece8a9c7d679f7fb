"""Finan, the invoice provider: its signed ``update-invoice`` client and request signing."""
