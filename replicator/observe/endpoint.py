"""The daemons' HTTP endpoint (``/metrics``, ``/healthz``, and whatever else a daemon serves), in a
background thread. Shared by the source and the sinks so that they answer alike.

Secure by default: it binds the loopback interface (``DEFAULT_HOST``) unless the operator names
another address (``--metrics-host``), and a path is served only when it matches a route exactly
(``/positionXYZ`` is not ``/position``); anything else is 404.
"""

from __future__ import annotations

import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from prometheus_client.exposition import CONTENT_TYPE_LATEST

DEFAULT_HOST: Final = "127.0.0.1"

#: A route answers (status, body, content type); it runs on the server's thread, so it must only
#: read what the daemon publishes for it (values, not live clients).
Route = Callable[[], tuple[int, bytes, str]]
#: A route that reads the request's query parameters (each given once; the last wins).
QueryRoute = Callable[[Mapping[str, str]], tuple[int, bytes, str]]


def metrics_route(render: Callable[[], bytes]) -> Route:
    return lambda: (200, render(), CONTENT_TYPE_LATEST)


def health_route(healthy: Callable[[], bool], detail: Callable[[], str] = lambda: "") -> Route:
    """200 ``ok``, or 503 ``unhealthy`` followed by ``detail()`` (why, and what to do) when given."""

    def route() -> tuple[int, bytes, str]:
        if healthy():
            return 200, b"ok\n", "text/plain"
        why = detail()
        return 503, (f"unhealthy: {why}\n" if why else "unhealthy\n").encode(), "text/plain; charset=utf-8"

    return route


class EndpointServer:
    """Serves ``routes`` and ``query_routes`` (exact path -> route) on ``host:port`` (0: any free
    port; see ``.port``). Starts at once; ``close`` stops it. Unknown paths get 404. Raises OSError
    when the address cannot be bound."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        port: int,
        host: str = DEFAULT_HOST,
        name: str = "endpoint",
        query_routes: Mapping[str, QueryRoute] | None = None,
    ) -> None:
        table = dict(routes)
        queries = dict(query_routes or {})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path in table:
                    status, body, kind = table[url.path]()
                elif url.path in queries:
                    params = dict(urllib.parse.parse_qsl(url.query))
                    status, body, kind = queries[url.path](params)
                else:
                    status, body, kind = 404, b"not found\n", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes are not worth a log line: the daemon's log stays one event per line

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def scrape(port: int, name: str, host: str = "127.0.0.1", timeout_s: float = 1.0) -> float | None:
    """The sum of the samples of metric ``name`` (all its labels) on a daemon's ``/metrics``, or None
    while nothing answers there (not started yet, or gone). Blocks up to ``timeout_s``."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as response:
            lines = response.read().decode().splitlines()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.split("{")[0].split(" ")[0] == name)
