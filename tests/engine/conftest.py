import pytest

from repssd.data.synthetic import generate


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """6 training and 2 test images of the synthetic crowd set, 96 px wide (cheap to decode)."""
    root = tmp_path_factory.mktemp("tiny")
    generate(root, train=6, test=2, seed=5, size=96)
    return root


def tiny_args(data, out, *extra):
    return ["--model", "mb1_ssdlite", "--width-mult", "0.25", "--dataset", "synthetic", "--data-root", str(data),
            "--train-split", "train", "--batch-size", "2", "--workers", "0", "--output-dir", str(out),
            "--log-every", "1", "--checkpoint-every", "2", "--no-eval-at-end", *extra]
