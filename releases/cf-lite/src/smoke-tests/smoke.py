#!/usr/bin/env python3
"""smoke-tests: pushes an app through the cf-lite API and reaches every instance through the
router. Usage: smoke.py CONFIG.json

CONFIG.json (rendered by the smoke-tests job):
  {"api": {"address": IP, "port": N, "ca": FILE}, "admin": {"user": U, "password": P},
   "routers": [{"address": IP, "port": N}, ...], "instances": N, "timeout": SECONDS}

1. GET /v2/info over HTTPS, verifying the API's certificate against the CA in FILE (over plain
   HTTP when FILE is empty: the API was deployed without a certificate).
2. Pushes app smoke-XXXXXX: a Python HTTP server answering {"index": INSTANCE_INDEX,
   "guid": INSTANCE_GUID}, with `instances` instances.
3. Waits until the API reports every instance RUNNING.
4. Sends requests through every router with Host: <app route> until every instance index has
   answered, each with its own instance guid.
5. Deletes the app (also when a step failed).
Prints each step; exits 1 unless every step passed within `timeout` seconds.
"""
import http.client
import json
import os
import secrets
import ssl
import sys
import time

# Lexically (the package directories are symlinks): <root>/packages/cflib beside this package.
sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cflib")))
from cflib import HttpError, http_json, load_config  # noqa: E402

APP = r'''
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

ANSWER = json.dumps({"index": int(os.environ["INSTANCE_INDEX"]), "guid": os.environ["INSTANCE_GUID"]})


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        body = (ANSWER + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer((os.environ.get("CF_INSTANCE_IP", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
'''


class Failed(Exception):
    pass


def step(text):
    print(f"---- {text}", flush=True)


def through_router(router, host, timeout):
    conn = http.client.HTTPConnection(router["address"], router["port"], timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace"), response.getheader("X-Cf-RouterError")
    finally:
        conn.close()


def run(config):
    deadline = time.monotonic() + float(config.get("timeout", 120))
    want = int(config.get("instances", 2))
    ca_file = config["api"]["ca"]
    with open(ca_file) as f:
        has_ca = bool(f.read().strip())
    context = ssl.create_default_context(cafile=ca_file) if has_ca else None
    api = f"{'https' if has_ca else 'http'}://{config['api']['address']}:{config['api']['port']}"
    auth = (config["admin"]["user"], config["admin"]["password"])

    def call(method, path, body=None):
        return http_json(method, api + path, body, auth, timeout=10, context=context)

    step(f"GET {api}/v2/info")
    info = http_json("GET", api + "/v2/info", timeout=10, context=context)
    print(f"ok    {info['name']} v{info['version']}, apps under {info['apps_domain']}"
          f"{' (certificate verified against the CA)' if context else ''}")

    name = "smoke-" + secrets.token_hex(3)
    step(f"push {name} with {want} instances")
    app = call("PUT", f"/v2/apps/{name}", {"program": APP, "instances": want})
    print(f"ok    guid {app['guid']}, route {app['route']}")
    try:
        step(f"wait until {want} instances run")
        while True:
            status = call("GET", f"/v2/apps/{name}")
            if status.get("state") == "RUNNING":
                for i in status.get("instance_details", []):
                    print(f"ok    instance {i['index']} on cell {i['cell_id'][:8]} at {i['address']}:{i['port']}")
                break
            if time.monotonic() >= deadline:
                raise Failed(f"{status.get('running_instances', 0)} of {want} instances running: {status}")
            time.sleep(0.5)

        for router in config["routers"]:
            where = f"{router['address']}:{router['port']}"
            step(f"GET http://{app['route']}/ through the router at {where}")
            seen, sent, last = {}, 0, ""
            while len(seen) < want:
                if time.monotonic() >= deadline:
                    raise Failed(f"router {where}: only instances {sorted(seen)} answered in {sent} requests; last: {last}")
                sent += 1
                try:
                    code, body, why = through_router(router, app["route"], 5)
                except OSError as e:
                    last = str(e)
                    time.sleep(0.3)
                    continue
                if code != 200:
                    last = f"{code} {why or body.strip()}"
                    time.sleep(0.3)
                    continue
                answer = json.loads(body)
                if answer["index"] in seen and seen[answer["index"]] != answer["guid"]:
                    raise Failed(f"instance {answer['index']} answered with two guids")
                seen[answer["index"]] = answer["guid"]
            for index, guid in sorted(seen.items()):
                print(f"ok    instance {index} answered (guid {guid})")
            if len(set(seen.values())) != want:
                raise Failed(f"instances share a guid: {seen}")
            print(f"ok    all {want} instances answered in {sent} requests")
    finally:
        step(f"delete {name}")
        try:
            call("DELETE", f"/v2/apps/{name}")
            print("ok    deleted")
        except (OSError, HttpError) as e:
            print(f"warn  could not delete {name}: {e}")


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    config = load_config(argv[1], ["api", "admin", "routers"])
    started = time.monotonic()
    try:
        run(config)
    except (Failed, OSError, HttpError, KeyError, ValueError) as e:
        print(f"FAIL  {e}")
        return 1
    print(f"smoke tests passed in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
