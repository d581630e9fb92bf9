#!/usr/bin/env python3
"""router: cf-lite's HTTP reverse proxy (a small gorouter). Usage: router.py CONFIG.json

CONFIG.json (rendered by the router job):
  {"bind": ADDRESS, "port": N, "status_port": N, "prune_after": SECONDS,
   "nats": {"hosts": [...], "port": N, "user": U, "password": P}}

Routes are learnt from nats: `router.register` and `router.unregister` carry
  {"host": "APP.DOMAIN", "address": IP, "port": N, "app": GUID, "index": I}
Cells announce their instances every few seconds; a backend not announced for `prune_after`
seconds is dropped, and so is one a request could not reach (its cell announces it again if it
comes back). A request is routed by its Host header (without port) round-robin across the
host's backends; a backend that refuses the connection is skipped for the next one. An unknown
host gets 404, a host whose backends all fail 502, both with X-Cf-RouterError saying why.

The status port answers GET /health and GET /routes (the table as JSON).
"""
import http.client
import itertools
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Lexically (the package directories are symlinks): <root>/packages/cflib beside this package.
sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cflib")))
from cflib import Nats, load_config, log  # noqa: E402

HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}
MAX_BODY = 16 << 20


class Table:
    def __init__(self, prune_after):
        self.lock = threading.Lock()
        self.routes = {}  # host -> {(address, port): (last_seen, info)}
        self.counters = {}
        self.prune_after = prune_after

    def register(self, _subject, payload):
        info = json.loads(payload)
        host = info["host"].lower()
        backend = (info["address"], int(info["port"]))
        with self.lock:
            backends = self.routes.setdefault(host, {})
            if backend not in backends:
                log(f"route {host} -> {backend[0]}:{backend[1]} (app {info.get('app')}, index {info.get('index')})")
            backends[backend] = (time.monotonic(), info)

    def unregister(self, _subject, payload):
        info = json.loads(payload)
        host = info["host"].lower()
        with self.lock:
            if self.routes.get(host, {}).pop((info["address"], int(info["port"])), None) is not None:
                log(f"route {host} -x {info['address']}:{info['port']} unregistered")

    def forget(self, host, backend, why):
        """Drops a backend that failed; its cell announces it again if it comes back."""
        with self.lock:
            if self.routes.get(host, {}).pop(backend, None) is not None:
                log(f"route {host} -x {backend[0]}:{backend[1]} dropped: {why}")

    def _prune(self, host):
        now = time.monotonic()
        backends = self.routes.get(host, {})
        for backend, (seen, _) in list(backends.items()):
            if now - seen > self.prune_after:
                log(f"route {host} -x {backend[0]}:{backend[1]} pruned (not announced for {self.prune_after}s)")
                del backends[backend]
        if not backends:
            self.routes.pop(host, None)

    def pick(self, host):
        """The host's backends in the order to try them: round-robin from a rotating start."""
        with self.lock:
            self._prune(host)
            backends = sorted(self.routes.get(host, {}))
            if not backends:
                return []
            counter = self.counters.setdefault(host, itertools.count())
            start = next(counter) % len(backends)
            return backends[start:] + backends[:start]

    def snapshot(self):
        with self.lock:
            for host in list(self.routes):
                self._prune(host)
            return {
                host: [dict(info, address=b[0], port=b[1]) for b, (_, info) in sorted(backends.items())]
                for host, backends in sorted(self.routes.items())
            }


def make_proxy(table):
    class Proxy(BaseHTTPRequestHandler):
        server_version = "cf-lite-router/1"
        protocol_version = "HTTP/1.1"
        timeout = 60

        def log_message(self, fmt, *args):
            pass

        def fail(self, status, reason):
            body = f"{status} {reason}\n".encode()
            self.send_response(status)
            self.send_header("X-Cf-RouterError", reason)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def proxy(self):
            host = (self.headers.get("Host") or "").split(":")[0].lower()
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self.fail(413, "request too large")
            body = self.rfile.read(length) if length else None
            backends = table.pick(host)
            if not backends:
                return self.fail(404, f"unknown_route {host}")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            headers["X-Forwarded-For"] = self.client_address[0]
            for address, port in backends:
                conn = http.client.HTTPConnection(address, port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                except OSError as e:
                    table.forget(host, (address, port), f"request failed: {e}")
                    continue
                finally:
                    conn.close()
                self.send_response(response.status, response.reason)
                for k, v in response.getheaders():
                    if k.lower() not in HOP_HEADERS and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("X-Cf-Backend", f"{address}:{port}")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.fail(502, f"endpoint_failure {host}: no backend answered")

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = proxy

    return Proxy


def make_status(table):
    class Status(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def do_GET(self):
            if self.path == "/health":
                status, body = 200, "ok\n"
            elif self.path == "/routes":
                status, body = 200, json.dumps(table.snapshot(), indent=1) + "\n"
            else:
                status, body = 404, "GET /health or /routes\n"
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Status


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    config = load_config(argv[1], ["bind", "port", "status_port", "nats"])
    table = Table(float(config.get("prune_after", 20)))
    n = config["nats"]
    nats = Nats(n["hosts"], n["port"], n["user"], n["password"], "router")
    nats.subscribe("router.register", table.register)
    nats.subscribe("router.unregister", table.unregister)
    nats.start()
    status = ThreadingHTTPServer((config["bind"], int(config["status_port"])), make_status(table))
    status.daemon_threads = True
    threading.Thread(target=status.serve_forever, name="status", daemon=True).start()
    server = ThreadingHTTPServer((config["bind"], int(config["port"])), make_proxy(table))
    server.daemon_threads = True
    # Ask the cells to announce everything now instead of at their next interval.
    nats.connected.wait(5)
    nats.publish("router.start", json.dumps({"address": config["bind"]}))
    log(f"router listening on {config['bind']}:{config['port']} (status on {config['status_port']})")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
