"""The visdom dashboard: curves, diagnostics, eval metrics and detections reach a real visdom
server, started here offline on 127.0.0.1 (and stopped after), and a real headless Chromium
renders the page from the locally installed assets."""
import json
import shutil

import pytest

from repssd.engine.config import parse_config
from repssd.engine.loggers import VisdomLogger, visdom_env_name
from repssd.engine.trainer import Trainer
from repssd.engine import visdom_assets, visdom_page

from conftest import free_port
from training_args import tiny_args

visdom = pytest.importorskip("visdom")
needs_assets = pytest.mark.skipif(bool(visdom_assets.missing_assets()),
                                  reason="visdom's web assets are not installed (npm was missing at install)")


@pytest.fixture
def visdom_server(tmp_path):
    """`python -m visdom.server` itself, with every outgoing connection refused."""
    if visdom_assets.missing_assets():
        pytest.skip("visdom's web assets are not installed: its server would try to download them")
    port = free_port()
    process = visdom_page.serve(port, tmp_path / "visdom_env")
    try:
        visdom_page.wait_until_up(port, process)
        yield port, visdom.Visdom(server="http://127.0.0.1", port=port, raise_exceptions=True,
                                  use_incoming_socket=False)
    finally:
        process.terminate()
        process.wait(timeout=10)


def trace(client, env, win, name=None):
    data = json.loads(client.get_window_data(win=win, env=env))
    traces = data["content"]["data"]
    return next(t for t in traces if name is None or t.get("name") == name)


def test_install_puts_every_asset_in_place_and_stamps_the_build():
    if shutil.which("npm") is None:
        pytest.skip("npm not installed")
    assert visdom_assets.missing_assets() == []
    static = visdom_assets.static_dir()
    assert (static / "js" / "plotly-plotly.min.js").stat().st_size > 1_000_000
    assert (static / "version.built").read_text() == visdom.__version__


def test_without_npm_the_install_says_so_in_one_line_and_succeeds(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert visdom_assets.main(["--static", str(tmp_path / "static")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "npm not found" in err and "fetch its web scripts itself" in err
    assert not (tmp_path / "static").exists()


def test_the_dashboard_has_terms_diagnostics_eval_and_detections_and_resume_appends(tiny_data, tmp_path,
                                                                                   visdom_server):
    port, client = visdom_server
    out = tmp_path / "runs" / "dash"
    common = ("--loss", "multibox+repgt", "--visdom", "--visdom-port", str(port), "--eval-every", "2",
              "--log-every", "1")
    Trainer(parse_config(tiny_args(tiny_data, out, *common, "--max-iter", "2"))).fit()
    Trainer(parse_config(tiny_args(tiny_data, out, *common, "--max-iter", "4", "--resume", "auto"))).fit()
    env = visdom_env_name(out)
    assert env.endswith("runs_dash") and "/" not in env
    for term in ("loss", "loc", "conf", "repgt", "lr"):
        assert trace(client, env, f"train/{term}")["x"] == [1, 2, 3, 4], term  # appended after the resume
    assert trace(client, env, "diagnostics/grad_loc", "repgt")["x"] == [1, 2, 3, 4]
    assert trace(client, env, "diagnostics/grad_conf", "conf")["y"][-1] > 0
    assert trace(client, env, "diagnostics/repgt_iog", "repgt_iog_mean")["x"] == [1, 2, 3, 4]
    assert trace(client, env, "eval", "map")["x"] == [2, 4] and trace(client, env, "eval", "crowd_map")
    windows = json.loads(client.get_window_data(env=env))
    assert "detections" in windows and "run" in windows
    assert windows["detections"]["type"] == "image" and windows["run"]["type"] == "text"
    assert "iteration 4: mAP" in json.dumps(windows["detections"]["content"])  # replaced at the last eval
    assert len([w for w in windows if w == "train/loss"]) == 1


def test_window_ids_group_the_diagnostics():
    assert VisdomLogger.window_of("grad/repgt/loc") == ("diagnostics/grad_loc", "repgt")
    assert VisdomLogger.window_of("diag/repgt_iog_p99") == ("diagnostics/repgt_iog", "repgt_iog_p99")
    assert VisdomLogger.window_of("loss") == ("train/loss", None)
    assert visdom_env_name("runs/a b/seed0") == "runs_a_b_seed0"


def test_an_unreachable_server_is_a_warning(tiny_data, tmp_path):
    port = free_port()  # nothing listens there
    config = parse_config(tiny_args(tiny_data, tmp_path, "--max-iter", "2", "--visdom", "--visdom-port", str(port)))
    with pytest.warns(UserWarning, match="unreachable"):
        record = Trainer(config).fit()
    assert record["iter"] == 2


@pytest.mark.skipif(visdom_page.chromium() is None, reason="no chromium (Debian: apt-get install chromium)")
@needs_assets
def test_a_real_browser_renders_the_dashboard_offline(tiny_data, tmp_path):
    """The code path of the README's screenshot: offline server, a 3-iteration run, Chromium."""
    shot = tmp_path / "dashboard.png"
    dom = visdom_page.screenshot_run(tiny_args(tiny_data, tmp_path / "run", "--loss", "multibox+repgt", "--max-iter",
                                               "3", "--eval-every", "3"), shot, tmp_path / "visdom_env")
    for title in ("train/loss", "train/repgt", "gradient norm w.r.t. loc", "evaluation (test split)",
                  "detections on fixed test images"):
        assert title in dom, title
    assert dom.count('class="plot-container plotly"') >= 5  # plotly drew the curve windows
    assert 'class="scatterlayer' in dom  # with their traces
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
