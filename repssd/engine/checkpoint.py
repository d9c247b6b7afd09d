"""Checkpoints that lose nothing: atomic writes, full training state, exact resume."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..convert import WeightsError
from ..files import save_atomic

__all__ = ["save_checkpoint", "load_checkpoint", "find_resume", "resume_state", "iteration_checkpoints",
           "remove_stale_temporaries", "rng_state", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """Every global generator, as tensors and plain lists (loadable with ``weights_only=True``)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``
    (:func:`repssd.files.save_atomic`): a reader (or a crash) never sees a half-written checkpoint."""
    return save_atomic(state, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint` (``weights_only=True``: tensors, numbers,
    strings and containers only)."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated or foreign files raise many kinds
        raise WeightsError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "iteration" not in state:
        raise WeightsError(f"{path}: not a repssd training checkpoint (no model/iteration)")
    return state


def find_resume(resume: str | None, output_dir: Path) -> Path | None:
    """``auto`` -> the run's ``checkpoints/last.pth`` if it exists, else its newest
    ``iter_N.pth`` (a kill during the first ``last.pth`` write leaves only those), else a fresh
    start; a path -> that file; None -> a fresh start."""
    if resume is None:
        return None
    if resume == "auto":
        folder = output_dir / "checkpoints"
        last = folder / "last.pth"
        candidates = ([last] if last.is_file() else []) + iteration_checkpoints(folder)
        return candidates[0] if candidates else None
    return Path(resume)


def iteration_checkpoints(folder: Path) -> list[Path]:
    """``folder/iter_N.pth``, newest (largest N) first."""
    found = []
    for path in folder.glob("iter_*.pth") if folder.is_dir() else ():
        number = path.stem.removeprefix("iter_")
        if number.isdigit():
            found.append((int(number), path))
    return [path for _, path in sorted(found, reverse=True)]


def resume_state(resume: str | None, output_dir: Path) -> tuple[dict | None, Path | None, str | None]:
    """(checkpoint state, its path, a note to show) for ``--resume``, or (None, None, None) for
    a fresh start. ``auto`` falls back from an unreadable ``last.pth`` to the newest intact
    ``iter_N.pth`` and says so; an unreadable explicit path is a ``WeightsError`` naming the newest
    intact ``iter_N.pth`` beside it."""
    first = find_resume(resume, output_dir)
    if first is None:
        return None, None, None
    if resume != "auto":
        state, path, errors = _first_intact([first])
        if state is None:
            others = [p for p in iteration_checkpoints(first.parent) if p.resolve() != first.resolve()]
            intact = _first_intact(others)[1]
            raise WeightsError(errors[0] + (f"; the newest intact checkpoint beside it is {intact}" if intact else ""))
        return state, path, None
    folder = output_dir / "checkpoints"
    state, path, errors = _first_intact(list(dict.fromkeys([first, *iteration_checkpoints(folder)])))
    if state is None:
        raise WeightsError(f"no intact checkpoint in {folder} ({'; '.join(errors)}); start afresh with a new "
                           "--output-dir or --overwrite")
    return state, path, (f"{'; '.join(errors)}: resuming from {path} instead" if errors else None)


def _first_intact(paths: list[Path]) -> tuple[dict | None, Path | None, list[str]]:
    """(state, path) of the first of ``paths`` that loads, and why the ones before it did not."""
    errors = []
    for path in paths:
        try:
            return load_checkpoint(path), path, errors
        except WeightsError as err:
            errors.append(str(err))
    return None, None, errors


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files that killed :func:`save_checkpoint` calls left behind."""
    stale = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
