"""Checks greet() the way the server calls it. Run: python3 server_test.py (from src/)."""
import sys

sys.path.insert(0, "../greeting-lib")
from greeting import greet  # noqa: E402

assert greet("Hello", "/world") == "Hello, world!\n"
assert greet("Hello", "/") == "Hello!\n"
print("ok")
