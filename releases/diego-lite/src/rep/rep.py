#!/usr/bin/env python3
"""rep: diego-lite's cell representative. Usage: rep.py CONFIG.json

CONFIG.json (rendered by the rep job):
  {"cell_id": ID, "address": IP, "data_dir": DIR, "ports": [FIRST, LAST], "interval": SECONDS,
   "bbs": {"hosts": [...], "port": N},
   "nats": {"hosts": [...], "port": N, "user": U, "password": P}}

Every `interval` seconds the rep claims work from bbs (POST /v1/cells/ID/claim) and makes the
cell run exactly what bbs answered: each LRP instance is a process of its own, the LRP's program
run by this Python with PORT (a free port of the cell's from `ports`), INSTANCE_INDEX,
INSTANCE_GUID and CF_INSTANCE_IP set, in DIR/GUID-INDEX. Instances no longer assigned are
stopped; a new version of an LRP replaces its instances; a crashed instance is reported CRASHED
and started again on the next round. Each instance's state (STARTING until its port accepts
connections, then RUNNING) is reported to bbs, and every RUNNING instance's routes are announced
on nats (`router.register`) each round and when a router asks (`router.start`); a stopped
instance is unregistered. When bbs cannot be reached the cell keeps running what it has.

Instance processes die with the rep (PR_SET_PDEATHSIG), so a restarted rep starts from a clean
cell; SIGTERM stops them and unregisters their routes first.
"""
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

PR_SET_PDEATHSIG = 1


def log(*parts):
    print(time.strftime("%Y-%m-%dT%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def die_with_parent():
    """preexec_fn: SIGKILL this child when the rep exits, however it exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setsid()


class Nats:
    """Publish-mostly nats client; reconnects in the background."""

    def __init__(self, config, on_router_start):
        self.config = config
        self.on_router_start = on_router_start
        self.sock = None
        self.lock = threading.Lock()

    def start(self):
        threading.Thread(target=self._run, name="nats", daemon=True).start()

    def publish(self, subject, payload):
        with self.lock:
            if self.sock is None:
                return False
            try:
                self.sock.sendall(f"PUB {subject} {json.dumps(payload)}\n".encode())
                return True
            except OSError:
                return False

    def _run(self):
        c = self.config
        while True:
            sock = None
            for host in c["hosts"]:
                try:
                    sock = socket.create_connection((host, c["port"]), timeout=5)
                    reader = sock.makefile("rb")
                    sock.sendall(f"CONNECT {c['user']} {c['password']} rep\nSUB router.start\n".encode())
                    if reader.readline().strip() != b"+OK":
                        raise OSError("nats refused the credentials")
                    sock.settimeout(None)
                    break
                except OSError as e:
                    log(f"nats {host}:{c['port']}: {e}")
                    if sock is not None:
                        sock.close()
                    sock = None
            if sock is None:
                time.sleep(1)
                continue
            with self.lock:
                self.sock = sock
            log("nats: connected")
            try:
                for raw in reader:
                    if raw.startswith(b"MSG router.start"):
                        self.on_router_start()
            except OSError:
                pass
            with self.lock:
                self.sock = None
            sock.close()
            log("nats: disconnected; reconnecting")
            time.sleep(0.5)


class Instance:
    def __init__(self, lrp, port, directory, process):
        self.lrp = lrp
        self.port = port
        self.directory = directory
        self.process = process
        self.state = "STARTING"

    @property
    def key(self):
        return (self.lrp["guid"], self.lrp["index"])

    def route_messages(self, address):
        return [
            {"host": host, "address": address, "port": self.port, "app": self.lrp["guid"], "index": self.lrp["index"]}
            for host in self.lrp.get("routes", [])
        ]


class Rep:
    def __init__(self, config):
        self.config = config
        self.address = config["address"]
        self.cell_id = config["cell_id"]
        self.data_dir = config["data_dir"]
        self.instances = {}
        self.wake = threading.Event()
        self.stopping = False
        self.nats = Nats(config["nats"], self.wake.set)

    def bbs(self, method, path, body=None):
        errors = []
        for host in self.config["bbs"]["hosts"]:
            request = urllib.request.Request(
                f"http://{host}:{self.config['bbs']['port']}{path}",
                data=None if body is None else json.dumps(body).encode(),
                method=method,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    text = response.read().decode()
                    return json.loads(text) if text.strip() else None
            except urllib.error.HTTPError as e:
                raise OSError(f"bbs {host}: {e.code} {e.read().decode(errors='replace').strip()}") from None
            except OSError as e:
                errors.append(f"{host}: {e}")
        raise OSError("bbs unreachable: " + "; ".join(errors))

    def free_port(self):
        used = {i.port for i in self.instances.values()}
        first, last = self.config["ports"]
        for port in range(first, last + 1):
            if port in used:
                continue
            with socket.socket() as s:
                try:
                    s.bind((self.address, port))
                    return port
                except OSError:
                    continue
        raise OSError(f"no free port in {first}-{last}")

    def start(self, lrp):
        port = self.free_port()
        directory = os.path.join(self.data_dir, f"{lrp['guid']}-{lrp['index']}")
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        program = os.path.join(directory, "app.py")
        with open(program, "w") as f:
            f.write(lrp["program"])
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": directory,
            "PORT": str(port),
            "INSTANCE_INDEX": str(lrp["index"]),
            "INSTANCE_GUID": lrp["instance_guid"],
            "CF_INSTANCE_IP": self.address,
            "CF_INSTANCE_PORT": str(port),
            "APP_NAME": lrp.get("name", ""),
        }
        with open(os.path.join(directory, "app.log"), "ab") as out:
            process = subprocess.Popen(
                [sys.executable, program],
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        log(f"started {lrp.get('name')}/{lrp['index']} ({lrp['instance_guid']}) on port {port}, pid {process.pid}")
        return Instance(lrp, port, directory, process)

    def stop(self, instance, why):
        for message in instance.route_messages(self.address):
            self.nats.publish("router.unregister", message)
        if instance.process.poll() is None:
            try:
                os.killpg(instance.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                instance.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(instance.process.pid, signal.SIGKILL)
                instance.process.wait()
        log(f"stopped {instance.lrp.get('name')}/{instance.lrp['index']} ({why})")
        shutil.rmtree(instance.directory, ignore_errors=True)

    def accepting(self, instance):
        try:
            with socket.create_connection((self.address, instance.port), timeout=1):
                return True
        except OSError:
            return False

    def converge(self, assigned):
        wanted = {(lrp["guid"], lrp["index"]): lrp for lrp in assigned}
        for key, instance in list(self.instances.items()):
            lrp = wanted.get(key)
            if lrp is None:
                self.stop(instance, "no longer assigned to this cell")
            elif lrp.get("version") != instance.lrp.get("version") or lrp["instance_guid"] != instance.lrp["instance_guid"]:
                self.stop(instance, "replaced by a new version")
            else:
                instance.lrp = lrp
                continue
            del self.instances[key]
        for key, lrp in wanted.items():
            instance = self.instances.get(key)
            if instance is not None and instance.process.poll() is not None:
                log(f"{lrp.get('name')}/{lrp['index']} exited with {instance.process.returncode}; restarting")
                self.report(instance, "CRASHED")
                self.stop(instance, "crashed")
                instance = None
            if instance is None:
                try:
                    self.instances[key] = self.start(lrp)
                except OSError as e:
                    log(f"cannot start {lrp.get('name')}/{lrp['index']}: {e}")

    def report(self, instance, state):
        lrp = instance.lrp
        body = {
            "cell_id": self.cell_id,
            "state": state,
            "address": self.address,
            "port": instance.port,
            "version": lrp.get("version"),
        }
        try:
            self.bbs("PUT", f"/v1/actual_lrps/{lrp['guid']}/{lrp['index']}", body)
        except OSError as e:
            log(f"reporting {lrp.get('name')}/{lrp['index']}: {e}")

    def round(self):
        try:
            assigned = self.bbs("POST", f"/v1/cells/{self.cell_id}/claim", {"address": self.address}) or []
        except OSError as e:
            log(f"claim: {e}; keeping what runs")
            assigned = None
        if assigned is not None:
            self.converge(assigned)
        for instance in self.instances.values():
            if instance.process.poll() is not None:
                state = "CRASHED"
            else:
                state = "RUNNING" if self.accepting(instance) else "STARTING"
            if state != instance.state:
                log(f"{instance.lrp.get('name')}/{instance.lrp['index']}: {instance.state} -> {state}")
            instance.state = state
            if assigned is not None:
                self.report(instance, state)
            if state == "RUNNING":
                for message in instance.route_messages(self.address):
                    self.nats.publish("router.register", message)

    def shutdown(self, *_):
        self.stopping = True
        self.wake.set()

    def run(self):
        os.makedirs(self.data_dir, exist_ok=True)
        # Instances of an earlier rep died with it; their directories are leftovers.
        for entry in os.listdir(self.data_dir):
            shutil.rmtree(os.path.join(self.data_dir, entry), ignore_errors=True)
        self.nats.start()
        log(f"rep for cell {self.cell_id} at {self.address}")
        interval = float(self.config.get("interval", 2))
        while not self.stopping:
            self.round()
            self.wake.wait(interval)
            self.wake.clear()
        for instance in list(self.instances.values()):
            self.stop(instance, "rep stopping")
        log("rep stopped")


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        config = json.load(f)
    for key in ("cell_id", "address", "data_dir", "ports", "bbs", "nats"):
        if key not in config:
            print(f"{argv[1]}: missing {key}", file=sys.stderr)
            return 2
    rep = Rep(config)
    signal.signal(signal.SIGTERM, rep.shutdown)
    signal.signal(signal.SIGINT, rep.shutdown)
    rep.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
