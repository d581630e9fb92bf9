#!/usr/bin/env python3
"""bbs: diego-lite's bulletin board of long-running processes (LRPs). Usage: bbs.py CONFIG.json

CONFIG.json (rendered by the bbs job):
  {"bind": ADDRESS, "port": N, "cell_ttl": SECONDS,
   "database": {"hosts": [...], "port": N, "user": U, "password": P}}

State lives in the cf-lite database (through the `database` link), so bbs itself keeps nothing:
  bbs/desired/GUID          the desired LRP: {"guid", "name", "program", "version", "instances",
                            "routes"}
  bbs/actual/GUID/INDEX     who runs that instance: {"guid", "index", "cell_id", "instance_guid",
                            "state", "address", "port", "version", "since"}

  PUT    /v1/desired_lrps/GUID          desire (or change) an LRP; 204
  GET    /v1/desired_lrps               every desired LRP
  DELETE /v1/desired_lrps/GUID          stop desiring it (its actual LRPs go too); 204 or 404
  POST   /v1/cells/CELL/claim           a cell's heartbeat, body {"address": IP}; answers the
                                        instances the cell must run (desired LRP + index +
                                        instance_guid), claiming unowned ones for it
  PUT    /v1/actual_lrps/GUID/INDEX     the owning cell reports {"state": STARTING|RUNNING|CRASHED,
                                        "address", "port", "version", "cell_id"}; 409 if the
                                        instance belongs to another cell
  GET    /v1/actual_lrps[?guid=GUID]    actual LRPs, each with "cell_alive"
  GET    /v1/cells                      cells heard from, with their age in seconds
  GET    /health                        200

Placement: an instance is unowned when nobody claimed it or its cell has not claimed for
`cell_ttl` seconds (a dead cell's instances move to the living). A claiming cell takes an
unowned instance while it runs no more instances of that LRP than any other living cell, so
an LRP's instances spread across cells. Claims are serialised by one lock.
"""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import base64
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def log(*parts):
    print(time.strftime("%Y-%m-%dT%H:%M:%S"), *parts, file=sys.stderr, flush=True)


class DatabaseError(Exception):
    pass


class Database:
    def __init__(self, hosts, port, user, password):
        self.hosts = list(hosts)
        self.port = port
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def _call(self, method, path, body=None):
        errors = []
        for host in self.hosts:
            request = urllib.request.Request(
                f"http://{host}:{self.port}{path}",
                data=None if body is None else body.encode(),
                method=method,
                headers=self.headers,
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode(errors="replace")
            except OSError as e:
                errors.append(f"{host}:{self.port}: {e}")
        raise DatabaseError("database unreachable: " + "; ".join(errors))

    @staticmethod
    def _key(key):
        return "/v1/keys/" + urllib.parse.quote(key, safe="")

    def put(self, key, value):
        status, body = self._call("PUT", self._key(key), json.dumps(value))
        if status != 204:
            raise DatabaseError(f"PUT {key}: {status} {body.strip()}")

    def get(self, key):
        status, body = self._call("GET", self._key(key))
        if status == 404:
            return None
        if status != 200:
            raise DatabaseError(f"GET {key}: {status} {body.strip()}")
        return json.loads(body)

    def delete(self, key):
        status, body = self._call("DELETE", self._key(key))
        if status not in (204, 404):
            raise DatabaseError(f"DELETE {key}: {status} {body.strip()}")

    def scan(self, prefix):
        status, body = self._call("GET", "/v1/keys?prefix=" + urllib.parse.quote(prefix, safe=""))
        if status != 200:
            raise DatabaseError(f"scan {prefix}: {status} {body.strip()}")
        return {k: json.loads(v) for k, v in json.loads(body).items()}


class Board:
    def __init__(self, db, cell_ttl):
        self.db = db
        self.cell_ttl = cell_ttl
        self.lock = threading.Lock()
        self.cells = {}  # cell_id -> (last claim, address)
        # Cells that owned instances before a bbs restart get one ttl to claim again.
        self.started = time.monotonic()

    def alive(self, cell_id, now):
        seen = self.cells.get(cell_id)
        if seen is not None:
            return now - seen[0] <= self.cell_ttl
        return now - self.started <= self.cell_ttl

    def desire(self, guid, lrp):
        lrp["guid"] = guid
        with self.lock:
            self.db.put(f"bbs/desired/{guid}", lrp)
        log(f"desired {lrp.get('name')} ({guid}): {lrp['instances']} instances, version {lrp.get('version')}")

    def desired(self):
        return sorted(self.db.scan("bbs/desired/").values(), key=lambda d: d.get("name", ""))

    def undesire(self, guid):
        with self.lock:
            if self.db.get(f"bbs/desired/{guid}") is None:
                return False
            self.db.delete(f"bbs/desired/{guid}")
            for key in self.db.scan(f"bbs/actual/{guid}/"):
                self.db.delete(key)
        log(f"no longer desired: {guid}")
        return True

    def claim(self, cell_id, address):
        with self.lock:
            now = time.monotonic()
            if cell_id not in self.cells:
                log(f"cell {cell_id} at {address} joined")
            self.cells[cell_id] = (now, address)
            desired = {d["guid"]: d for d in self.db.scan("bbs/desired/").values()}
            actual = {}
            for key, a in self.db.scan("bbs/actual/").items():
                d = desired.get(a["guid"])
                if d is None or a["index"] >= d["instances"]:
                    self.db.delete(key)
                else:
                    actual[(a["guid"], a["index"])] = a
            living = {c for c in self.cells if self.alive(c, now)}
            living |= {a["cell_id"] for a in actual.values() if self.alive(a["cell_id"], now)}
            mine = []
            for guid, d in sorted(desired.items()):
                counts = {c: 0 for c in living}
                for (g, _), a in actual.items():
                    if g == guid and a["cell_id"] in living:
                        counts[a["cell_id"]] += 1
                for index in range(d["instances"]):
                    a = actual.get((guid, index))
                    if a is not None and a["cell_id"] in living:
                        if a["cell_id"] == cell_id:
                            mine.append(dict(d, index=index, instance_guid=a["instance_guid"]))
                        continue
                    if counts[cell_id] > min(counts.values()):
                        continue
                    if a is not None:
                        log(f"{d.get('name')}/{index}: cell {a['cell_id']} is gone; moving it to {cell_id}")
                    a = {
                        "guid": guid,
                        "index": index,
                        "cell_id": cell_id,
                        "instance_guid": str(uuid.uuid4()),
                        "state": "CLAIMED",
                        "address": address,
                        "port": None,
                        "version": None,
                        "since": time.time(),
                    }
                    self.db.put(f"bbs/actual/{guid}/{index}", a)
                    counts[cell_id] += 1
                    log(f"{d.get('name')}/{index} claimed by cell {cell_id}")
                    mine.append(dict(d, index=index, instance_guid=a["instance_guid"]))
            return mine

    def report(self, guid, index, body):
        with self.lock:
            key = f"bbs/actual/{guid}/{index}"
            a = self.db.get(key)
            if a is None or a["cell_id"] != body.get("cell_id"):
                return False
            changed = a["state"] != body["state"]
            for field in ("state", "address", "port", "version"):
                a[field] = body.get(field)
            if changed:
                a["since"] = time.time()
            self.db.put(key, a)
            return True

    def actual(self, guid=None):
        now = time.monotonic()
        prefix = f"bbs/actual/{guid}/" if guid else "bbs/actual/"
        out = []
        for a in self.db.scan(prefix).values():
            a["cell_alive"] = self.alive(a["cell_id"], now)
            out.append(a)
        return sorted(out, key=lambda a: (a["guid"], a["index"]))

    def cell_list(self):
        now = time.monotonic()
        with self.lock:
            return [
                {"cell_id": c, "address": addr, "seconds_since_claim": round(now - seen, 1), "alive": self.alive(c, now)}
                for c, (seen, addr) in sorted(self.cells.items())
            ]


def make_handler(board):
    class Handler(BaseHTTPRequestHandler):
        server_version = "diego-lite-bbs/1"
        timeout = 30

        def log_message(self, fmt, *args):
            pass

        def answer(self, status, value=None):
            body = b"" if value is None else (json.dumps(value) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def route(self):
            parts = urllib.parse.urlsplit(self.path)
            return [p for p in parts.path.split("/") if p], urllib.parse.parse_qs(parts.query)

        def guarded(self, action):
            try:
                action()
            except DatabaseError as e:
                log(f"{self.command} {self.path}: {e}")
                self.answer(503, {"error": str(e)})
            except (ValueError, KeyError, TypeError) as e:
                self.answer(400, {"error": f"bad request: {e}"})

        def do_GET(self):
            path, query = self.route()

            def run():
                if path == ["health"]:
                    self.answer(200, {"ok": True})
                elif path == ["v1", "desired_lrps"]:
                    self.answer(200, board.desired())
                elif path == ["v1", "actual_lrps"]:
                    self.answer(200, board.actual(query.get("guid", [None])[0]))
                elif path == ["v1", "cells"]:
                    self.answer(200, board.cell_list())
                else:
                    self.answer(404, {"error": "no such endpoint"})

            self.guarded(run)

        def do_PUT(self):
            path, _ = self.route()

            def run():
                if len(path) == 3 and path[:2] == ["v1", "desired_lrps"]:
                    lrp = self.body()
                    if not isinstance(lrp.get("program"), str) or int(lrp.get("instances", -1)) < 0:
                        raise ValueError("a desired LRP needs `program` text and `instances` >= 0")
                    lrp["instances"] = int(lrp["instances"])
                    lrp.setdefault("routes", [])
                    board.desire(path[2], lrp)
                    self.answer(204)
                elif len(path) == 4 and path[:2] == ["v1", "actual_lrps"]:
                    if board.report(path[2], int(path[3]), self.body()):
                        self.answer(204)
                    else:
                        self.answer(409, {"error": "not claimed by this cell"})
                else:
                    self.answer(404, {"error": "no such endpoint"})

            self.guarded(run)

        def do_POST(self):
            path, _ = self.route()

            def run():
                if len(path) == 4 and path[:2] == ["v1", "cells"] and path[3] == "claim":
                    self.answer(200, board.claim(path[2], self.body().get("address")))
                else:
                    self.answer(404, {"error": "no such endpoint"})

            self.guarded(run)

        def do_DELETE(self):
            path, _ = self.route()

            def run():
                if len(path) == 3 and path[:2] == ["v1", "desired_lrps"]:
                    self.answer(204 if board.undesire(path[2]) else 404)
                else:
                    self.answer(404, {"error": "no such endpoint"})

            self.guarded(run)

    return Handler


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        config = json.load(f)
    for key in ("bind", "port", "database"):
        if key not in config:
            print(f"{argv[1]}: missing {key}", file=sys.stderr)
            return 2
    db = config["database"]
    board = Board(Database(db["hosts"], db["port"], db["user"], db["password"]), float(config.get("cell_ttl", 10)))
    server = ThreadingHTTPServer((config["bind"], int(config["port"])), make_handler(board))
    server.daemon_threads = True
    log(f"bbs listening on {config['bind']}:{config['port']} (pid {os.getpid()})")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
