"""Training: every loss spec runs, loss falls, resume is exact (even after a kill), NaN handling,
2-process DDP, visdom curves, CLI errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import train as train_cli
from repssd.data import SSDTestTransform
from repssd.engine.config import parse_config
from repssd.engine.trainer import Trainer, TrainingError

from conftest import free_port
from training_args import tiny_args

ROOT = Path(__file__).resolve().parents[2]


def trainer(data, out, *extra) -> Trainer:
    return Trainer(parse_config(tiny_args(data, out, *extra)))


def weights_of(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("spec", ["multibox", "multibox+repgt", "multibox+repbox", "multibox+repgt+repbox"])
def test_every_loss_spec_trains_and_logs_each_term(tiny_data, tmp_path, spec):
    t = trainer(tiny_data, tmp_path, "--loss", spec, "--max-iter", "3")
    record = t.fit()
    terms = {"loc", "conf", "loss"} | set(spec.split("+")[1:])
    assert terms <= set(record) and all(torch.isfinite(torch.tensor(record[k])) for k in terms)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines] == [1, 2, 3] and terms <= set(lines[0]) and "lr" in lines[0]
    assert (tmp_path / "loss.png").stat().st_size > 1000 and (tmp_path / "log.csv").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["loss"] == spec and config["class_names"] == ["person", "car"]
    assert (tmp_path / "checkpoints" / "last.pth").exists() and (tmp_path / "checkpoints" / "iter_2.pth").exists()


def test_diagnostics_gradient_norms_and_repgt_iog_are_logged(tiny_data, tmp_path):
    t = trainer(tiny_data, tmp_path, "--loss", "multibox+repgt+repbox", "--max-iter", "4", "--loss-warmup", "2",
                "--log-every", "1")
    t.fit()
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    first, last = lines[0], lines[-1]
    for key in ("grad/loc/loc", "grad/conf/conf", "grad/repgt/loc", "grad/repbox/loc", "grad/loss/loc",
                "grad/loss/conf", "diag/repgt_iog_mean", "diag/repgt_iog_p99", "diag/repgt_iog_ge90"):
        assert key in last and torch.isfinite(torch.tensor(last[key]))
    assert "grad/loc/conf" not in last  # the Smooth-L1 of the offsets does not reach the logits
    # iteration 1 runs at warm-up position 0: the repulsion terms weigh nothing yet
    assert first["grad/repgt/loc"] == 0.0 and last["grad/repgt/loc"] > 0
    # the total's gradient is the sum of the terms' (triangle inequality on the norms)
    parts = [last[f"grad/{k}/loc"] for k in ("loc", "repgt", "repbox")]
    assert last["grad/loss/loc"] <= sum(parts) * (1 + 1e-5)
    assert last["grad/loss/conf"] == pytest.approx(last["grad/conf/conf"], rel=1e-5)
    assert 0 <= last["diag/repgt_iog_ge90"] <= 1 and last["diag/repgt_iog_mean"] <= last["diag/repgt_iog_p99"] + 1e-6
    assert (tmp_path / "diagnostics.png").stat().st_size > 1000
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert "grad/repgt/loc" in header and "diag/repgt_iog_mean" in header


def test_no_diagnostics_leaves_the_log_to_the_loss_terms(tiny_data, tmp_path):
    trainer(tiny_data, tmp_path, "--loss", "multibox+repgt", "--max-iter", "2", "--no-diagnostics").fit()
    last = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert not [k for k in last if "/" in k] and "repgt" in last


def test_loss_goes_down_on_a_tiny_overfit(tiny_data, tmp_path):
    t = trainer(tiny_data, tmp_path, "--loss", "multibox+repgt", "--max-iter", "40", "--lr", "0.01",
                "--milestones", "", "--warmup", "5", "--weight-decay", "0")
    t.train_set.records = t.train_set.records[:2]  # the same two images again and again,
    t.train_set.transform = SSDTestTransform(300)  # without augmentation
    t.fit()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_resume_is_exact(tiny_data, tmp_path):
    extra = ("--loss", "multibox+repgt+repbox", "--max-iter", "4", "--lr", "0.005")
    straight = trainer(tiny_data, tmp_path / "a", *extra)
    straight.fit()
    first = trainer(tiny_data, tmp_path / "b", *extra)
    first.fit(stop_after=2)
    assert first.iteration == 2
    second = trainer(tiny_data, tmp_path / "b", *extra, "--resume", "auto")
    second.fit()
    assert second.iteration == 4
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    logged = [json.loads(line)["iter"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]


def test_killed_process_resumes_to_the_same_weights(tiny_data, tmp_path):
    args = tiny_args(tiny_data, tmp_path / "killed", "--max-iter", "8", "--lr", "0.005", "--checkpoint-every", "2")
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "checkpoints" / "iter_4.pth").exists():
        assert process.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = Trainer(parse_config(args + ["--resume", "auto"]))
    assert resumed.fit() is not None and resumed.iteration == 8
    straight = trainer(tiny_data, tmp_path / "straight", "--max-iter", "8", "--lr", "0.005")
    straight.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_nonfinite_loss_stops_with_the_last_good_checkpoint_intact(tiny_data, tmp_path):
    t = trainer(tiny_data, tmp_path, "--max-iter", "6")
    real = t.criterion.forward

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        return {**out, "loss": out["loss"] * float("nan")} if t.iteration == 3 else out
    t.criterion.forward = poisoned
    with pytest.raises(TrainingError, match="non-finite loss at iteration 3 .*last.pth"):
        t.fit()
    state = torch.load(tmp_path / "checkpoints" / "last.pth", weights_only=True)
    assert state["iteration"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values()
                                            if v.is_floating_point())


def test_skip_nonfinite_counts_and_goes_on(tiny_data, tmp_path):
    t = trainer(tiny_data, tmp_path, "--max-iter", "4", "--skip-nonfinite")
    real = t.criterion.forward
    t.criterion.forward = lambda *a, **k: ({**(o := real(*a, **k)), "loss": o["loss"] * float("nan")}
                                           if t.iteration in (1, 2) else real(*a, **k))
    record = t.fit()
    assert t.iteration == 4 and t.skipped == 2 and record["skipped"] == 2


def test_amp_bfloat16_on_cpu_trains(tiny_data, tmp_path):
    record = trainer(tiny_data, tmp_path, "--max-iter", "2", "--amp").fit()
    assert torch.isfinite(torch.tensor(record["loss"]))


def test_fine_tune_from_a_checkpoint_and_freeze(tiny_data, tmp_path):
    first = trainer(tiny_data, tmp_path / "a", "--max-iter", "2")
    first.fit()
    t = trainer(tiny_data, tmp_path / "b", "--max-iter", "2", "--weights", str(tmp_path / "a/checkpoints/last.pth"),
                "--freeze", "all-but-heads", "--freeze-iters", "1")
    before = weights_of(t.model)
    assert not any(p.requires_grad for p in t.model.backbone.parameters())
    t.fit()
    after = t.model.state_dict()
    # frozen for iteration 1, trained in iteration 2: the backbone moved only once (it did move)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("backbone.") and "weight" in k)
    assert all(p.requires_grad for p in t.model.parameters())


def _ddp_worker(rank, world, port, data, out, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    t = trainer(data, out, "--loss", "multibox+repgt", "--max-iter", "3")
    t.fit()
    # parameters; BatchNorm running statistics stay per process until DDP broadcasts rank 0's at
    # the next forward
    results[rank] = torch.cat([p.detach().flatten() for p in t.model.parameters()]).tolist()
    torch.distributed.destroy_process_group()


def test_two_process_ddp_ends_with_identical_weights(tiny_data, tmp_path):
    port = free_port()
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, port, str(tiny_data), str(tmp_path), results), nprocs=2)
    assert results[0] == results[1]
    assert (tmp_path / "checkpoints" / "last.pth").exists()
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in logged] == [1, 2, 3]  # rank 0 alone writes


def _spy_on_matching(t, seen):
    """Record, for each criterion call, the ignore mask it got and how many priors it ignored."""
    from repssd import matcher
    real_match = matcher.match

    def recording(*args, **kwargs):
        result = real_match(*args, **kwargs)
        ignore = args[5] if len(args) > 5 else kwargs.get("gt_ignore")
        seen.append((ignore, None if result.ignored is None else int(result.ignored.sum())))
        return result
    return recording


@pytest.mark.parametrize("flag, handled", [([], True), (["--no-ignore-regions"], False)])
def test_crowdhuman_training_keeps_mask_regions_out_of_the_confidence_loss(tiny_data, tmp_path, monkeypatch,
                                                                         flag, handled):
    """The synthetic set's CrowdHuman files mark cars as "mask" regions: they reach the
    criterion as gt_ignore and the priors inside them are ignored (unless --no-ignore-regions)."""
    import repssd.losses.criterion as criterion_module
    seen = []
    t = trainer(tiny_data, tmp_path, "--dataset", "crowdhuman", "--data-root", str(tiny_data / "crowdhuman"),
                "--max-iter", "3", *flag)
    monkeypatch.setattr(criterion_module, "match", _spy_on_matching(t, seen))
    t.fit()
    assert list(t.classes) == ["person"] and len(seen) == 3
    if handled:
        assert all(ignore is not None and ignore.any() for ignore, _ in seen)
        assert sum(count for _, count in seen) > 0  # priors on the cars are neither positive nor negative
    else:
        assert all(ignore is None and count is None for ignore, count in seen)
    assert json.loads((tmp_path / "config.json").read_text())["ignore_regions"] is handled


def test_voc_difficult_objects_are_left_out_of_training_unless_kept(tiny_data, tmp_path):
    """ssd.pytorch's treatment: difficult objects are dropped from the training targets."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, symlinks=True)
    xml = data / "Annotations" / "train_000000.xml"
    text = xml.read_text()
    xml.write_text(text.replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    objects = text.count("<object>")
    dropped = trainer(data, tmp_path / "a", "--max-iter", "1")
    kept = trainer(data, tmp_path / "b", "--max-iter", "1", "--keep-difficult")
    assert len(dropped.train_set.records[0].boxes) == objects - 1
    assert len(kept.train_set.records[0].boxes) == objects and sum(kept.train_set.records[0].difficult) == 1


def test_sync_bn_converts_batchnorm_under_ddp_and_says_why_not_elsewhere(tiny_data, tmp_path):
    from repssd.engine.config import ConfigError
    from repssd.engine.distributed import DistInfo
    with pytest.warns(UserWarning, match="--sync-bn has no effect without torchrun"):
        t = trainer(tiny_data, tmp_path, "--max-iter", "1", "--sync-bn")
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in t.model.modules())
    batchnorms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in t.model.modules())
    keys = set(t.model.state_dict())
    assert batchnorms > 0  # MobileNet trains with BatchNorm
    t.dist = DistInfo(rank=0, world_size=2)  # as under torchrun with 2 processes
    with pytest.raises(ConfigError, match="--sync-bn needs CUDA devices"):
        t._convert_sync_bn()
    t.device = torch.device("cuda")  # the conversion itself needs no GPU
    t._convert_sync_bn()
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in t.model.modules()) == batchnorms
    assert set(t.model.state_dict()) == keys  # checkpoints load into BatchNorm models as before


def _sync_bn_worker(rank, world, port, data, out, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    t = trainer(data, out, "--max-iter", "2", "--sync-bn", "--device", f"cuda:{rank}")
    t.fit()
    bn = [m for m in t.model.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    results[rank] = (len(bn), bn[0].running_mean.tolist())
    torch.distributed.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_sync_bn_gives_every_process_the_same_batchnorm_statistics(tiny_data, tmp_path):
    port = free_port()
    results = mp.Manager().dict()
    mp.spawn(_sync_bn_worker, args=(2, port, str(tiny_data), str(tmp_path), results), nprocs=2)
    assert results[0][0] > 0
    assert results[0][1] == pytest.approx(results[1][1])  # synchronised statistics, different batches


@pytest.mark.parametrize("args, message", [
    (["--max-iter", "2", "--model", "ssd301"], "unknown --model 'ssd301'"),
    (["--max-iter", "2", "--data-root", "/nonexistent/data"], "/nonexistent/data: data root does not exist"),
    (["--loss", "multibox+repulsion", "--max-iter", "2"], "unknown loss term 'repulsion'"),
    (["--loss-weights", "repgt:1", "--max-iter", "2"], "bad loss weight"),
    (["--max-iter", "2", "--workers", "-1"], "--workers must be 0 or more, got -1"),
    pytest.param(["--max-iter", "2", "--device", "cuda"], "--device cuda: no CUDA device on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
    ([], "give exactly one of --max-iter and --epochs"),
])
def test_cli_errors_are_one_line_with_status_2(tiny_data, tmp_path, capsys, args, message):
    argv = tiny_args(tiny_data, tmp_path, *args)
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_config_file_supplies_defaults_and_flags_override(tiny_data, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss: multibox+repbox\nmax_iter: 7\nlr: 0.02\n")
    config = parse_config(tiny_args(tiny_data, tmp_path, "--config", str(path), "--lr", "0.05"))
    assert config.loss == "multibox+repbox" and config.max_iter == 7 and config.lr == 0.05
    path.write_text("losses: multibox\n")
    with pytest.raises(ValueError, match="unknown option\\(s\\) losses"):
        parse_config(tiny_args(tiny_data, tmp_path, "--config", str(path)))


def test_end_of_run_evaluation_without_crowd_objects_reports_not_applicable(tiny_data, tmp_path, capsys):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, symlinks=True)
    first = (data / "ImageSets/Main/test.txt").read_text().split()[0]
    (data / "ImageSets/Main/test.txt").write_text(first + "\n")
    xml = data / "Annotations" / f"{first}.xml"
    xml.write_text(xml.read_text().split("<object>")[0] + "</annotation>\n")  # no object at all
    record = trainer(data, tmp_path / "run", "--max-iter", "1", "--eval-at-end").fit()
    assert record["eval/crowd_map"] is None
    assert "crowd mAP n/a (0 crowd boxes)" in capsys.readouterr().out
    logged = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert logged[-1]["eval/crowd_map"] is None


def test_a_fresh_run_never_lands_on_another(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main(tiny_args(tiny_data, out, "--max-iter", "4")) == 0
    before = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    assert "iter_4.pth" in before and "iter_2.pth" in before
    capsys.readouterr()
    # the same folder again, without --resume: refused in one line, nothing touched
    assert train_cli.main(tiny_args(tiny_data, out, "--max-iter", "2")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run" in err and "--resume auto" in err and "--output-dir" in err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()} == before
    # --overwrite clears it first: no iter_4.pth of the old run left beside the new one
    assert train_cli.main(tiny_args(tiny_data, out, "--max-iter", "2", "--overwrite")) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["iter_2.pth", "last.pth"]
    # resuming is what the folder is for; a folder of other files is not a run
    assert train_cli.main(tiny_args(tiny_data, out, "--max-iter", "3", "--resume", "auto")) == 0
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("x")
    assert train_cli.main(tiny_args(tiny_data, other, "--max-iter", "1")) == 0 and (other / "todo.txt").exists()


@pytest.fixture
def finished_run(tiny_data, tmp_path):
    """A 4-iteration run with iter_2.pth, iter_4.pth and last.pth."""
    out = tmp_path / "run"
    assert train_cli.main(tiny_args(tiny_data, out, "--max-iter", "4")) == 0
    return out


@pytest.mark.parametrize("damage, message", [
    ("missing", "no such checkpoint"),
    ("truncated", "not a readable checkpoint"),
    ("junk", "not a readable checkpoint"),
])
def test_resume_from_an_unusable_checkpoint_is_one_line(tiny_data, finished_run, capsys, damage, message):
    last = finished_run / "checkpoints" / "last.pth"
    target = last.with_name("other.pth") if damage == "missing" else last
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
    elif damage == "junk":
        last.write_bytes(b"\x80\x04 not a pickle at all")
    capsys.readouterr()
    assert train_cli.main(tiny_args(tiny_data, finished_run, "--max-iter", "6", "--resume", str(target))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target) in err and message in err
    if damage != "missing":
        assert f"the newest intact checkpoint beside it is {finished_run / 'checkpoints' / 'iter_4.pth'}" in err


def test_resume_auto_after_the_model_changed_is_one_line(tiny_data, finished_run, capsys):
    capsys.readouterr()
    args = tiny_args(tiny_data, finished_run, "--max-iter", "6", "--resume", "auto")
    args[args.index("mb1_ssdlite")] = "mb2_ssdlite"
    assert train_cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a checkpoint of --model mb1_ssdlite, but this run is --model mb2_ssdlite" in err
    # the same model with another width: the flag is named (issue 33), and with --resume-override the
    # checkpoint does not fit: one line naming what differs
    args = tiny_args(tiny_data, finished_run, "--max-iter", "6", "--resume", "auto")
    args[args.index("0.25")] = "0.5"
    assert train_cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained with --width-mult 0.25, not 0.5" in err
    assert train_cli.main(args + ["--resume-override"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit this run's model (shape mismatches" in err


def test_resume_auto_falls_back_to_the_newest_intact_checkpoint_and_cleans_up(tiny_data, finished_run):
    folder = finished_run / "checkpoints"
    (folder / "last.pth").write_bytes(b"torn")
    (folder / "iter_4.pth").write_bytes((folder / "iter_4.pth").read_bytes()[:500])
    (folder / ".last.pth.x1y2.tmp").write_bytes(b"half a write")
    t = trainer(tiny_data, finished_run, "--max-iter", "4", "--resume", "auto")
    with pytest.warns(UserWarning, match="resuming from .*iter_2.pth instead"):
        t.fit(stop_after=2)
    assert t.iteration == 2 and not list(folder.glob(".*.tmp"))


def test_a_kill_during_the_first_last_pth_write_resumes_from_iter_n(tiny_data, finished_run):
    folder = finished_run / "checkpoints"
    (folder / "last.pth").unlink()  # as if killed while writing it: only its temporary is left
    (folder / "iter_4.pth").unlink()
    (folder / ".last.pth.abcd.tmp").write_bytes(b"partial")
    t = trainer(tiny_data, finished_run, "--max-iter", "4", "--resume", "auto")
    t.fit(stop_after=2)
    assert t.iteration == 2  # from iter_2.pth, not from 0
    assert not (folder / ".last.pth.abcd.tmp").exists()


def test_a_full_disk_while_checkpointing_is_one_line_naming_the_last_good_checkpoint(tiny_data, tmp_path, capsys,
                                                                                     monkeypatch):
    import errno
    import repssd.engine.checkpoint as checkpoint
    out = tmp_path / "run"
    real_save, calls = checkpoint.torch.save, []

    def save_until_full(state, file):
        calls.append(state["iteration"])
        if state["iteration"] >= 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(state, file)
    monkeypatch.setattr(checkpoint.torch, "save", save_until_full)
    assert train_cli.main(tiny_args(tiny_data, out, "--max-iter", "6")) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "train.py:" in line]  # past the progress bar
    assert len(err) == 1 and "No space left on device" in err[0]
    assert f"last good checkpoint: {out / 'checkpoints' / 'last.pth'}" in err[0]
    assert checkpoint.load_checkpoint(out / "checkpoints" / "last.pth")["iteration"] == 2  # intact
    assert not list((out / "checkpoints").glob(".*.tmp"))  # the failed write left nothing behind


@pytest.mark.parametrize("weights", ["loc=nan", "repgt=inf", "repgt=-1", "conf=-0.5"])
def test_non_finite_or_negative_loss_weight_is_one_line_before_training(tiny_data, tmp_path, capsys, weights):
    capsys.readouterr()
    out = tmp_path / "run"
    args = tiny_args(tiny_data, out, "--max-iter", "2", "--loss", "multibox+repgt", "--loss-weights", weights)
    assert train_cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--loss-weights" in err and weights in err and "finite number >= 0" in err
    assert not (out / "log.jsonl").exists()  # nothing trained


def test_l2sp_pulls_the_gradient_toward_the_starting_weights(tiny_data, tmp_path):
    start = tmp_path / "start.pth"  # L2-SP needs starting weights (issue 33: refused without them)
    torch.save(trainer(tiny_data, tmp_path / "a", "--max-iter", "1").model.state_dict(), start)
    t = trainer(tiny_data, tmp_path / "b", "--max-iter", "1", "--l2sp", "0.5", "--weights", str(start))
    name, param = next((n, p) for n, p in t.model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        param.add_(1.0)  # one unit away from where it started
    for p in t.model.parameters():
        p.grad = torch.zeros_like(p)
    t._pull_to_start()
    torch.testing.assert_close(param.grad, torch.full_like(param, 0.5))
    others = [p.grad.abs().max() for n, p in t.model.named_parameters() if n != name]
    assert max(others) == 0  # parameters at their start feel no pull


@pytest.mark.parametrize("flag, value, message", [("--l2sp", "-1", "--l2sp"),
                                                  ("--l2sp", "0.01", "--l2sp needs --weights or --base-weights"),
                                                  ("--tile-crop", "size=0", "--tile-crop"),
                                                  ("--tile-crop", "jitter=1", "size= is required")])
def test_bad_fine_tuning_options_are_one_line(tiny_data, tmp_path, capsys, flag, value, message):
    capsys.readouterr()
    assert train_cli.main(tiny_args(tiny_data, tmp_path / "run", "--max-iter", "2", flag, value)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
