"""A tiny HTTP proxy in front of the S3 server that fails chosen requests with 503, and records headers.

The one stand-in of the test suite: real S3 fails transiently now and then, moto never does.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
FAILURE = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
           b"<Message>injected by the test proxy</Message></Error>")


class FaultProxy:
    """Forward to `upstream`; answer 503 to the first `fail_first` requests and then to every `fail_every`-th."""

    def __init__(self, upstream: str, fail_first: int = 0, fail_every: int = 0):
        self.upstream = urlparse(upstream)
        self.fail_first, self.fail_every = fail_first, fail_every
        self.requests, self.failed, self.headers = 0, 0, []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None  # read first: the client must finish sending
                if proxy._should_fail(self.command, self.path, dict(self.headers)):
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(FAILURE)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(FAILURE)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    self.send_response(response.status, response.reason)
                    for k, v in response.getheaders():
                        if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _should_fail(self, method: str, path: str, headers: dict) -> bool:
        with self._lock:
            self.requests += 1
            self.headers.append((method, path, headers))
            fail = self.requests <= self.fail_first or (
                self.fail_every > 0 and self.requests > self.fail_first
                and (self.requests - self.fail_first) % self.fail_every == 0)
            self.failed += fail
            return fail

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
