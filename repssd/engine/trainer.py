"""The training engine behind train.py: build, step, log, checkpoint, evaluate, resume."""
from __future__ import annotations

import html
import json
import math
import shutil
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..boxes import box_iou
from ..convert import WeightsError, config_beside, load_weights, read_weights
from ..convert.checkpoints import mismatch_report
from ..data import DatasetError, SSDTestTransform, SSDTrainTransform, collate, parse_tile_crop
from ..data.base import DetectionDataset
from ..data.copypaste import CrowdCopyPaste, PersonBank, copy_paste_then, parse_copy_paste
from ..data.factory import DATASET_KINDS, class_names, open_dataset, parse_data_options
from ..eval import DetectionEvaluator
from ..files import write_atomic
from ..eval.inference import ground_truth_of, image_ids, load_image, predict_dataset
from ..losses import build_criterion, parse_weights
from ..models import TF_MODELS, build_model
from ..postprocess import Detections, postprocess_options
from ..slicing.geometry import auto_tile_size
from ..slicing.run import smallest_anchor
from ..visualize import draw_detections
from .checkpoint import (iteration_checkpoints, remove_stale_temporaries, resume_state, rng_state, save_checkpoint,
                         set_rng_state)
from .config import ConfigError, TrainConfig, config_dict, parse_options
from .distributed import DistInfo, init_distributed
from .loggers import FileLogger, VisdomLogger, plot_diagnostics, plot_loss_curves, visdom_env_name
from .sampling import SeededDataset, StepSampler

__all__ = ["Trainer", "TrainingError"]


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss without --skip-nonfinite)."""


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    """Everything one run needs, built from a :class:`TrainConfig`; :meth:`fit` runs it."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.device = _device(config.device)
        self.dist: DistInfo = init_distributed(self.device)
        self.out = Path(config.output_dir)
        self._claim_output_dir()  # every process: all of them stop on a refusal, none waits on the others
        torch.manual_seed(config.seed)
        self._build_data()
        self._build_model()
        if config.ignore_unlabelled is not None:
            self._ignore_unlabelled(config.ignore_unlabelled)
        self.criterion = build_criterion(config.loss, parse_weights(config.loss_weights), config.iou_threshold,
                                         warmup=config.loss_warmup, ignore_iof=config.ignore_iof,
                                         **parse_options(config.loss_options))
        self._build_optimizer()
        self.iteration, self.skipped = 0, 0
        self.scaler = torch.amp.GradScaler("cuda") if config.amp and self.device.type == "cuda" else None

    # ----------------------------------------------------------------- building
    RUN_FILES = ("config.json", "checkpoints", "log.jsonl", "log.csv")

    def _claim_output_dir(self) -> None:
        """A fresh run (no ``--resume``) never lands on top of another: refused in one line, or,
        with ``--overwrite``, the old run's folder is cleared first."""
        if self.config.resume is not None:
            return
        held = [name for name in self.RUN_FILES if (self.out / name).exists()]
        if not held:
            return
        if not self.config.overwrite:
            raise ConfigError(f"{self.out}: already holds a run ({', '.join(held)}); continue it with --resume auto, "
                              "or give a new --output-dir (--overwrite clears this one first)")
        if self.dist.is_main:
            shutil.rmtree(self.out)
    def _build_data(self) -> None:
        c = self.config
        try:
            probe = build_model(c.model, 2, spec=c.prior_spec, image_size=c.image_size, **self._model_options())
        except ValueError as err:  # e.g. --image-size for a model with fixed priors
            raise ConfigError(str(err)) from None
        mean = probe.normalize.mean.flatten().tolist()
        self.image_size = probe.input_size
        try:
            tile = parse_tile_crop(c.tile_crop, auto_size=auto_tile_size(10**9, 10**9, self.image_size,
                                                                          smallest_anchor(probe)))
        except ValueError as err:
            raise ConfigError(f"--tile-crop: {err}") from None
        augment = SSDTrainTransform(self.image_size, mean, zoom_out=c.zoom_out, tile=tile)
        self.train_set = (self._copy_paste_set(augment) if c.copy_paste else
                          open_dataset(c.dataset, c.data_root, c.train_split, augment,
                                       **self._data_options(training=True)))
        if len(self.train_set) == 0:
            raise ConfigError(f"{c.data_root}: the {c.train_split!r} split has no usable images")
        self.classes = class_names(self.train_set)
        steps_per_epoch = math.ceil(len(self.train_set) / (c.batch_size * self.dist.world_size))
        self.max_iter = c.max_iter if c.max_iter is not None else c.epochs * steps_per_epoch

    def _copy_paste_set(self, augment: SSDTrainTransform) -> Dataset:
        """--copy-paste: the training split opened with its instance masks, the person bank cut from
        it and nothing else (checked against the test split's ids), copy-paste before ``augment``."""
        c = self.config
        try:
            train = open_dataset(c.dataset, c.data_root, c.train_split, masks=True, **self._data_options(training=True))
        except TypeError as err:
            if "masks" not in str(err):
                raise
            raise ConfigError(f"--copy-paste needs instance masks, which --dataset {c.dataset} does not give "
                              "(datasets with masks: pennfudan, coco)") from None
        try:
            bank = PersonBank.from_dataset(train)
            held_out = open_dataset(c.dataset, c.data_root, c.test_split, **self._data_options(training=False))
            bank.check_held_out(getattr(held_out, "ids", ()), f"--test-split {c.test_split!r}")
            paste = CrowdCopyPaste(bank, label=train.classes.index("person") + 1, **parse_copy_paste(c.copy_paste))
        except (DatasetError, ValueError) as err:
            raise ConfigError(f"--copy-paste: {err}") from None
        train.transform = copy_paste_then(paste, augment)
        return train

    UNLABELLED_IOU = 0.3  # a starting detection overlapping an annotated object by less is someone unlabelled

    @torch.no_grad()
    def _ignore_unlabelled(self, score: float) -> None:
        """``--ignore-unlabelled S``: the starting model's detections on the training images (scored
        as it was made to be: its own post-processing) at score >= S that overlap no annotated
        object by IoU 0.3 become ignore regions of those images."""
        c = self.config
        if not isinstance(self.train_set, DetectionDataset):
            raise ConfigError(f"--ignore-unlabelled works on one dataset, not --dataset {c.dataset}'s concatenation")
        plain = open_dataset(c.dataset, c.data_root, c.train_split, SSDTestTransform(self.image_size),
                             **self._data_options(training=True))
        teacher = postprocess_options(config_beside(Path(c.weights)))
        detections = predict_dataset(self.model, plain, batch_size=c.batch_size, workers=0, device=self.device,
                                     progress=False, **teacher)
        person = self.classes.index("person") + 1 if "person" in self.classes else None
        added = 0
        for index, (det, truth) in enumerate(zip(detections, ground_truth_of(plain))):
            if det is None:
                continue
            keep = (det["scores"] >= score) & ((det["labels"] == person) if person else True)
            boxes = det["boxes"][keep].float()
            known = torch.as_tensor(truth["boxes"], dtype=torch.float32).reshape(-1, 4)
            if len(boxes) and len(known):
                boxes = boxes[box_iou(boxes, known).max(dim=1).values < self.UNLABELLED_IOU]
            if len(boxes):
                self.train_set.extra_ignore[index] = boxes
                added += len(boxes)
        self.unlabelled = added
        self._train_mode()  # predict_dataset left the model in training mode; frozen BatchNorm back to eval
        if self.dist.is_main:
            print(f"--ignore-unlabelled {score}: {added} detections of the starting weights on "
                  f"{len(self.train_set.extra_ignore)} of {len(plain)} training images overlap no annotated object; "
                  "ignore regions now")

    def _data_options(self, training: bool) -> dict:
        """Loader options from --data-options / --frame-stride; VOC "difficult" objects are left out
        of training as ssd.pytorch does, unless --keep-difficult (the test set keeps them)."""
        c = self.config
        given = {"frame_stride": c.frame_stride}
        if "keep_difficult" in DATASET_KINDS[c.dataset].options:
            given["keep_difficult"] = c.keep_difficult
        return parse_data_options(c.dataset, c.data_options, training, **given)

    def _model_options(self) -> dict:
        if self.config.model.startswith("mb"):
            return {"width_mult": self.config.width_mult}
        if self.config.model in TF_MODELS and self.config.anchor_reference:
            return {"anchor_reference": self.config.anchor_reference}
        return {}

    def _build_model(self) -> None:
        c = self.config
        self.model = build_model(c.model, len(self.classes) + 1, spec=c.prior_spec, image_size=c.image_size,
                                 **self._model_options())
        self.postprocess = postprocess_options()
        if c.base_weights:
            load_weights(self.model, c.base_weights)
        if c.weights:
            saved = config_beside(Path(c.weights))  # the config saved with the weights (imported or trained)
            self._load_finetune(Path(c.weights), saved)
            self.postprocess = self._finetune_postprocess(saved)
        self.model.to(self.device)
        self._set_frozen(c.freeze)
        # L2-SP's and WiSE-FT's anchor: the model as it starts (a resumed run reloads the same weights first)
        self.start_weights = ({k: v.detach().clone() for k, v in self.model.state_dict().items()}
                              if c.l2sp or c.wise_ft < 1.0 else {})
        if c.sync_bn:
            self._convert_sync_bn()
        self.ddp = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None) if self.dist.enabled else None)

    def _convert_sync_bn(self) -> None:
        """``--sync-bn``: BatchNorm statistics over every process's batch (torch runs SyncBatchNorm
        on GPUs only); a single process has nothing to synchronise."""
        if not self.dist.enabled:
            warnings.warn("--sync-bn has no effect without torchrun (one process)", stacklevel=3)
            return
        if self.device.type != "cuda":
            raise ConfigError(f"--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on "
                              f"{self.device.type}); drop it for CPU/gloo runs")
        self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)

    def _load_finetune(self, path: Path, saved: dict) -> None:
        """SSD weights to fine-tune from (``saved``: the config beside them); classification heads of
        another class count are re-initialised."""
        if saved.get("batchnorm") == "folded" and not self.config.freeze_bn:
            raise ConfigError(f"{path}: BatchNorm is folded into these weights' convolutions (a TFLite import), and "
                              "batch statistics would renormalise every layer: fine-tune them with --freeze-bn")
        state, fmt = read_weights(path)
        own = self.model.state_dict()
        heads = [k for k in state if k.startswith("head.conf.") and k in own and state[k].shape != own[k].shape]
        if heads:
            warnings.warn(f"{path}: classification heads are for another number of classes; they start fresh",
                          stacklevel=2)
            state = {k: v for k, v in state.items() if k not in heads}
            state.update({k: own[k] for k in heads})
        report = mismatch_report(own, state)
        if report:
            raise WeightsError(f"{path}: {fmt} weights do not fit {self.config.model} ({report})")
        self.model.load_state_dict(state)

    def _finetune_postprocess(self, saved: dict) -> dict:
        """The post-processing of the weights fine-tuned from (``saved``: their config; e.g. an imported
        graph's NMS 0.6 and 100 detections), with softmax scores: repssd's confidence loss is a softmax
        cross-entropy."""
        return postprocess_options(saved, score="softmax") if saved.get("postprocess") else postprocess_options()

    def _set_frozen(self, freeze: str) -> None:
        self._frozen = {"none": (), "base": ("backbone",), "all-but-heads": ("backbone", "extras")}[freeze]
        for name, param in self.model.named_parameters():
            param.requires_grad_(name.split(".")[0] not in self._frozen)
        self._train_mode()

    def _train_mode(self) -> None:
        """Training mode, except BatchNorm layers in frozen parts (``--freeze``), or all of them with
        ``--freeze-bn``: they keep their statistics (eval mode), as a frozen part should."""
        self.model.train()
        for name, module in self.model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and (
                    self.config.freeze_bn or name.split(".")[0] in self._frozen):
                module.eval()

    def _build_optimizer(self) -> None:
        c = self.config
        groups = {"backbone": c.lr_base_mult, "extras": c.lr_extras_mult, "head": c.lr_heads_mult}
        params = [{"params": [p for n, p in self.model.named_parameters() if n.split(".")[0] == part],
                   "lr": c.lr * mult, "name": part} for part, mult in groups.items()]
        if c.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=c.lr, betas=(c.momentum, 0.999), weight_decay=c.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

    def _lr_factor(self, iteration: int) -> float:
        c = self.config
        warm = min(1.0, (iteration + 1) / c.warmup) if c.warmup else 1.0
        if c.schedule == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(iteration, self.max_iter) / self.max_iter))
        drops = sum(iteration >= float(m) * self.max_iter for m in c.milestones.split(",") if m.strip())
        return warm * c.gamma ** drops

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else None,
                "iteration": self.iteration, "skipped": self.skipped, "rng": rng_state(),
                "config": config_dict(self.config)}

    def _restore(self, state: dict, path: Path) -> None:
        """Resume from ``state`` (read from ``path``): a checkpoint of another architecture or
        class count is a one-line ``WeightsError``, not a state-dict traceback."""
        saved = state.get("config") or {}
        if saved.get("model") and saved["model"] != self.config.model:
            raise WeightsError(f"{path}: a checkpoint of --model {saved['model']}, but this run is --model "
                               f"{self.config.model}; resume with the same --model, or give a new --output-dir")
        changed = self._changed_flags(saved)
        self._same_run = not changed  # then config.json stays as it is
        blocking = [c for c in changed if c[0] not in self.LENGTH]
        if blocking and not self.config.resume_override:
            name, before, now = blocking[0]
            raise ConfigError(f"{path}: this run was trained with --{name.replace('_', '-')} {before}, not {now}; "
                              "resume with the run's flags, or pass --resume-override to continue with the new ones")
        report = mismatch_report(self.model.state_dict(), state.get("model") or {})
        if report:
            raise WeightsError(f"{path}: does not fit this run's model ({report})")
        try:
            self.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as err:
            raise WeightsError(f"{path}: does not fit this run's model ({' '.join(str(err).split())})") from None

    # flags that do not change what is trained: they may differ when a run is resumed
    RUN_ONLY = ("output_dir", "resume", "resume_override", "overwrite", "device", "workers", "checkpoint_every",
                "eval_every", "eval_at_end", "log_every", "diagnostics", "visdom", "visdom_server", "visdom_port",
                "visdom_env", "skip_nonfinite")
    LENGTH = ("max_iter", "epochs")  # a resumed run may be extended (or cut short); config.json records it
    _same_run = False  # resumed with every flag as the checkpoint's (run-only flags aside)

    def _changed_flags(self, saved: dict) -> list[tuple[str, object, object]]:
        """(flag, the run's value, this command's) for every flag but :data:`RUN_ONLY` that differs
        from the checkpoint's config (flags the checkpoint predates are not compared)."""
        now = json.loads(json.dumps(config_dict(self.config)))
        before = json.loads(json.dumps(saved, default=str))
        return [(k, before[k], now[k]) for k in now if k in before and k not in self.RUN_ONLY and before[k] != now[k]]

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.iteration, self.skipped = int(state["iteration"]), int(state.get("skipped", 0))
        set_rng_state(state["rng"])

    def save(self) -> None:
        if not self.dist.is_main:
            return
        state = self.state_dict()
        folder = self.out / "checkpoints"
        for path in (folder / f"iter_{self.iteration}.pth", folder / "last.pth"):
            try:
                save_checkpoint(path, state)
            except OSError as err:  # disk full, quota, read-only: the previous checkpoints are intact
                good = [p for p in (folder / "last.pth", *iteration_checkpoints(folder)) if p.is_file() and p != path]
                raise TrainingError(f"cannot write the checkpoint {path} at iteration {self.iteration} "
                                    f"({err.strerror or err}); last good checkpoint: "
                                    f"{good[0] if good else 'none'}") from None

    def write_config(self) -> None:
        """config.json (what eval.py and detect.py read back): written whole, and only when it changes."""
        record = {**config_dict(self.config), "class_names": list(self.classes), "max_iter_resolved": self.max_iter,
                  "model_options": self._model_options(), "image_size": list(self.model.input_size),
                  "postprocess": self.postprocess}
        path = self.out / "config.json"
        if self._same_run and path.is_file():
            return
        write_atomic(path, json.dumps(record, indent=1))

    # ----------------------------------------------------------------- steps
    def _loader(self) -> DataLoader:
        sampler = StepSampler(len(self.train_set), self.config.batch_size, self.config.seed, self.iteration,
                              self.dist.rank, self.dist.world_size)
        return DataLoader(SeededDataset(self.train_set), batch_sampler=sampler, num_workers=self.config.workers,
                          collate_fn=collate, persistent_workers=False)

    def step(self, batch: dict, diagnose: bool = False) -> dict[str, float] | None:
        """One optimisation step; returns the loss terms (with ``diagnose``, also the
        diagnostics of :meth:`_gradient_norms` and the terms' ``diag/`` statistics), or None if
        the batch was skipped."""
        net = self.ddp or self.model
        images = self.model.preprocess(batch["images"].to(self.device, non_blocking=True))
        amp = self.config.amp
        dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype) if amp else nullcontext():
            loc, conf = net(images)
        loc, conf = loc.float(), conf.float()
        gt = [batch[k].to(self.device) for k in ("gt_boxes", "gt_labels", "gt_valid")]
        ignore = batch["gt_ignore"].to(self.device) if self.config.ignore_regions and "gt_ignore" in batch else None
        self.criterion.set_iteration(self.iteration)
        losses = self.criterion(loc, conf, self.model.priors, *gt, ignore, diagnose=diagnose)
        if not torch.isfinite(losses["loss"]):
            return self._nonfinite(losses)
        if diagnose:
            losses.update(self._gradient_norms(losses, loc, conf))
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(losses["loss"]).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            losses["loss"].backward()
        if self.config.l2sp:
            self._pull_to_start()
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def _pull_to_start(self) -> None:
        """``--l2sp``: add ``l2sp * (w - w0)`` to the gradient of every trained parameter."""
        pairs = [(p, self.start_weights[n]) for n, p in self.model.named_parameters() if p.grad is not None]
        if pairs:
            params, starts = zip(*pairs)
            torch._foreach_add_([p.grad for p in params], torch._foreach_sub(params, starts), alpha=self.config.l2sp)

    @torch.no_grad()
    def _average_with_start(self, alpha: float) -> None:
        """``--wise-ft ALPHA`` at the last iteration: every floating-point weight and buffer becomes
        ``start + ALPHA (trained - start)`` (WiSE-FT, Wortsman et al., CVPR 2022: the interpolation
        keeps what the pretrained weights knew about data the fine-tuning set does not show)."""
        state = self.model.state_dict()
        self.model.load_state_dict({k: torch.lerp(self.start_weights[k], v, alpha) if v.is_floating_point() else v
                                    for k, v in state.items()})

    def _gradient_norms(self, losses: dict[str, Tensor], loc: Tensor, conf: Tensor) -> dict[str, Tensor]:
        """``grad/<output>/loc`` and ``grad/<output>/conf``: the norm of the gradient of each
        weighted output (this step's weights, warm-up included) with respect to the network's
        outputs, so the log shows which term drives the update; ``loss`` is their sum. Runs only
        at log steps (one extra backward through the loss, not the network)."""
        norms = {}
        weights = {**self.criterion.effective_weights, "loss": 1.0}
        for name, weight in weights.items():
            if not losses[name].requires_grad:
                continue
            grads = torch.autograd.grad(weight * losses[name], (loc, conf), retain_graph=True, allow_unused=True)
            for part, grad in zip(("loc", "conf"), grads):
                if grad is not None:  # None: the output does not depend on that part at all
                    norms[f"grad/{name}/{part}"] = grad.norm()
        return norms

    def _nonfinite(self, losses: dict) -> None:
        values = ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items())
        if not self.config.skip_nonfinite:
            last = self.out / "checkpoints" / "last.pth"
            raise TrainingError(f"non-finite loss at iteration {self.iteration} ({values}); stopped. Last good "
                                f"checkpoint: {last if last.exists() else 'none yet'}. Lower --lr, check the data, "
                                "or pass --skip-nonfinite")
        self.skipped += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return None

    # ----------------------------------------------------------------- evaluation
    def evaluate(self) -> dict:
        """VOC07 mAP and crowd mAP on the test split (main process only)."""
        return self._evaluate()[0]

    def _evaluate(self) -> tuple[dict, list[dict], Dataset]:
        """The report, the detections (pixel boxes) and the test dataset they are of."""
        dataset = open_dataset(self.config.dataset, self.config.data_root, self.config.test_split,
                               SSDTestTransform(self.image_size), **self._data_options(training=False))
        detections = predict_dataset(self.model, dataset, batch_size=self.config.batch_size, workers=0,
                                     device=self.device, progress=False, **self.postprocess)
        evaluator = DetectionEvaluator(self.classes, "voc07", crowd_subset=True)
        evaluator.process(detections, ground_truth_of(dataset), image_ids(dataset))
        return evaluator.evaluate(), detections, dataset

    # ----------------------------------------------------------------- loop
    def fit(self, stop_after: int | None = None) -> dict:
        """Train to ``max_iter`` (resuming if asked); returns the final log record.

        ``stop_after``: leave after that iteration (with a checkpoint), as if interrupted; the
        schedule still runs to ``max_iter``, so a resumed run continues exactly.
        """
        c = self.config
        if self.dist.is_main:
            remove_stale_temporaries(self.out / "checkpoints")
        state, resume, note = resume_state(c.resume, self.out)
        if note:
            warnings.warn(note, stacklevel=2)
        if state is not None:
            self._restore(state, resume)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.write_config()
        files = FileLogger(self.out, resume=resume is not None) if self.dist.is_main else None
        vis = self._dashboard() if c.visdom and self.dist.is_main else None
        record = self._loop(files, vis, stop_after or self.max_iter)
        if self.iteration < self.max_iter:
            self.save()
            return record
        if self.dist.is_main:
            if c.eval_at_end and (c.eval_every == 0 or self.iteration % c.eval_every):
                record.update(self._log_eval(files, vis))
            plot_loss_curves(self.out / "log.jsonl", self.out / "loss.png")
            plot_diagnostics(self.out / "log.jsonl", self.out / "diagnostics.png")
        return record

    def _dashboard(self) -> VisdomLogger:
        """The run's visdom env (``--visdom-env``, else named after the output folder), with a
        text window describing the run."""
        c = self.config
        vis = VisdomLogger(c.visdom_server, c.visdom_port, c.visdom_env or visdom_env_name(c.output_dir))
        rows = {"output": c.output_dir, "model": c.model, "data": f"{c.dataset} {c.data_root} ({c.train_split})",
                "loss": c.loss, "weights": self.criterion.weights, "options": c.loss_options or "defaults",
                "schedule": f"{self.max_iter} iterations, batch {c.batch_size}, lr {c.lr} ({c.schedule})"}
        vis.show_text("run", "<br>".join(f"<b>{k}</b>: {html.escape(str(v))}" for k, v in rows.items()), "run")
        return vis

    def _loop(self, files: FileLogger | None, vis: VisdomLogger | None, stop: int) -> dict:
        c = self.config
        self._train_mode()
        record: dict = {}
        bar = tqdm(total=self.max_iter, initial=self.iteration, desc="train", unit="it", disable=not self.dist.is_main)
        window_start, window_images = time.perf_counter(), 0
        for batch in self._loader() if self.iteration < stop else ():
            if c.freeze != "none" and c.freeze_iters and self.iteration == c.freeze_iters:
                self._set_frozen("none")
            logged = (self.iteration + 1) % c.log_every == 0 or self.iteration + 1 == self.max_iter
            losses = self.step(batch, diagnose=logged and c.diagnostics)
            self.iteration += 1
            window_images += len(batch["images"]) * self.dist.world_size
            bar.update(1)
            if losses is not None and (self.iteration % c.log_every == 0 or self.iteration == self.max_iter):
                rate = window_images / max(time.perf_counter() - window_start, 1e-9)
                record = {"iter": self.iteration, "lr": self.optimizer.param_groups[0]["lr"], **losses,
                          "img_s": round(rate, 2), "skipped": self.skipped}
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items() if "/" not in k} | {"img/s": f"{rate:.1f}"})
                window_start, window_images = time.perf_counter(), 0
                if files:
                    files.log(record)
                if vis:
                    vis.log(self.iteration, {**losses, "lr": record["lr"]})
            if self.iteration == self.max_iter and c.wise_ft < 1.0:
                self._average_with_start(c.wise_ft)
            if self.iteration % c.checkpoint_every == 0 or self.iteration == self.max_iter:
                self.save()
            if c.eval_every and self.iteration % c.eval_every == 0 and self.dist.is_main:
                record.update(self._log_eval(files, vis))
            if self.iteration >= stop:
                break
        bar.close()
        return record

    def _log_eval(self, files: FileLogger | None, vis: VisdomLogger | None) -> dict:
        report, detections, dataset = self._evaluate()
        crowd = report["crowd"]["map"]  # None when the test split holds no crowd object
        metrics = {"eval/map": report["map"], "eval/crowd_map": crowd}
        crowd_text = f"{crowd:.4f}" if crowd is not None else f"n/a ({report['crowd']['num_boxes']} crowd boxes)"
        tqdm.write(f"iteration {self.iteration}: mAP {report['map']:.4f}, crowd mAP {crowd_text}")
        if files:
            files.log({"eval_iter": self.iteration, **metrics})
        if vis:
            vis.log_eval(self.iteration, {k: v for k, v in metrics.items() if v is not None})
            vis.show_detections(self._drawn_examples(detections, dataset),
                                f"iteration {self.iteration}: mAP {report['map']:.4f}, crowd mAP {crowd_text}; "
                                "detections scoring 0.3 or more")
        self._train_mode()
        return metrics

    def _drawn_examples(self, detections: list[dict], dataset: Dataset, count: int = 4) -> list:
        """The first ``count`` test images with their detections scoring 0.3 or more drawn
        (the same images every evaluation, so the dashboard shows the detector improve)."""
        drawn = []
        for index in range(min(count, len(dataset))):
            det = detections[index]
            if det is None:  # unreadable
                continue
            image = load_image(dataset, index)
            drawn.append(draw_detections(image, Detections(det["boxes"], det["scores"], det["labels"]), self.classes,
                                         min_score=0.3))
        return drawn
