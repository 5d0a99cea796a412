"""A webhook receiver for the tests, independent of our Rust code: it checks
each request's X-Pipeline-Signature with Python's own hmac, appends what it
received to a JSON-lines log, and answers 204 (307 to /landing for paths
under /redirect, which a sender must not follow).

usage: webhook_receiver.py PORT SECRET LOG
"""

import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, SECRET, LOG = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]


def signature_ok(header, body):
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(parts.get("t", ""))
    except ValueError:
        return False
    expected = hmac.new(SECRET, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", "")) and abs(time.time() - stamp) < 300


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        record = {
            "signed": "X-Pipeline-Signature" in self.headers,
            "valid": signature_ok(self.headers.get("X-Pipeline-Signature", ""), body),
            "event": self.headers.get("X-Pipeline-Event"),
            "delivery": self.headers.get("X-Pipeline-Delivery"),
            "path": self.path,
            "body": json.loads(body),
        }
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        if self.path.startswith("/redirect"):
            self.send_response(307)
            self.send_header("Location", "/landing")
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer.allow_reuse_address = True
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
