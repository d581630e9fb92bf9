#!/usr/bin/env python3
"""smoke-tests: checks every web instance. Usage: smoke.py CONFIG.json

CONFIG.json (rendered by the smoke-test job):
  {"targets": [{"name": NAME, "url": "http://ADDRESS:PORT"}, ...], "timeout": SECONDS}

Each target must answer GET /health with 200 (it gets `timeout` seconds to come up), and GET
/count twice with increasing numbers. The counter is shared by all instances through kvd, so
every reading must also be above the one before it, whichever instance gave it. Prints one line
per target; exits 1 unless every target passed.
"""
import json
import sys
import time
import urllib.error
import urllib.request


def get(url, timeout):
    """(status, body) of GET url; an unreachable server raises OSError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_healthy(url, deadline, timeout):
    last = "no answer"
    while True:
        try:
            status, body = get(url + "/health", timeout)
            if status == 200:
                return None
            last = f"status {status}: {body.strip()}"
        except OSError as e:
            last = str(e)
        if time.monotonic() >= deadline:
            return f"/health: {last}"
        time.sleep(0.5)


def count(url, timeout):
    status, body = get(url + "/count", timeout)
    if status != 200:
        raise ValueError(f"/count: status {status}: {body.strip()}")
    try:
        return int(body.strip())
    except ValueError:
        raise ValueError(f"/count: not a number: {body.strip()!r}") from None


def check(target, previous, wait, timeout):
    """Checks one target; returns (error or None, its last count)."""
    url = target["url"].rstrip("/")
    problem = wait_healthy(url, time.monotonic() + wait, timeout)
    if problem:
        return problem, previous
    try:
        first = count(url, timeout)
        second = count(url, timeout)
    except (OSError, ValueError) as e:
        return str(e), previous
    if second <= first:
        return f"/count did not increase ({first} then {second})", second
    if previous is not None and first <= previous:
        return f"/count went from {previous} (previous instance) to {first}: the counter is not shared", second
    print(f"ok    {target['name']} {url}: healthy, count {first} -> {second}")
    return None, second


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        config = json.load(f)
    targets = config.get("targets") or []
    wait = float(config.get("timeout", 10))
    if not targets:
        print("FAIL  no web instances to test (the http link has no instances)")
        return 1
    failed, previous = 0, None
    for target in targets:
        error, previous = check(target, previous, wait, min(wait, 5.0))
        if error:
            failed += 1
            print(f"FAIL  {target['name']} {target['url']}: {error}")
    print(f"{len(targets) - failed} of {len(targets)} web instances passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
