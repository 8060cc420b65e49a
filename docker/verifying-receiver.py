"""A webhook receiver for the compose test, written apart from the service's code (standard library only):
it checks X-Asset-Webhook-Signature = hex HMAC-SHA256(secret, body) as the user documentation states, and
prints one line per request, "VERIFIED <event> <asset_id>" or "REJECTED <reason>".

    python3 verifying-receiver.py PORT SECRET
"""

import hashlib
import hmac
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, SECRET = int(sys.argv[1]), sys.argv[2].encode()
PRINTING = threading.Lock()  # one whole line per request, whatever the threads


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        given = self.headers.get("X-Asset-Webhook-Signature", "")
        if not hmac.compare_digest(expected, given):
            verdict = "REJECTED bad signature"
        else:
            event = json.loads(body)
            verdict = f"VERIFIED {event['event']} {event['asset_id']}"
        with PRINTING:
            print(verdict, flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # one line per request is printed above
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as a container's first process
ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()  # noqa: S104 (the compose network)
