"""Fine-tuning the TF Object Detection API's SSDLite-MobileNetV2 (``ssdlite_mbv2_tf``) from an
imported checkpoint (``write_checkpoint``'s FILE.pth + FILE.json): every loss spec trains, the
weights are really loaded, --freeze keeps what it says, resume is exact, any input size (also
non-square) round-trips through config.json and load_model, and the checkpoint's post-processing
reaches config.json (with softmax scores) and eval.py."""
import json

import pytest
import torch

import eval as eval_cli
import train as train_cli
from repssd.convert import load_model
from repssd.convert.tf_graph import write_checkpoint
from repssd.engine.config import ConfigError, parse_config
from repssd.engine.trainer import Trainer
from repssd.models import build_model

from training_args import tiny_args

# what the TF-graph importer saves for an SSDLite graph (GRAPH_DEFAULTS, the TF OD API's config values)
IMPORTED_POSTPROCESS = {"score": "sigmoid", "nms_thresh": 0.6, "conf_thresh": 1e-8, "top_k": 100, "candidates": None,
                        "clip": "after"}
HEAD_WARNING = "classification heads are for another number of classes"


@pytest.fixture(scope="module", autouse=True)
def fast():
    """No loss plots (tests/engine/test_trainer.py covers them) and one thread: these tiny
    MobileNet steps run several times faster on a busy 2-core machine."""
    import repssd.engine.trainer as trainer_module
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_module, "plot_loss_curves", lambda *args, **kwargs: None)
        patch.setattr(trainer_module, "plot_diagnostics", lambda *args, **kwargs: None)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def importer_checkpoint(out, class_names, seed):
    """A randomly initialised ``ssdlite_mbv2_tf`` saved as the TF-graph importer saves one (at 300x300),
    with BatchNorm statistics that a freshly built model does not have."""
    torch.manual_seed(seed)
    model = build_model("ssdlite_mbv2_tf", len(class_names) + 1)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) * 0.2 - 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
    config = {"model": "ssdlite_mbv2_tf", "class_names": list(class_names), "image_size": [300, 300],
              "postprocess": dict(IMPORTED_POSTPROCESS),
              "source": {"file": "frozen_inference_graph.pb", "sha256": "0" * 64,
                         "format": "TF Object Detection API frozen graph", "tensors": 0}}
    return write_checkpoint(model.state_dict(), config, out)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Checkpoints for the synthetic set's classes (person, car) and for persons only."""
    folder = tmp_path_factory.mktemp("pretrained")
    return {"same": importer_checkpoint(folder / "person_car.pth", ["person", "car"], seed=1234),
            "person": importer_checkpoint(folder / "person.pth", ["person"], seed=4321)}


def finetune_args(data, out, weights, *extra):
    return tiny_args(data, out, "--model", "ssdlite_mbv2_tf", "--image-size", "64", "--weights", str(weights), *extra)


def trainer(data, out, weights, *extra) -> Trainer:
    return Trainer(parse_config(finetune_args(data, out, weights, *extra)))


def saved_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def logged(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("spec", ["multibox", "multibox+repgt", "multibox+repbox", "multibox+repgt+repbox"])
def test_every_loss_spec_fine_tunes_the_imported_model(tiny_data, pretrained, tmp_path, recwarn, spec):
    t = trainer(tiny_data, tmp_path, pretrained["same"], "--loss", spec, "--max-iter", "2")
    record = t.fit()
    assert not [w for w in recwarn if HEAD_WARNING in str(w.message)]  # same classes: every tensor loaded
    terms = {"loc", "conf", "loss"} | set(spec.split("+")[1:])
    assert terms <= set(record) and all(torch.isfinite(torch.tensor(record[k])) for k in terms)
    assert [r["iter"] for r in logged(tmp_path)] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logged(tmp_path))
    state = torch.load(tmp_path / "checkpoints" / "last.pth", weights_only=True)
    assert state["iteration"] == 2 and (tmp_path / "checkpoints" / "iter_2.pth").exists()
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == "ssdlite_mbv2_tf" and config["loss"] == spec
    assert config["weights"] == str(pretrained["same"])


@pytest.mark.parametrize("freeze, frozen", [("base", ("backbone",)), ("all-but-heads", ("backbone", "extras"))])
def test_weights_load_exactly_and_freeze_keeps_the_frozen_parameters(tiny_data, pretrained, tmp_path, freeze, frozen):
    weights = saved_state(pretrained["same"])
    t = trainer(tiny_data, tmp_path, pretrained["same"], "--max-iter", "2", "--lr", "0.01", "--freeze", freeze)
    # before training: every tensor is the checkpoint's, BatchNorm statistics included (a freshly
    # built model's running means are 0, the checkpoint's are not: loading is what made them equal)
    own = t.model.state_dict()
    assert set(own) == set(weights)
    for key, value in weights.items():
        assert torch.equal(own[key], value), key
    assert weights["backbone.conv.1.running_mean"].abs().min() > 0
    assert all(p.requires_grad == (name.split(".")[0] not in frozen) for name, p in t.model.named_parameters())
    t.fit()
    trained = saved_state(tmp_path / "checkpoints" / "last.pth")
    parameters = [name for name, _ in t.model.named_parameters()]
    for name in trained:  # parameters and BatchNorm statistics: a frozen part keeps both
        if name.split(".")[0] in frozen:
            assert torch.equal(trained[name], weights[name]), name  # bit for bit the checkpoint's
    for part in {"backbone", "extras", "head"} - set(frozen):
        assert any(not torch.equal(trained[n], weights[n]) for n in parameters if n.split(".")[0] == part), part
    # a backbone convolution of the trained model is still exactly the imported one
    assert torch.equal(t.model.backbone.blocks[3].depthwise[0].weight.detach(),
                       weights["backbone.blocks.3.depthwise.0.weight"])


def test_heads_for_another_class_count_start_fresh_with_a_warning(tiny_data, pretrained, tmp_path):
    weights = saved_state(pretrained["person"])  # 2 classes (background, person); the synthetic set has 3
    with pytest.warns(UserWarning, match=HEAD_WARNING):
        t = trainer(tiny_data, tmp_path, pretrained["person"], "--max-iter", "2")
    own = {k: v.clone() for k, v in t.model.state_dict().items()}
    fresh = [k for k in weights if weights[k].shape != own[k].shape]
    assert fresh and all(k.startswith("head.conf.") and ".1." in k for k in fresh)  # the class 1x1 convs only
    assert all(own[k].shape[0] == weights[k].shape[0] // 2 * 3 for k in fresh)  # 2 -> 3 class columns per anchor
    for key in set(weights) - set(fresh):  # everything else, the class branch's depthwise conv included
        assert torch.equal(own[key], weights[key]), key
    record = t.fit()
    assert torch.isfinite(torch.tensor(record["loss"])) and (tmp_path / "checkpoints" / "last.pth").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["class_names"] == ["person", "car"]
    assert config["postprocess"] == {**IMPORTED_POSTPROCESS, "score": "softmax"}
    model, _ = load_model(tmp_path / "checkpoints" / "last.pth")
    assert model.num_classes == 3


def test_resume_of_a_fine_tuning_run_is_exact(tiny_data, pretrained, tmp_path):
    extra = ("--loss", "multibox+repgt+repbox", "--max-iter", "4", "--lr", "0.005")
    straight = trainer(tiny_data, tmp_path / "a", pretrained["same"], *extra)
    straight.fit()
    first = trainer(tiny_data, tmp_path / "b", pretrained["same"], *extra)
    first.fit(stop_after=2)
    assert first.iteration == 2
    second = trainer(tiny_data, tmp_path / "b", pretrained["same"], *extra, "--resume", "auto")
    second.fit()
    assert second.iteration == 4
    resumed = second.model.state_dict()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed[key]), key
    a, b = logged(tmp_path / "a"), logged(tmp_path / "b")
    assert [r["iter"] for r in b] == [1, 2, 3, 4]
    for key in ("loc", "conf", "repgt", "repbox", "loss"):
        assert [r[key] for r in a] == [r[key] for r in b], key


@pytest.fixture(scope="module")
def non_square_run(tiny_data, pretrained, tmp_path_factory):
    """A 2-iteration fine-tuning run at 96x64 (width x height), anchors sized as on a 48 px side."""
    out = tmp_path_factory.mktemp("non_square") / "run"
    t = trainer(tiny_data, out, pretrained["same"], "--image-size", "96x64", "--anchor-reference", "48",
                "--max-iter", "2")
    t.fit()
    return t, out


def test_a_non_square_run_saves_its_size_and_load_model_rebuilds_it(non_square_run):
    t, out = non_square_run
    assert t.model.input_size == (96, 64) and tuple(t.image_size) == (96, 64)
    config = json.loads((out / "config.json").read_text())
    assert config["image_size"] == [96, 64]
    model, saved = load_model(out / "checkpoints" / "last.pth")
    assert model.input_size == (96, 64) and saved["image_size"] == [96, 64]
    assert saved["model_options"] == {"anchor_reference": 48.0} and model.spec.reference_size == 48.0
    assert torch.equal(model.priors, t.model.priors)
    x = torch.rand(2, 3, 64, 96)  # N, C, height, width
    with torch.no_grad():
        loc, conf = model(model.preprocess(x * 255))
        want = t.model.eval()(t.model.preprocess(x * 255))
    assert loc.shape == (2, model.priors.shape[0], 4) and conf.shape == (2, model.priors.shape[0], 3)
    square = build_model("ssdlite_mbv2_tf", 3, image_size=64)
    assert model.priors.shape[0] > square.priors.shape[0]  # the wider input has more columns of priors
    torch.testing.assert_close((loc, conf), want, rtol=0, atol=0)  # the trained weights, unchanged


def test_the_checkpoints_post_processing_with_softmax_reaches_config_and_eval(non_square_run, tmp_path,
                                                                             monkeypatch, capsys):
    t, out = non_square_run
    expected = {**IMPORTED_POSTPROCESS, "score": "softmax"}
    assert t.postprocess == expected
    assert json.loads((out / "config.json").read_text())["postprocess"] == expected
    seen = []
    real = eval_cli.predict_dataset

    def spy(model, dataset, *args, **kwargs):
        seen.append((model.input_size, kwargs))
        return real(model, dataset, *args, **kwargs)
    monkeypatch.setattr(eval_cli, "predict_dataset", spy)
    assert eval_cli.main(["--weights", str(out / "checkpoints" / "last.pth"), "--workers", "0", "--device", "cpu",
                          "--batch-size", "2", "--output-dir", str(tmp_path / "eval")]) == 0
    assert seen == [((96, 64), expected)]
    capsys.readouterr()
    # a flag still overrides the saved value
    assert eval_cli.main(["--weights", str(out / "checkpoints" / "last.pth"), "--workers", "0", "--device", "cpu",
                          "--nms", "0.3", "--output-dir", str(tmp_path / "eval2")]) == 0
    assert seen[-1][1] == {**expected, "nms_thresh": 0.3}


@pytest.mark.parametrize("model, size, message", [
    ("ssd300_vgg16", "512", "ssd300_vgg16 takes 300x300 inputs"),
    ("ssdlite_mbv2_tf", "32", "ssdlite_mbv2_tf needs inputs of at least 33x33 px, got 32x32"),
    ("ssdlite_mbv2_tf", "96x", "--image-size: image size '96x': expected S or WIDTHxHEIGHT"),
])
def test_an_image_size_the_model_cannot_take_is_one_line_and_status_2(tiny_data, tmp_path, capsys, model, size,
                                                                     message):
    argv = tiny_args(tiny_data, tmp_path / "run", "--model", model, "--image-size", size, "--max-iter", "2")
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("train.py: ")
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Trainer(parse_config(argv))


def test_freeze_bn_keeps_every_batchnorm_statistic(tiny_data, pretrained, tmp_path):
    weights = saved_state(pretrained["same"])
    trainer(tiny_data, tmp_path, pretrained["same"], "--max-iter", "2", "--lr", "0.01", "--freeze-bn").fit()
    trained = saved_state(tmp_path / "checkpoints" / "last.pth")
    statistics = [k for k in trained if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert statistics and all(torch.equal(trained[k], weights[k]) for k in statistics)
    assert not torch.equal(trained["backbone.conv.1.weight"], weights["backbone.conv.1.weight"])  # still trained


def test_wise_ft_keeps_the_asked_fraction_of_what_fine_tuning_changed(tiny_data, pretrained, tmp_path):
    extra = ("--max-iter", "2", "--lr", "0.01", "--workers", "0")
    trainer(tiny_data, tmp_path / "full", pretrained["same"], *extra).fit()
    trainer(tiny_data, tmp_path / "half", pretrained["same"], *extra, "--wise-ft", "0.25").fit()
    start = torch.load(pretrained["same"], map_location="cpu", weights_only=True)
    start = start.get("model", start)
    full, half = saved_state(tmp_path / "full/checkpoints/last.pth"), saved_state(tmp_path / "half/checkpoints/last.pth")
    moved = [k for k, v in full.items() if v.is_floating_point() and not torch.equal(v, start[k])]
    assert moved  # training changed something
    for key in moved:
        torch.testing.assert_close(half[key], start[key] + 0.25 * (full[key] - start[key]), atol=1e-6, rtol=1e-5)


def test_ignore_unlabelled_turns_the_starting_models_extra_detections_into_ignore_regions(tiny_data, pretrained,
                                                                                          tmp_path, capsys):
    from repssd.boxes import box_iou
    t = trainer(tiny_data, tmp_path, pretrained["same"], "--max-iter", "1", "--ignore-unlabelled", "0.01")
    assert "--ignore-unlabelled 0.01:" in capsys.readouterr().out
    extra = t.train_set.extra_ignore
    assert extra and t.unlabelled == sum(len(b) for b in extra.values())
    for index, boxes in extra.items():
        known = t.train_set.records[index].boxes
        assert box_iou(boxes, torch.tensor(known).reshape(-1, 4)).max() < 0.3  # nobody annotated there
        _, target = t.train_set.load(index)
        t.train_set.transform = None
        _, seen = t.train_set[index]
        assert len(seen["boxes"]) == len(target["boxes"]) + len(boxes) and seen["ignore"][-len(boxes):].all()
    with pytest.raises(ConfigError, match="needs --weights"):
        parse_config(tiny_args(tiny_data, tmp_path / "b", "--max-iter", "1", "--ignore-unlabelled", "0.3"))
    with pytest.raises(ConfigError, match="--wise-ft"):
        parse_config(finetune_args(tiny_data, tmp_path / "c", pretrained["same"], "--max-iter", "1", "--wise-ft", "1.5"))


def test_add_ignore_regions_grows_every_per_box_entry():
    from repssd.data.base import add_ignore_regions
    target = {"boxes": torch.tensor([[0.0, 0, 10, 20]]), "labels": torch.tensor([1]), "difficult": torch.tensor([False]),
              "ignore": torch.tensor([False]), "visible": torch.tensor([[0.0, 0, 10, 10]]),
              "visibility": torch.tensor([0.5]), "masks": torch.ones(1, 30, 40, dtype=torch.bool)}
    out = add_ignore_regions(target, torch.tensor([[20.0, 5, 30, 25], [1, 1, 2, 2]]))
    assert out["boxes"].shape == (3, 4) and out["ignore"].tolist() == [False, True, True]
    assert out["labels"].tolist() == [1, 1, 1] and out["visibility"].tolist() == [0.5, 1.0, 1.0]
    assert out["masks"].shape == (3, 30, 40) and not out["masks"][1:].any() and out["masks"][0].all()
    torch.testing.assert_close(out["visible"][1], torch.tensor([20.0, 5, 30, 25]))


def test_folded_batchnorm_weights_need_freeze_bn(tiny_data, tmp_path, capsys):
    """A TFLite import (``"batchnorm": "folded"``): batch statistics would renormalise every folded
    convolution, so training without --freeze-bn is refused in one line; with it, the identity
    BatchNorm stays the identity and the run trains."""
    torch.manual_seed(0)
    model = build_model("ssd_mbv2_tf", 3)
    config = {"model": "ssd_mbv2_tf", "class_names": ["person", "car"], "image_size": [300, 300],
              "postprocess": dict(IMPORTED_POSTPROCESS), "batchnorm": "folded", "source": {"file": "m.tflite"}}
    weights = write_checkpoint(model.state_dict(), config, tmp_path / "folded.pth")
    args = tiny_args(tiny_data, tmp_path / "run", "--model", "ssd_mbv2_tf", "--image-size", "64",
                     "--weights", str(weights), "--max-iter", "2")
    with pytest.raises(ConfigError, match="BatchNorm is folded .* fine-tune them with --freeze-bn"):
        Trainer(parse_config(args))
    assert train_cli.main(args) == 2
    err = capsys.readouterr().err
    assert "folded.pth: BatchNorm is folded" in err and err.count("\n") == 1
    t = Trainer(parse_config([*args, "--freeze-bn"]))
    t.fit()
    state = saved_state(tmp_path / "run" / "checkpoints" / "last.pth")
    for key, value in model.state_dict().items():
        if key.endswith(("running_mean", "running_var")):
            assert torch.equal(state[key], value), key
