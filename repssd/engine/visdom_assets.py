"""Put visdom's web page assets in place from the npm registry, so its server runs offline.

    python -m repssd.engine.visdom_assets [--cache DIR] [--static DIR]

``python -m visdom.server`` downloads jquery, bootstrap, react, plotly, d3, MathJax and a few
more from CDNs at its first start (``visdom.server.build.download_scripts``); offline it fails
and the page stays blank. This fetches the same files, at the versions visdom pins, as npm
tarballs (``npm pack``; plotly through its npm distribution ``plotly.js-dist-min`` of the same
version, d3 v3 as ``d3@3.5.17``), copies them into the installed visdom package's ``static/``
folder under the names visdom expects, and writes visdom's build stamp
(``static/version.built``), after which visdom's own check finds everything present and fetches
nothing. The Makefile's install step runs it; without npm it says so in one line and the install
goes on (visdom then fetches its scripts itself at its first online start).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

try:  # optional: a source package that `make install` builds (see the Makefile); the CLI says so in one line
    import visdom
    from visdom.utils.shared_utils import get_visdom_path
except ImportError:
    visdom = None

__all__ = ["ASSETS", "MATHJAX_FILES", "install", "missing_assets", "static_dir", "main"]

# (npm package, version, file in the tarball's package/, destination under static/), as
# visdom 0.2.4's download_scripts names them
ASSETS = [
    ("jquery", "3.1.1", "dist/jquery.min.js", "js/jquery.min.js"),
    ("bootstrap", "3.3.7", "dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
    ("bootstrap", "3.3.7", "dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
    *[("bootstrap", "3.3.7", f"dist/fonts/glyphicons-halflings-regular.{ext}", f"fonts/glyphicons-halflings-regular.{ext}")
      for ext in ("eot", "woff2", "woff", "ttf", "svg")],
    # visdom checks for the SVG font under its URL's name, fragment included
    ("bootstrap", "3.3.7", "dist/fonts/glyphicons-halflings-regular.svg",
     "fonts/glyphicons-halflings-regular.svg#glyphicons_halflingsregular"),
    ("react", "16.2.0", "umd/react.production.min.js", "js/react-react.min.js"),
    ("react-dom", "16.2.0", "umd/react-dom.production.min.js", "js/react-dom.min.js"),
    ("react-modal", "3.1.10", "dist/react-modal.min.js", "js/react-modal.min.js"),
    ("plotly.js-dist-min", "2.11.1", "plotly.min.js", "js/plotly-plotly.min.js"),
    ("sjcl", "1.0.7", "sjcl.js", "js/sjcl.js"),
    ("layout-bin-packer", "1.4.0", "dist/layout-bin-packer.js.map", "js/layout-bin-packer.js.map"),
    ("layout-bin-packer", "1.4.0", "dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
    ("d3", "3.5.17", "d3.min.js", "js/d3.v3.min.js"),
    ("d3-selection-multi", "1.0.1", "build/d3-selection-multi.js", "js/d3-selection-multi.v1.js"),
    ("save-svg-as-png", "1.4.17", "lib/saveSvgAsPng.js", "js/saveSvgAsPng.js"),
    ("react-resizable", "1.4.6", "css/styles.css", "css/react-resizable-styles.css"),
    ("react-grid-layout", "0.16.3", "css/styles.css", "css/react-grid-layout-styles.css"),
    ("classnames", "2.2.5", "index.js", "fonts/classnames"),
]
# the MathJax 2.7.5 files visdom fetches from cdnjs, under static/js/mathjax/2.7.5/
MATHJAX_FILES = ["MathJax.js", "config/Safe.js", "config/TeX-AMS-MML_HTMLorMML.js", "extensions/Safe.js",
                 "jax/output/SVG/fonts/TeX/fontdata.js", "jax/output/SVG/jax.js",
                 "jax/output/SVG/fonts/TeX/Size1/Regular/Main.js", "jax/output/SVG/config.js"]
ASSETS += [("mathjax", "2.7.5", path, f"js/mathjax/2.7.5/{path}") for path in MATHJAX_FILES]


def static_dir() -> Path:
    """The installed visdom package's ``static/`` folder (what its server serves); RuntimeError
    when visdom is not installed."""
    if visdom is None:
        raise RuntimeError("visdom is not installed (make install builds it)")
    return Path(get_visdom_path("static"))


def missing_assets(static: Path | None = None) -> list[str]:
    """Destinations (under ``static/``) not in place yet, and the build stamp if it is stale."""
    static = static or static_dir()
    missing = [dest for *_, dest in ASSETS if not (static / dest).is_file()]
    stamp = static / "version.built"
    if not stamp.is_file() or stamp.read_text().strip() != visdom.__version__:
        missing.append("version.built")
    return missing


def _pack(specs: list[str], cache: Path) -> dict[str, Path]:
    """``npm pack`` every ``name@version`` not in ``cache`` yet; tarball per spec."""
    cache.mkdir(parents=True, exist_ok=True)
    tarball = {spec: cache / f"{spec.split('@')[0]}-{spec.split('@')[1]}.tgz" for spec in specs}
    needed = [spec for spec, path in tarball.items() if not path.is_file()]
    if needed:
        subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(cache), *needed], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600)
    return tarball


def install(static: Path | None = None, cache: Path | None = None) -> list[str]:
    """Copy every asset into ``static`` (default: the installed visdom's) and write the build
    stamp; returns what was written. Raises ``RuntimeError`` (one line) when npm is missing or
    fails, or a tarball lacks a file, or visdom is not installed."""
    static = static_dir() if static is None or visdom is None else static
    cache = cache or Path.home() / ".cache" / "repssd" / "visdom-npm"
    if shutil.which("npm") is None:
        raise RuntimeError("npm not found")
    specs = sorted({f"{name}@{version}" for name, version, _, _ in ASSETS})
    try:
        tarballs = _pack(specs, cache)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        detail = (getattr(err, "stderr", "") or "").strip().splitlines()
        raise RuntimeError(f"npm pack failed ({detail[-1] if detail else err})") from None
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:  # only the files wanted (MathJax's tarball holds thousands)
            wanted = {f"package/{source}" for name, version, source, _ in ASSETS if f"{name}@{version}" == spec}
            with tarfile.open(tarballs[spec]) as archive:
                members = [m for m in archive.getmembers() if m.name in wanted]
                archive.extractall(Path(tmp) / spec, members=members, filter="data")
        for name, version, source, dest in ASSETS:
            origin = Path(tmp) / f"{name}@{version}" / "package" / source
            if not origin.is_file():
                raise RuntimeError(f"{tarballs[f'{name}@{version}']}: no package/{source}")
            target = static / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(origin, target)
            written.append(dest)
    (static / "version.built").write_text(visdom.__version__)
    return written + ["version.built"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repssd.engine.visdom_assets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--static", type=Path, help="visdom's static folder (default: the installed package's)")
    parser.add_argument("--cache", type=Path, help="where npm tarballs are kept (default ~/.cache/repssd/visdom-npm)")
    opts = parser.parse_args(argv)
    try:
        written = install(opts.static, opts.cache)
    except RuntimeError as err:  # the install goes on: visdom can still fetch its scripts online
        print(f"visdom assets not installed ({err}): visdom will fetch its web scripts itself at its first "
              "online start", file=sys.stderr)
        return 0
    print(f"visdom assets: {len(written)} files in {opts.static or static_dir()} (offline-ready)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
