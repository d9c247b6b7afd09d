"""Training configuration: one dataclass, an argparse parser generated from it (grouped help),
``--config FILE`` (JSON or YAML) for defaults that flags override, saved beside checkpoints."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..data import DatasetError
from ..data.copypaste import parse_copy_paste
from ..data.factory import DATASET_KINDS, parse_data_options
from ..data.transforms import parse_tile_crop
from ..losses import parse_weights
from ..models import MODELS, parse_image_size
from ..options import NON_NEGATIVE, POSITIVE, bad_device, bad_option, bad_output, given_twice

__all__ = ["TrainConfig", "ConfigError", "build_parser", "parse_config", "load_config_file", "parse_options"]


class ConfigError(ValueError):
    """A configuration that cannot run (bad value, missing file); the CLI prints it as one line."""


def _opt(default, help: str, group: str, **kwargs):
    return field(default=default, metadata={"help": help, "group": group, **kwargs})


@dataclass
class TrainConfig:
    # * Model
    model: str = _opt("ssd300_vgg16", "architecture (repssd.models.MODELS)", "model")
    prior_spec: str | None = _opt(None, "prior layout (default: the model's own)", "model")
    width_mult: float = _opt(1.0, "MobileNet width multiplier", "model")
    image_size: str | None = _opt(None, "network input, S or WIDTHxHEIGHT, e.g. 512 or 640x384 (models whose priors "
                                  "follow their feature maps: the TF layouts ssd*_mb*_tf; default: the model's own)", "model")
    anchor_reference: float | None = _opt(None, "TF layouts (ssd*_mb*_tf): anchor sizes as on a shorter side of this many px "
                                          "(e.g. 300, the imported graph's input) at any --image-size; default: "
                                          "relative to the input, TF's rule", "model")
    # * Data
    dataset: str = _opt("synthetic", "voc | voc0712 | coco | crowdhuman | synthetic | folder | pennfudan | "
                        "citypersons | mot | widerperson (repssd.data.factory.DATASET_KINDS)", "data")
    data_root: str = _opt("data/synthetic", "dataset folder", "data")
    train_split: str = _opt("trainval", "training image set / split", "data")
    test_split: str = _opt("test", "evaluation image set / split", "data")
    data_options: str = _opt("", "loader options, key=value,... e.g. filter=reasonable (citypersons), "
                             "person_classes=1+2 (widerperson), box=vbox (crowdhuman); training-only ones "
                             "(filter) are left out of the test set", "data")
    frame_stride: int | None = _opt(None, "mot: use every N-th frame of each sequence (train and test)", "data")
    workers: int = _opt(2, "data-loading worker processes", "data")
    keep_difficult: bool = _opt(False, "train on VOC objects marked difficult (ssd.pytorch drops them from "
                                "training; evaluation always ignores them)", "data")
    zoom_out: float = _opt(4.0, "largest zoom-out ratio of the augmentation (the paper's 4; 1: none)", "data")
    copy_paste: str = _opt("", "crowd copy-paste before the augmentation: people cut out with their masks from the "
                           "training split (pennfudan, coco) pasted next to each image's people, key=value,... e.g. "
                           "per_image=2-6,overlap=0.3-0.7,scale=0.8-1.2,p=1.0 (repssd.data.copypaste); empty: off",
                           "data")
    ignore_unlabelled: float | None = _opt(None, "fine-tuning: the starting weights' own detections on the training "
                                           "images at this score or more that overlap no annotated object (IoU < 0.3) "
                                           "become ignore regions: people a dataset left unlabelled (PennFudanPed "
                                           "labels only some) are then not trained as background; off by default",
                                           "data")
    tile_crop: str = _opt("", "train on windows at the scale sliced inference feeds the network: images larger than "
                          "the window are cut to it around a person, key=value,... e.g. size=auto,jitter=0.75-1.33 "
                          "(size: S, WxH or auto, the model's --slice auto tile; repssd.data.TileCrop); empty: off",
                          "data")
    # * Loss
    loss: str = _opt("multibox", "loss spec, terms joined by + (multibox+repgt+repbox)", "loss")
    loss_weights: str = _opt("", "output weights, e.g. repgt=0.5,repbox=0.5", "loss")
    loss_options: str = _opt("", "term options, e.g. repgt_target=pred,repbox_sigma=0.5", "loss")
    loss_warmup: int = _opt(0, "iterations of linear warm-up of the repulsion weights, from 0 (0: none)", "loss")
    iou_threshold: float = _opt(0.5, "matching IoU threshold", "loss")
    ignore_regions: bool = _opt(True, "priors inside ignore regions (CrowdHuman masks, COCO iscrowd) are neither "
                                "positive nor negative; --no-ignore-regions trains them as background "
                                "(ssd.pytorch)", "loss")
    ignore_iof: float = _opt(0.5, "a prior is inside an ignore region when their intersection covers this "
                             "fraction of the prior", "loss")
    # * Optimisation
    batch_size: int = _opt(32, "images per step (per process)", "optim")
    optimizer: str = _opt("sgd", "sgd (SSD's) | adamw (faster from scratch)", "optim", choices=("sgd", "adamw"))
    lr: float = _opt(1e-3, "base learning rate", "optim")
    momentum: float = _opt(0.9, "SGD momentum (AdamW: beta1)", "optim")
    weight_decay: float = _opt(5e-4, "weight decay", "optim")
    schedule: str = _opt("multistep", "multistep | cosine", "optim", choices=("multistep", "cosine"))
    milestones: str = _opt("0.67,0.83", "multistep: fractions of the run where lr drops", "optim")
    gamma: float = _opt(0.1, "multistep: lr factor at each milestone", "optim")
    warmup: int = _opt(0, "linear warm-up iterations", "optim")
    max_iter: int | None = _opt(None, "training iterations", "optim")
    epochs: int | None = _opt(None, "training epochs (instead of --max-iter)", "optim")
    lr_base_mult: float = _opt(1.0, "lr multiplier of the backbone", "optim")
    lr_extras_mult: float = _opt(1.0, "lr multiplier of the extra layers", "optim")
    lr_heads_mult: float = _opt(1.0, "lr multiplier of the heads", "optim")
    grad_clip: float | None = _opt(None, "clip the gradient norm to this", "optim")
    wise_ft: float = _opt(1.0, "at the end of fine-tuning keep this fraction of what it changed: every weight becomes "
                          "start + WISE_FT (trained - start) (weight-space ensembling, WiSE-FT, Wortsman et al., CVPR "
                          "2022); 1: the trained weights", "optim")
    l2sp: float = _opt(0.0, "pull every trained parameter toward its starting value (--weights / --base-weights) "
                       "with this strength: the gradient of l2sp/2 ||w - w0||^2 (L2-SP, Li et al., ICML 2018), "
                       "so fine-tuning cannot wander far from what the pretrained weights knew; 0: off", "optim")
    # * Initialisation
    weights: str | None = _opt(None, "start from an SSD checkpoint (fine-tune; any format load_weights knows)", "init")
    base_weights: str | None = _opt(None, "start from a base net, e.g. vgg16_reducedfc.pth", "init")
    freeze: str = _opt("none", "none | base | all-but-heads", "init", choices=("none", "base", "all-but-heads"))
    freeze_iters: int = _opt(0, "iterations to keep --freeze (0: the whole run)", "init")
    freeze_bn: bool = _opt(False, "keep every BatchNorm layer's statistics fixed (eval mode), e.g. to fine-tune a "
                           "pretrained model with small batches; the frozen parts of --freeze always keep theirs",
                           "init")
    # * Run
    output_dir: str = _opt("runs/train", "where checkpoints, logs and plots go", "run")
    seed: int = _opt(0, "random seed (data order, augmentation, initialisation)", "run")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N", "run")
    amp: bool = _opt(False, "mixed precision (bfloat16 on CPU, float16 + GradScaler on CUDA)", "run")
    resume: str | None = _opt(None, "auto (the run's last checkpoint) or a checkpoint path", "run")
    resume_override: bool = _opt(False, "with --resume: continue even where a flag that changes what is trained "
                                 "differs from the run's (refused otherwise); config.json then records the new flags",
                                 "run")
    overwrite: bool = _opt(False, "clear --output-dir first if it holds another run (otherwise such a run is "
                           "refused)", "run")
    checkpoint_every: int = _opt(500, "iterations between checkpoints", "run")
    eval_every: int = _opt(0, "iterations between evaluations (0: only at the end)", "run")
    eval_at_end: bool = _opt(True, "evaluate when training ends", "run")
    log_every: int = _opt(10, "iterations between log lines", "run")
    diagnostics: bool = _opt(True, "at each log step, also log per-term gradient norms (w.r.t. loc and conf) "
                             "and the terms' statistics (RepGT's IoG)", "run")
    sync_bn: bool = _opt(False, "under torchrun on GPUs, convert BatchNorm layers to SyncBatchNorm (statistics "
                         "over every process's batch)", "run")
    skip_nonfinite: bool = _opt(False, "skip batches whose loss is NaN/inf (counted) instead of stopping", "run")
    # * Visdom
    visdom: bool = _opt(False, "post loss curves and eval metrics to a visdom server", "visdom")
    visdom_server: str = _opt("http://127.0.0.1", "visdom server", "visdom")
    visdom_port: int = _opt(8097, "visdom port", "visdom")
    visdom_env: str = _opt("", "visdom environment (default: named after --output-dir, e.g. runs_demo)", "visdom")

    def validate(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"unknown --model {self.model!r}; known: {', '.join(MODELS)}")
        if self.dataset not in DATASET_KINDS:
            raise ConfigError(f"unknown --dataset {self.dataset!r}; known: {', '.join(DATASET_KINDS)}")
        try:
            parse_data_options(self.dataset, self.data_options, frame_stride=self.frame_stride)
        except DatasetError as err:
            raise ConfigError(str(err)) from None
        if (self.max_iter is None) == (self.epochs is None):
            raise ConfigError("give exactly one of --max-iter and --epochs")
        for name in ("batch_size", "max_iter", "epochs", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
        try:
            parse_weights(self.loss_weights)
        except ValueError as err:
            raise ConfigError(f"--loss-weights: {err}") from None
        if self.loss_warmup < 0:
            raise ConfigError(f"--loss-warmup must be >= 0, got {self.loss_warmup}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.image_size is not None:
            try:
                parse_image_size(self.image_size)
            except ValueError as err:
                raise ConfigError(f"--image-size: {err}") from None
        problem = bad_option(self, workers=NON_NEGATIVE, eval_every=NON_NEGATIVE, freeze_iters=NON_NEGATIVE,
                             l2sp=NON_NEGATIVE, ignore_unlabelled=POSITIVE,
                             anchor_reference=POSITIVE, frame_stride=POSITIVE) \
            or bad_device(self.device) or bad_output(self.output_dir, "--output-dir")
        if problem:
            raise ConfigError(problem)
        if not 0.0 <= self.wise_ft <= 1.0:
            raise ConfigError(f"--wise-ft must be in [0, 1], got {self.wise_ft}")
        if self.wise_ft < 1.0 and not (self.weights or self.base_weights):
            raise ConfigError("--wise-ft needs --weights or --base-weights: it averages with the starting weights")
        if self.l2sp and not (self.weights or self.base_weights):
            raise ConfigError("--l2sp needs --weights or --base-weights: it pulls towards the starting weights, which "
                              "would otherwise be the random initialisation")
        if self.resume_override and self.resume is None:
            raise ConfigError("--resume-override needs --resume")
        if self.ignore_unlabelled is not None and not self.weights:
            raise ConfigError("--ignore-unlabelled needs --weights: it asks the starting detector where people are")
        if self.tile_crop:
            try:
                parse_tile_crop(self.tile_crop, auto_size=(1, 1))
            except ValueError as err:
                raise ConfigError(f"--tile-crop: {err}") from None
        if self.copy_paste:
            try:
                parse_copy_paste(self.copy_paste)
            except ValueError as err:
                raise ConfigError(f"--copy-paste: {err}") from None
        if not 0.0 < self.ignore_iof <= 1.0:
            raise ConfigError(f"--ignore-iof must be in (0, 1], got {self.ignore_iof}")


_GROUPS = {"model": "model", "data": "data", "loss": "loss terms (repssd.losses)", "optim": "optimisation",
           "init": "initialisation", "run": "run", "visdom": "visdom"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train.py", description="Train an SSD with plug-in loss terms.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", type=Path, help="JSON/YAML file of defaults (flags override it)")
    groups = {key: parser.add_argument_group(title) for key, title in _GROUPS.items()}
    for f in fields(TrainConfig):
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        group = groups[meta["group"]]
        if f.type in ("bool", bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=meta["help"])
            continue
        kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
        group.add_argument(flag, type=kind, default=f.default, choices=meta.get("choices"), help=meta["help"])
    return parser


def load_config_file(path: Path) -> dict[str, Any]:
    """A config file's keys (JSON or YAML), checked against :class:`TrainConfig`."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(k for k in (key.replace("-", "_") for key in data) if k not in known)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Flags over ``--config`` over the dataclass defaults -> a validated :class:`TrainConfig`."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config is not None:
        parser.set_defaults(**load_config_file(first.config))
    args = vars(parser.parse_args(argv))
    args.pop("config")
    config = TrainConfig(**args)
    config.validate()
    return config


def parse_options(text: str) -> dict[str, Any]:
    """``"repgt_target=pred,repbox_sigma=0.5,repgt_same_class=false"`` -> typed values."""
    options = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"bad loss option {part!r}: expected name=value")
        if name.strip() in options:
            raise ConfigError(f"--loss-options: {given_twice(name.strip())}")
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            options[name.strip()] = lowered == "true"
            continue
        for cast in (int, float):
            try:
                options[name.strip()] = cast(value)
                break
            except ValueError:
                continue
        else:
            options[name.strip()] = value.strip()
    return options


def config_dict(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)
