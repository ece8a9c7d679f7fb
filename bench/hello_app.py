"""H: the ceiling of the web stack, a Flask hello-world JSON endpoint (``GET /hello``)."""

from __future__ import annotations

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/hello")
def hello():
    return jsonify({"hello": "world"})
