"""Up-front checks of command-line values shared by train.py, eval.py, detect.py and the export:
each returns one line saying what is wrong (or None), so a CLI refuses before it does any work."""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["POSITIVE", "NON_NEGATIVE", "FRACTION", "IOU", "bad_option", "bad_device", "bad_output", "parse_tile_size",
           "finite_float", "given_twice"]

# rules for bad_option: (test, requirement); NaN fails every comparison, so every rule refuses it
POSITIVE: tuple[Callable, str] = (lambda v: v is None or v > 0, "must be positive")
NON_NEGATIVE: tuple[Callable, str] = (lambda v: v is None or v >= 0, "must be 0 or more")
FRACTION: tuple[Callable, str] = (lambda v: v is None or 0.0 <= v <= 1.0, "must be in [0, 1]")  # a score threshold
IOU: tuple[Callable, str] = (lambda v: v is None or 0.0 < v <= 1.0, "must be in (0, 1]")  # an overlap threshold


def bad_option(values, **rules: tuple[Callable, str]) -> str | None:
    """The first of ``values``' attributes (argparse namespace or dataclass) that breaks its rule,
    as ``--name must be ..., got X``."""
    for name, (ok, requirement) in rules.items():
        value = getattr(values, name)
        if not ok(value):
            return f"--{name.replace('_', '-')} {requirement}, got {value}"
    return None


def bad_device(name: str) -> str | None:
    """Why ``--device name`` cannot run here (a CUDA device this machine lacks), or None."""
    if name in ("auto", "cpu", "meta"):
        return None
    try:
        device = torch.device(name)
    except RuntimeError:
        return f"--device {name!r} is not a device (cpu, cuda, cuda:N)"
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return f"--device {name}: no CUDA device on this machine; use --device cpu"
        if device.index is not None and device.index >= count:
            return f"--device {name}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
    return None


def bad_output(path: str | Path, flag: str, folder: bool = True) -> str | None:
    """Why ``path`` cannot be written (a folder when ``folder``, else a file): something on its way
    is a file, or it is a folder where a file should be; None if it can be created."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        return f"{flag} {path}: is a file, not a folder"
    if not folder and path.is_dir():
        return f"{flag} {path}: is a folder, not a file"
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else f"{flag} {path}: cannot be created, {parent} is a file"
    return None


def parse_tile_size(text: str | int | Sequence[int] | None) -> tuple[int, int] | str | None:
    """``"S"``, ``"WxH"``, ``"auto"``, an int or ``(W, H)`` -> ``(W, H)`` or ``"auto"`` (ValueError
    naming the problem for anything else, zero or negative; digits only: no signs, no underscores)."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "auto"):
        return None if text is None else "auto"
    if isinstance(text, str):
        match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip().lower())
        if match is None and re.fullmatch(r"[-+\d\s_x]+", text.lower()):  # numbers, but signed or with separators
            raise ValueError(f"tile size {text!r}: expected S or WxH with positive pixel counts (digits only), or auto")
        if match is None:
            raise ValueError(f"tile size {text!r}: expected S, WxH (pixels) or auto")
        values = [int(v) for v in match.groups() if v is not None]
    else:
        values = [int(text)] if isinstance(text, (int, np.integer)) else [int(v) for v in text]
    if len(values) not in (1, 2) or min(values) <= 0:
        raise ValueError(f"tile size {text!r}: expected S or WxH with positive pixel counts, or auto")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def finite_float(text: str) -> float:
    """``float(text)``, refusing ``inf`` and ``nan`` (ValueError): an option value that must be a number."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text.strip()!r} is not a finite number")
    return value


def given_twice(key: str) -> str:
    """The one-line complaint about a ``key=value`` option list that names ``key`` twice (the last
    would otherwise win without a word)."""
    return f"{key!r} given twice; give each option once"
