"""A loopback stand-in for an Elasticsearch node, enough for an application's startup ping:
every request gets 200, the product header the official client checks, and a version body.
Run: ``python _fake_search.py PORT`` (stdlib only; used by real_projects.py)."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps(
    {
        "name": "fake",
        "cluster_name": "fake",
        "version": {"number": "8.13.0", "build_flavor": "default", "lucene_version": "9.10.0"},
        "tagline": "You Know, for Search",
    }
).encode()


class Handler(BaseHTTPRequestHandler):
    def _answer(self, body: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if body:
            self.wfile.write(BODY)

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
