#!/usr/bin/env python3
"""hello-server: answers every GET with a greeting. Usage: server.py CONFIG.json"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

config = json.load(open(sys.argv[1]))
sys.path.insert(0, config.get("greeting_lib", "/var/vcap/packages/greeting-lib"))
from greeting import greet  # noqa: E402


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = greet(config.get("greeting", "Hello"), self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer((config.get("bind", "0.0.0.0"), int(config["port"])), Handler).serve_forever()
