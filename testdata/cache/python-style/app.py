"""The application: a greeting service (the tests only build it, never run it)."""

from lib.greeting import greet


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [greet(environ.get("QUERY_STRING") or "world").encode()]
