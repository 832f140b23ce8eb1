"""A loopback HTTP server for the alert tests: records the JSON bodies POSTed to it (what Apprise sends
for a ``json://127.0.0.1:PORT/`` URL: ``{"version", "title", "message", "attachments", "type"}``) and the
GET requests (a dead-man service's pings), on a free port, in a thread.

    with WebhookReceiver() as receiver:
        url = receiver.apprise_url          # json://127.0.0.1:PORT/
        ...
        receiver.wait_for_posts(1)
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    def __init__(self, status: int = 200):
        self.status = status                 # the answer to every request (500: a failing service)
        self.posts: list[dict] = []           # the JSON bodies, in arrival order
        self.pings: list[str] = []            # the paths of the GET requests
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body or b"null")
                except ValueError:
                    payload = {"unparsed": body.decode("utf-8", "replace")}
                with receiver._cond:  # recorded before the answer: a sender that has its answer finds it here
                    receiver.posts.append(payload)
                    receiver._cond.notify_all()
                self._answer()

            def do_GET(self):
                with receiver._cond:
                    receiver.pings.append(self.path)
                    receiver._cond.notify_all()
                self._answer()

            def _answer(self):
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    @property
    def apprise_url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    @property
    def ping_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ping"

    def _wait(self, ready, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what} (posts {self.posts}, pings {len(self.pings)})")
                self._cond.wait(left)

    def wait_for_posts(self, n: int, timeout: float = 20.0) -> list[dict]:
        self._wait(lambda: len(self.posts) >= n, timeout, f"{n} alert post(s)")
        return list(self.posts)

    def wait_for_pings(self, n: int, timeout: float = 20.0) -> list[str]:
        self._wait(lambda: len(self.pings) >= n, timeout, f"{n} ping(s)")
        return list(self.pings)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
