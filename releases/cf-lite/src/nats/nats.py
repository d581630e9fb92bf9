#!/usr/bin/env python3
"""nats: cf-lite's publish/subscribe message bus. Usage: nats.py CONFIG.json

CONFIG.json (rendered by the nats job): {"bind": ADDRESS, "port": N, "user": U, "password": P}

A line protocol over TCP, one command per line:
  CONNECT USER PASSWORD [NAME]   must come first; answered +OK, or -ERR and the connection closed
  SUB SUBJECT                    receive what is published on SUBJECT; answered +OK
  UNSUB SUBJECT                  stop receiving it; answered +OK
  PUB SUBJECT PAYLOAD            deliver `MSG SUBJECT PAYLOAD` to every subscriber (the publisher
                                 too, when subscribed); not answered, so publishers never wait
  PING                           answered PONG
Anything else is answered -ERR. A subscriber whose socket cannot take a message within two
seconds is disconnected, so one stuck client cannot hold up the others.
"""
import hmac
import json
import socketserver
import sys
import threading
import time

SEND_TIMEOUT = 2.0


def log(*parts):
    print(time.strftime("%Y-%m-%dT%H:%M:%S"), *parts, file=sys.stderr, flush=True)


class Bus:
    def __init__(self):
        self.lock = threading.Lock()
        self.subscribers = {}  # subject -> set of Client
        self.published = 0

    def subscribe(self, subject, client):
        with self.lock:
            self.subscribers.setdefault(subject, set()).add(client)

    def unsubscribe(self, subject, client):
        with self.lock:
            self.subscribers.get(subject, set()).discard(client)

    def drop(self, client):
        with self.lock:
            for clients in self.subscribers.values():
                clients.discard(client)

    def publish(self, subject, payload):
        with self.lock:
            targets = list(self.subscribers.get(subject, ()))
            self.published += 1
        message = f"MSG {subject} {payload}\n".encode()
        for client in targets:
            client.send(message)


class Client:
    def __init__(self, request, address):
        self.request = request
        self.address = address
        self.lock = threading.Lock()
        self.dead = False

    def send(self, data):
        with self.lock:
            if self.dead:
                return
            try:
                self.request.sendall(data)
            except OSError as e:
                log(f"dropping subscriber {self.address}: {e}")
                self.dead = True
                try:
                    self.request.close()
                except OSError:
                    pass


def make_handler(config, bus):
    user = config["user"].encode()
    password = config["password"].encode()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            self.request.settimeout(SEND_TIMEOUT)
            client = Client(self.request, f"{self.client_address[0]}:{self.client_address[1]}")
            authed = False
            try:
                while True:
                    # Reads may wait forever; only sends are bounded.
                    self.request.settimeout(None)
                    raw = self.rfile.readline()
                    self.request.settimeout(SEND_TIMEOUT)
                    if not raw:
                        return
                    line = raw.decode(errors="replace").rstrip("\r\n")
                    verb, _, rest = line.partition(" ")
                    if not authed:
                        parts = rest.split(" ")
                        ok = (
                            verb == "CONNECT"
                            and len(parts) >= 2
                            and hmac.compare_digest(parts[0].encode(), user)
                            and hmac.compare_digest(parts[1].encode(), password)
                        )
                        if not ok:
                            log(f"refused {client.address}: bad credentials or no CONNECT")
                            client.send(b"-ERR authorization violation\n")
                            return
                        authed = True
                        name = parts[2] if len(parts) > 2 else "?"
                        log(f"client {client.address} ({name}) connected")
                        client.send(b"+OK\n")
                    elif verb == "PUB":
                        subject, _, payload = rest.partition(" ")
                        if not subject:
                            client.send(b"-ERR PUB needs a subject\n")
                        else:
                            bus.publish(subject, payload)
                    elif verb == "SUB" and rest and " " not in rest:
                        bus.subscribe(rest, client)
                        client.send(b"+OK\n")
                    elif verb == "UNSUB" and rest:
                        bus.unsubscribe(rest, client)
                        client.send(b"+OK\n")
                    elif verb == "PING":
                        client.send(b"PONG\n")
                    elif verb == "PONG":
                        pass
                    else:
                        client.send(f"-ERR unknown command {verb!r}\n".encode())
                    if client.dead:
                        return
            except OSError:
                return
            finally:
                bus.drop(client)

    return Handler


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        config = json.load(f)
    for key in ("bind", "port", "user", "password"):
        if key not in config:
            print(f"{argv[1]}: missing {key}", file=sys.stderr)
            return 2
    bus = Bus()
    server = Server((config["bind"], int(config["port"])), make_handler(config, bus))
    log(f"nats listening on {config['bind']}:{config['port']}")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
