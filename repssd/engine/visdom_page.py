"""A visdom server that runs with no internet, and its page seen through headless Chromium.

    python -m repssd.engine.visdom_page serve [--port 8097] [--env-path DIR]       # offline server
    python -m repssd.engine.visdom_page shot --port 8097 --env runs_demo --out dashboard.png
    python -m repssd.engine.visdom_page run --out docs/visdom_dashboard.png -- TRAIN.PY ARGS

``serve`` runs visdom's own entry point with every outgoing connection refused
(:mod:`repssd.engine.visdom_server`, which :func:`serve` starts too), so it proves that nothing is
fetched: it needs the assets ``repssd.engine.visdom_assets`` installs. ``shot`` loads an env's
page in Chromium (``--headless``, a virtual-time budget for the scripts) and writes a PNG. ``run`` does it all for
one training run: an offline server on a free port, ``train.py ARGS --visdom`` against it, the
page rendered; :func:`screenshot_run` is what the browser test and the README's screenshot both use.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .config import parse_config
from .loggers import visdom_env_name
from .trainer import Trainer
from .visdom_server import run_offline

__all__ = ["chromium", "render", "screenshot_run", "serve", "wait_until_up", "main"]


def chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, if any."""
    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


def serve(port: int, env_path: Path) -> subprocess.Popen:
    """Start ``python -m visdom.server`` on 127.0.0.1:``port`` with the network refused; its log
    goes to ``env_path/server.log`` (a pipe nobody reads would fill and stall the server)."""
    env_path.mkdir(parents=True, exist_ok=True)
    with (env_path / "server.log").open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "repssd.engine.visdom_server", "-port", str(port),
                                    "--hostname", "127.0.0.1", "-env_path", str(env_path)],
                                   stdout=log, stderr=subprocess.STDOUT)
    process.log = env_path / "server.log"
    return process


def wait_until_up(port: int, process: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Block until the server answers on ``port``; RuntimeError with its output if it died."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            log = getattr(process, "log", None)
            tail = log.read_text()[-2000:] if log is not None and log.is_file() else ""
            raise RuntimeError(f"visdom server exited ({process.returncode}): {tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"visdom server on port {port} did not answer within {timeout:.0f} s")


def render(url: str, screenshot: Path | None = None, width: int = 1400, height: int = 1000,
           budget_ms: int = 10000, timeout: float = 90.0) -> str:
    """The page's DOM after its scripts ran (``budget_ms`` of virtual time) in headless Chromium,
    and a PNG screenshot if asked. RuntimeError when no Chromium is installed."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("no chromium on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  f"--user-data-dir={profile}", f"--window-size={width},{height}", "--hide-scrollbars",
                  f"--virtual-time-budget={budget_ms}"]
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=timeout,
                             check=True).stdout
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=timeout,
                           check=True)
    return dom


def screenshot_run(train_args: list[str], png: Path, env_path: Path, height: int = 1000) -> str:
    """Train with ``train_args`` (train.py's options) posting to a fresh offline visdom server,
    then render the run's env in headless Chromium to ``png``; returns the page's DOM."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = serve(port, env_path)
    try:
        wait_until_up(port, process)
        config = parse_config([*train_args, "--visdom", "--visdom-server", "http://127.0.0.1",
                               "--visdom-port", str(port)])
        Trainer(config).fit()
        env = config.visdom_env or visdom_env_name(config.output_dir)
        return render(f"http://127.0.0.1:{port}/env/{env}", png, height=height)
    finally:
        process.terminate()
        process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repssd.engine.visdom_page", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run visdom's server offline on 127.0.0.1")
    run.add_argument("--port", type=int, default=8097)
    run.add_argument("--env-path", type=Path, default=Path.home() / ".visdom")
    shot = sub.add_parser("shot", help="screenshot an env's page with headless Chromium")
    shot.add_argument("--port", type=int, default=8097)
    shot.add_argument("--env", required=True)
    shot.add_argument("--out", type=Path, required=True)
    whole = sub.add_parser("run", help="train.py ARGS against a fresh offline server, then screenshot the env")
    whole.add_argument("--out", type=Path, required=True)
    whole.add_argument("--height", type=int, default=1800, help="browser window height in pixels")
    whole.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then train.py's options")
    opts = parser.parse_args(argv)
    if opts.command == "serve":
        run_offline(["-port", str(opts.port), "--hostname", "127.0.0.1", "-env_path", str(opts.env_path)])
        return 0
    try:
        if opts.command == "run":
            with tempfile.TemporaryDirectory() as env_path:
                screenshot_run([a for a in opts.train_args if a != "--"], opts.out, Path(env_path), opts.height)
        else:
            render(f"http://127.0.0.1:{opts.port}/env/{opts.env}", opts.out)
    except (RuntimeError, subprocess.SubprocessError) as err:
        print(f"visdom_page: {err}", file=sys.stderr)
        return 1
    print(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
