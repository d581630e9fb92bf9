"""The greeting hello-server answers with."""


def greet(greeting, path):
    """`greeting`, addressed to the last segment of the request path if there is one."""
    name = path.strip("/").rsplit("/", 1)[-1]
    return f"{greeting}, {name}!\n" if name else f"{greeting}!\n"
