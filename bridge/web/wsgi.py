"""WSGI entry point for gunicorn: ``gunicorn bridge.web.wsgi:app`` (``bridge serve`` does this)."""

from bridge.web.app import create_app

app = create_app()
