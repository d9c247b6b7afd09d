"""Train an SSD with plug-in loss terms.

    python train.py --loss multibox+repgt --dataset synthetic --data-root data/synthetic --max-iter 2000
    python train.py --config experiments/synthetic_crowd.yaml --loss multibox+repgt+repbox --seed 1
    torchrun --nproc_per_node=2 train.py ...                       # DistributedDataParallel
    python train.py ... --resume auto                              # continue exactly where it stopped

Writes OUTPUT_DIR/config.json, checkpoints/{last,iter_N}.pth, log.jsonl, log.csv and loss.png.
"""
from __future__ import annotations

import sys

from repssd.convert import WeightsError
from repssd.data import DatasetError
from repssd.engine.config import ConfigError, parse_config
from repssd.engine.distributed import cleanup
from repssd.engine.trainer import Trainer, TrainingError


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
        trainer = Trainer(config)
    except (ConfigError, DatasetError, WeightsError, ValueError) as err:
        print(f"train.py: {err}", file=sys.stderr)
        return 2
    try:
        record = trainer.fit()
    except TrainingError as err:
        print(f"train.py: {err}", file=sys.stderr)
        return 1
    except (ConfigError, WeightsError) as err:  # --resume with an unusable checkpoint
        print(f"train.py: {err}", file=sys.stderr)
        return 2
    finally:
        cleanup(trainer.dist)
    if trainer.dist.is_main and not record:  # resumed at (or past) its last iteration
        print(f"done: the run had already reached iteration {trainer.iteration}; nothing left to train "
              f"(a longer --max-iter extends it)")
    elif trainer.dist.is_main:
        print("done: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        print(f"outputs in {config.output_dir}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
