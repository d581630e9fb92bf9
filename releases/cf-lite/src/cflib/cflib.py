"""cflib: what the cf-lite programs share (Python 3 standard library only).

- log(): one timestamped line on stderr (the agent keeps job stderr as the job's log).
- load_config(): a job's rendered JSON config, with the keys it must have.
- Nats: a client of the cf-lite nats server's line protocol that reconnects by itself.
- Database: a client of the cf-lite database's HTTP key-value API.
- http_json(): one HTTP(S) request with a JSON body and answer.
"""
import base64
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


def log(*parts):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(stamp, *parts, file=sys.stderr, flush=True)


def load_config(path, required):
    with open(path) as f:
        config = json.load(f)
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    return config


class HttpError(Exception):
    def __init__(self, status, body):
        super().__init__(f"status {status}: {body.strip()[:200]}")
        self.status = status
        self.body = body


def http_json(method, url, body=None, auth=None, timeout=5.0, context=None, raw=False):
    """One request; answers the decoded JSON (or text with raw=True), None for an empty body.

    auth is (user, password) for HTTP basic auth. A non-2xx answer raises HttpError; a server
    that does not answer raises OSError.
    """
    data = None
    headers = {}
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        headers["Content-Type"] = "text/plain" if isinstance(body, str) else "application/json"
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as e:
        raise HttpError(e.code, e.read().decode(errors="replace")) from None
    except urllib.error.URLError as e:
        raise OSError(str(e.reason)) from None
    if raw:
        return text
    return json.loads(text) if text.strip() else None


class Database:
    """The cf-lite database (a key-value store over HTTP) through its `database` link."""

    def __init__(self, hosts, port, user, password, timeout=5.0):
        self.hosts = list(hosts)
        self.port = port
        self.auth = (user, password)
        self.timeout = timeout

    def _call(self, method, path, body=None, raw=False):
        errors = []
        for host in self.hosts:
            try:
                return http_json(method, f"http://{host}:{self.port}{path}", body, self.auth, self.timeout, raw=raw)
            except OSError as e:
                errors.append(f"{host}:{self.port}: {e}")
        raise OSError("database unreachable: " + "; ".join(errors))

    def get(self, key):
        """The value of key, or None."""
        try:
            return self._call("GET", "/v1/keys/" + urllib.parse.quote(key, safe=""), raw=True)
        except HttpError as e:
            if e.status == 404:
                return None
            raise

    def put(self, key, value):
        self._call("PUT", "/v1/keys/" + urllib.parse.quote(key, safe=""), value)

    def delete(self, key):
        try:
            self._call("DELETE", "/v1/keys/" + urllib.parse.quote(key, safe=""))
        except HttpError as e:
            if e.status != 404:
                raise

    def scan(self, prefix):
        """Every key starting with prefix, with its value."""
        return self._call("GET", "/v1/keys?prefix=" + urllib.parse.quote(prefix, safe="")) or {}


class Nats:
    """A nats client: publish from any thread, subscriptions delivered on a reader thread.

    The connection is made (and remade after any error) in the background; publish() while
    disconnected drops the message and answers False, which suits periodic announcements.
    """

    def __init__(self, hosts, port, user, password, name):
        self.hosts = list(hosts)
        self.port = port
        self.user = user
        self.password = password
        self.name = name
        self.handlers = {}
        self.sock = None
        self.lock = threading.Lock()
        self.connected = threading.Event()

    def subscribe(self, subject, handler):
        """handler(subject, payload) runs on the reader thread; call before start()."""
        self.handlers[subject] = handler

    def start(self):
        threading.Thread(target=self._run, name="nats", daemon=True).start()
        return self

    def publish(self, subject, payload):
        line = f"PUB {subject} {payload}\n".encode()
        with self.lock:
            sock = self.sock
            if sock is None:
                return False
            try:
                sock.sendall(line)
                return True
            except OSError:
                return False

    def _connect(self):
        errors = []
        for host in self.hosts:
            try:
                sock = socket.create_connection((host, self.port), timeout=5)
                reader = sock.makefile("rb")
                sock.sendall(f"CONNECT {self.user} {self.password} {self.name}\n".encode())
                answer = reader.readline().decode().strip()
                if answer != "+OK":
                    sock.close()
                    raise OSError(f"refused: {answer or 'connection closed'}")
                for subject in self.handlers:
                    sock.sendall(f"SUB {subject}\n".encode())
                sock.settimeout(None)
                return sock, reader
            except OSError as e:
                errors.append(f"{host}:{self.port}: {e}")
        raise OSError("; ".join(errors) or "no nats hosts")

    def _run(self):
        while True:
            try:
                sock, reader = self._connect()
            except OSError as e:
                log(f"nats: cannot connect: {e}")
                time.sleep(1)
                continue
            log(f"nats: connected to {sock.getpeername()[0]}:{self.port}")
            with self.lock:
                self.sock = sock
            self.connected.set()
            try:
                for raw in reader:
                    line = raw.decode(errors="replace").rstrip("\r\n")
                    if line.startswith("MSG "):
                        _, subject, payload = (line.split(" ", 2) + [""])[:3]
                        handler = self.handlers.get(subject)
                        if handler is not None:
                            try:
                                handler(subject, payload)
                            except Exception as e:  # a bad message must not end the reader
                                log(f"nats: handler for {subject}: {e!r}")
                    elif line == "PING":
                        self.publish_raw(b"PONG\n")
            except OSError as e:
                log(f"nats: connection lost: {e}")
            self.connected.clear()
            with self.lock:
                self.sock = None
            try:
                sock.close()
            except OSError:
                pass
            log("nats: disconnected; reconnecting")
            time.sleep(0.5)

    def publish_raw(self, data):
        with self.lock:
            if self.sock is not None:
                try:
                    self.sock.sendall(data)
                except OSError:
                    pass
