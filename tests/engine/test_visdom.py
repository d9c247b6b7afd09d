"""Loss curves reach a real visdom server (started here on 127.0.0.1, stopped after)."""
import subprocess
import sys
import time

import pytest

from repssd.engine.config import parse_config
from repssd.engine.trainer import Trainer

from conftest import free_port
from training_args import tiny_args

visdom = pytest.importorskip("visdom")


@pytest.fixture
def visdom_server(tmp_path):
    port = free_port()
    # `python -m visdom.server` downloads its web scripts first and dies offline; the data API
    # works without them
    process = subprocess.Popen([sys.executable, "-c", "from visdom.server.run_server import main; main()",
                                "-port", str(port), "--hostname", "127.0.0.1", "-env_path", str(tmp_path / "env")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = None
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            client = visdom.Visdom(server="http://127.0.0.1", port=port, raise_exceptions=False,
                                   use_incoming_socket=False)
            if client.check_connection(timeout_seconds=1):
                break
            time.sleep(0.5)
        else:
            pytest.fail("visdom server did not start")
        yield port, client
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_each_loss_term_gets_a_curve(tiny_data, tmp_path, visdom_server):
    port, client = visdom_server
    config = parse_config(tiny_args(tiny_data, tmp_path, "--loss", "multibox+repgt", "--max-iter", "3", "--visdom",
                                    "--visdom-port", str(port), "--visdom-env", "test"))
    Trainer(config).fit()
    import json
    for term in ("loss", "loc", "conf", "repgt", "lr"):
        data = json.loads(client.get_window_data(win=f"train/{term}", env="test"))
        assert data["content"]["data"][0]["x"] == [1, 2, 3], term


def test_an_unreachable_server_is_a_warning(tiny_data, tmp_path):
    port = free_port()  # nothing listens there
    config = parse_config(tiny_args(tiny_data, tmp_path, "--max-iter", "2", "--visdom", "--visdom-port", str(port)))
    with pytest.warns(UserWarning, match="unreachable"):
        record = Trainer(config).fit()
    assert record["iter"] == 2
