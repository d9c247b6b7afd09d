"""Command-line arguments of a tiny, fast training run for the engine tests."""


def tiny_args(data, out, *extra):
    return ["--model", "mb1_ssdlite", "--width-mult", "0.25", "--dataset", "synthetic", "--data-root", str(data),
            "--train-split", "train", "--batch-size", "2", "--workers", "0", "--output-dir", str(out),
            "--log-every", "1", "--checkpoint-every", "2", "--no-eval-at-end", *extra]
