#!/usr/bin/env python3
"""database: cf-lite's key-value store over HTTP. Usage: database.py CONFIG.json

CONFIG.json (rendered by the database job):
  {"bind": ADDRESS, "port": N, "user": U, "password": P, "store": DIR, "persistent_disk": MB}

Every request but GET /health needs HTTP basic auth with USER and PASSWORD.
  GET    /v1/keys/KEY           the value (200) or 404
  PUT    /v1/keys/KEY           sets it to the request body (204)
  DELETE /v1/keys/KEY           removes it (204) or 404
  GET    /v1/keys?prefix=P      {"KEY": VALUE, ...} of every key starting with P
  GET    /health                200 "ok" with the number of keys
Data lives in DIR/data.json (DIR is on the persistent disk). Every write is made durable before
it is answered: the whole map is written to a temporary file, fsynced, and renamed over
data.json, so a crash leaves either the old or the new map, never a torn one.
"""
import base64
import hmac
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


def log(*parts):
    print(time.strftime("%Y-%m-%dT%H:%M:%S"), *parts, file=sys.stderr, flush=True)


class Store:
    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "data.json")
        self.lock = threading.Lock()
        try:
            with open(self.path) as f:
                self.data = json.load(f)
        except FileNotFoundError:
            self.data = {}
        log(f"store {self.path}: {len(self.data)} keys")

    def _save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(os.path.dirname(self.path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get(self, key):
        with self.lock:
            return self.data.get(key)

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            self._save()

    def delete(self, key):
        with self.lock:
            if key not in self.data:
                return False
            del self.data[key]
            self._save()
            return True

    def scan(self, prefix):
        with self.lock:
            return {k: v for k, v in self.data.items() if k.startswith(prefix)}

    def __len__(self):
        with self.lock:
            return len(self.data)


def make_handler(config, store):
    expected = base64.b64encode(f"{config['user']}:{config['password']}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "cf-lite-database/1"
        timeout = 30

        def log_message(self, fmt, *args):
            pass

        def answer(self, status, body=b"", content_type="text/plain; charset=utf-8"):
            if isinstance(body, str):
                body = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def authorized(self):
            given = self.headers.get("Authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme == "Basic" and hmac.compare_digest(token.encode(), expected.encode()):
                return True
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="database"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False

        def key(self):
            path = urllib.parse.urlsplit(self.path).path
            if not path.startswith("/v1/keys/") or len(path) == len("/v1/keys/"):
                return None
            return urllib.parse.unquote(path[len("/v1/keys/"):])

        def do_GET(self):
            parts = urllib.parse.urlsplit(self.path)
            if parts.path == "/health":
                return self.answer(200, f"ok {len(store)} keys\n")
            if not self.authorized():
                return
            if parts.path == "/v1/keys":
                prefix = urllib.parse.parse_qs(parts.query).get("prefix", [""])[0]
                return self.answer(200, json.dumps(store.scan(prefix)), "application/json")
            key = self.key()
            if key is None:
                return self.answer(404, "no such endpoint\n")
            value = store.get(key)
            if value is None:
                return self.answer(404, f"no key {key}\n")
            self.answer(200, value)

        def do_PUT(self):
            if not self.authorized():
                return
            key = self.key()
            if key is None:
                return self.answer(404, "no such endpoint\n")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self.answer(413, "value too large\n")
            value = self.rfile.read(length).decode(errors="replace")
            store.put(key, value)
            self.answer(204)

        def do_DELETE(self):
            if not self.authorized():
                return
            key = self.key()
            if key is None:
                return self.answer(404, "no such endpoint\n")
            if store.delete(key):
                self.answer(204)
            else:
                self.answer(404, f"no key {key}\n")

    return Handler


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        config = json.load(f)
    for key in ("bind", "port", "user", "password", "store"):
        if key not in config:
            print(f"{argv[1]}: missing {key}", file=sys.stderr)
            return 2
    if not config.get("persistent_disk"):
        log("WARNING: this instance has no persistent disk: the data is lost with the VM")
    store = Store(config["store"])
    server = ThreadingHTTPServer((config["bind"], int(config["port"])), make_handler(config, store))
    server.daemon_threads = True
    log(f"database listening on {config['bind']}:{config['port']}")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
