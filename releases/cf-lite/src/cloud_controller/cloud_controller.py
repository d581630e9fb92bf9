#!/usr/bin/env python3
"""cloud_controller: cf-lite's API. Usage: cloud_controller.py CONFIG.json

CONFIG.json (rendered by the cloud_controller job):
  {"bind": ADDRESS, "port": N, "tls": {"certificate": FILE, "private_key": FILE} or null,
   "admin": {"user": U, "password": P}, "apps_domain": DOMAIN,
   "database": {"hosts": [...], "port": N, "user": U, "password": P},
   "bbs": {"hosts": [...], "port": N},
   "nats": {"hosts": [...], "port": N, "user": U, "password": P}}

Served over HTTPS when `tls` is given. Everything but GET /v2/info needs HTTP basic auth as the
admin user.
  GET    /v2/info        {"name", "version", "apps_domain"}
  PUT    /v2/apps/NAME   push: body {"program": PYTHON SOURCE, "instances": N}; the app is kept
                         in the database (cc/apps/NAME, its guid stable across pushes) and
                         desired in bbs with the route NAME.DOMAIN; 201 with the app
  GET    /v2/apps/NAME   the app with its instances as bbs reports them
  GET    /v2/apps        every app (without program text)
  DELETE /v2/apps/NAME   stops it (removed from bbs) and forgets it
Every push is announced on nats as `cc.app.pushed {"name", "guid", "instances"}`.

The program must be a Python 3 HTTP server: the cell runs it with PORT, INSTANCE_INDEX,
INSTANCE_GUID and CF_INSTANCE_IP in its environment.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import ssl
import sys
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Lexically (the package directories are symlinks): <root>/packages/cflib beside this package.
sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cflib")))
from cflib import Database, HttpError, Nats, http_json, load_config, log  # noqa: E402

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_PROGRAM = 64 * 1024
MAX_INSTANCES = 16
VERSION = "1"


class Api:
    def __init__(self, config):
        db = config["database"]
        self.db = Database(db["hosts"], db["port"], db["user"], db["password"])
        self.bbs = config["bbs"]
        self.domain = config["apps_domain"]
        n = config["nats"]
        self.nats = Nats(n["hosts"], n["port"], n["user"], n["password"], "cloud_controller").start()

    def bbs_call(self, method, path, body=None):
        errors = []
        for host in self.bbs["hosts"]:
            try:
                return http_json(method, f"http://{host}:{self.bbs['port']}{path}", body)
            except OSError as e:
                errors.append(f"{host}: {e}")
        raise OSError("bbs unreachable: " + "; ".join(errors))

    def app(self, name):
        text = self.db.get(f"cc/apps/{name}")
        return json.loads(text) if text else None

    def push(self, name, program, instances):
        existing = self.app(name)
        app = {
            "name": name,
            "guid": existing["guid"] if existing else str(uuid.uuid4()),
            "instances": instances,
            "program": program,
            "route": f"{name}.{self.domain}",
            # Cells restart an app's instances when this changes.
            "version": hashlib.sha256(program.encode()).hexdigest()[:16],
        }
        self.db.put(f"cc/apps/{name}", json.dumps(app))
        desired = {k: app[k] for k in ("guid", "name", "instances", "program", "version")}
        desired["routes"] = [app["route"]]
        self.bbs_call("PUT", f"/v1/desired_lrps/{app['guid']}", desired)
        self.nats.publish("cc.app.pushed", json.dumps({"name": name, "guid": app["guid"], "instances": instances}))
        log(f"pushed {name} ({app['guid']}): {instances} instances, version {app['version']}")
        return app

    def status(self, app):
        out = {k: v for k, v in app.items() if k != "program"}
        try:
            actual = self.bbs_call("GET", f"/v1/actual_lrps?guid={app['guid']}") or []
        except (OSError, HttpError) as e:
            out["state"] = f"unknown ({e})"
            return out
        current = [a for a in actual if a.get("version") == app["version"] and a["index"] < app["instances"]]
        running = sorted({a["index"] for a in current if a["state"] == "RUNNING"})
        out["running_instances"] = len(running)
        out["state"] = "RUNNING" if len(running) == app["instances"] else "STARTING"
        out["instance_details"] = sorted(actual, key=lambda a: a["index"])
        return out

    def delete(self, app):
        self.bbs_call("DELETE", f"/v1/desired_lrps/{app['guid']}")
        self.db.delete(f"cc/apps/{app['name']}")
        log(f"deleted {app['name']} ({app['guid']})")


def make_handler(config, api):
    admin = config["admin"]
    expected = base64.b64encode(f"{admin['user']}:{admin['password']}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "cf-lite-cloud-controller/" + VERSION
        # A client that stalls (in the TLS handshake too) gives up its thread after this.
        timeout = 30

        def log_message(self, fmt, *args):
            pass

        def answer(self, status, value=None):
            body = b"" if value is None else (json.dumps(value, indent=1) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status, message):
            self.answer(status, {"error": message})

        def authorized(self):
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            if scheme == "Basic" and hmac.compare_digest(token.encode(), expected.encode()):
                return True
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="cf-lite"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False

        def app_name(self):
            path = urllib.parse.urlsplit(self.path).path
            if not path.startswith("/v2/apps/"):
                return None
            name = path[len("/v2/apps/"):]
            return name if NAME.match(name) else None

        def guarded(self, action):
            try:
                action()
            except (OSError, HttpError) as e:
                log(f"{self.command} {self.path}: {e}")
                self.error(503, str(e))

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/v2/info":
                return self.answer(200, {"name": "cf-lite", "version": VERSION, "apps_domain": api.domain})
            if not self.authorized():
                return

            def run():
                if path == "/v2/apps":
                    apps = [json.loads(v) for v in api.db.scan("cc/apps/").values()]
                    return self.answer(200, [{k: v for k, v in a.items() if k != "program"} for a in apps])
                name = self.app_name()
                app = api.app(name) if name else None
                if app is None:
                    return self.error(404, "no such app")
                self.answer(200, api.status(app))

            self.guarded(run)

        def do_PUT(self):
            if not self.authorized():
                return
            name = self.app_name()
            if name is None:
                return self.error(404, "PUT /v2/apps/NAME (NAME: lowercase letters, digits, dashes)")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_PROGRAM:
                return self.error(413, "program too large")
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                program = body["program"]
                instances = int(body.get("instances", 1))
                if not isinstance(program, str) or not program.strip():
                    raise ValueError("program must be non-empty text")
                if not 0 <= instances <= MAX_INSTANCES:
                    raise ValueError(f"instances must be 0..{MAX_INSTANCES}")
            except (ValueError, KeyError, TypeError) as e:
                return self.error(400, f"bad push: {e}")
            self.guarded(lambda: self.answer(201, api.status(api.push(name, program, instances))))

        def do_DELETE(self):
            if not self.authorized():
                return

            def run():
                name = self.app_name()
                app = api.app(name) if name else None
                if app is None:
                    return self.error(404, "no such app")
                api.delete(app)
                self.answer(204)

            self.guarded(run)

    return Handler


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    config = load_config(argv[1], ["bind", "port", "admin", "apps_domain", "database", "bbs", "nats"])
    api = Api(config)
    server = ThreadingHTTPServer((config["bind"], int(config["port"])), make_handler(config, api))
    server.daemon_threads = True
    tls = config.get("tls")
    scheme = "http"
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(tls["certificate"], tls["private_key"])
        # The handshake happens on the handler's thread, so a slow client cannot stall accept().
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https"
    log(f"cloud_controller listening on {scheme}://{config['bind']}:{config['port']}")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
