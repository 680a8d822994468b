import os

import requests
from flask import Flask, jsonify

from app.summary import summarize

UPSTREAM = os.environ.get("UPSTREAM", "https://api.example.com/items")


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():
        return "ok"

    @app.get("/summary")
    def summary():
        response = requests.get(UPSTREAM, timeout=5)
        response.raise_for_status()
        return jsonify(summarize(response.json()))

    return app
