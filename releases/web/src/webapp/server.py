#!/usr/bin/env python3
"""webapp: a small HTTP server that keeps a shared counter in kvd.

Usage: server.py CONFIG.json          serve
       server.py --check CONFIG.json  check the configuration and exit

CONFIG.json (rendered by the web job):
  {"bind": ADDRESS, "port": N, "greeting": TEXT, "instance": NAME,
   "kv": {"hosts": [ADDRESS, ...], "port": N, "key": KEY, "timeout": SECONDS}}

  GET /        the greeting
  GET /count   increments the counter KEY in kvd and answers its new value
  GET /health  200 while the server runs
The counter is kept by kvd (INCR is atomic there), so every instance counts together. kvd is
asked at the first of `kv.hosts`; the others are tried in order when it does not answer.
"""
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class KvError(Exception):
    pass


def kv_command(hosts, port, line, timeout):
    """Sends one command line to the first kvd that answers; returns its answer line."""
    errors = []
    for host in hosts:
        try:
            with socket.create_connection((host, port), timeout=timeout) as conn:
                conn.sendall(line.encode() + b"\n")
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        raise KvError(f"{host}:{port} closed the connection")
                    answer += chunk
                return answer.decode().rstrip("\r\n")
        except (OSError, KvError) as e:
            errors.append(f"{host}:{port}: {e}")
    raise KvError("; ".join(errors) or "no kv hosts configured")


def load_config(path):
    with open(path) as f:
        config = json.load(f)
    for key in ("bind", "port", "greeting", "kv"):
        if key not in config:
            raise ValueError(f"{path}: `{key}` is missing")
    kv = config["kv"]
    if not kv.get("hosts") or "port" not in kv:
        raise ValueError(f"{path}: `kv` needs `hosts` (at least one) and `port`")
    kv.setdefault("key", "web.count")
    kv.setdefault("timeout", 2)
    return config


def make_handler(config):
    kv = config["kv"]

    class Handler(BaseHTTPRequestHandler):
        server_version = "webapp/1"

        def answer(self, status, text):
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Instance", config.get("instance", ""))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/":
                self.answer(200, config["greeting"] + "\n")
            elif path == "/health":
                self.answer(200, "ok\n")
            elif path == "/count":
                try:
                    reply = kv_command(kv["hosts"], int(kv["port"]), "INCR " + kv["key"], float(kv["timeout"]))
                except KvError as e:
                    self.answer(502, f"kv unreachable: {e}\n")
                    return
                if not reply.startswith("VALUE "):
                    self.answer(502, f"kv answered: {reply}\n")
                    return
                self.answer(200, reply[len("VALUE "):] + "\n")
            else:
                self.answer(404, "not found\n")

    return Handler


def main(argv):
    check = len(argv) == 3 and argv[1] == "--check"
    if len(argv) != 2 and not check:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        config = load_config(argv[-1])
    except (OSError, ValueError) as e:
        print(f"webapp: {e}", file=sys.stderr)
        return 1
    if check:
        print(f"webapp: {argv[-1]}: ok")
        return 0
    server = ThreadingHTTPServer((config["bind"], int(config["port"])), make_handler(config))
    server.daemon_threads = True
    print(f"webapp: {config.get('instance', '')} listening on {config['bind']} port {config['port']}", file=sys.stderr)
    sys.stderr.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
