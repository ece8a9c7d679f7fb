"""WSGI entry point for gunicorn: ``gunicorn bridge.wsgi:app`` (``bridge serve`` does this)."""

from bridge.app import create_app

app = create_app()
