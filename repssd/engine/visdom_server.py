"""visdom's server with no internet: ``python -m repssd.engine.visdom_server [visdom.server's options]``.

It runs visdom's own entry point (``python -m visdom.server``, which first checks its web assets)
with every outgoing connection refused, so it proves that nothing is fetched: it needs the assets
``repssd.engine.visdom_assets`` installs. A module of its own, without torch, so that the server
:func:`repssd.engine.visdom_page.serve` starts is up in the time visdom itself takes.
"""
from __future__ import annotations

import runpy
import socket
import sys

__all__ = ["LOCAL", "run_offline", "main"]

LOCAL = ("127.0.0.1", "localhost", "::1")


def run_offline(argv: list[str]) -> None:
    """visdom's server entry point with ``argv`` and outgoing connections refused (everything but loopback)."""
    connect = socket.socket.connect

    def loopback_only(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in LOCAL:
            raise OSError(f"offline: refused a connection to {address}")
        return connect(self, address)
    socket.socket.connect = loopback_only
    sys.argv = ["visdom.server", *argv]
    runpy.run_module("visdom.server", run_name="__main__")


def main(argv: list[str] | None = None) -> int:
    run_offline(sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
