"""Media inputs for detect.py: image files, folders of images, video files and cameras."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["InputError", "Source", "expand_inputs", "read_image_rgb", "video_frames", "IMAGE_SUFFIXES",
           "VIDEO_SUFFIXES"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class InputError(Exception):
    """An input that cannot be used; its message names the input."""


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` is ``"image"``, ``"video"`` or ``"camera"``; ``target`` its path or index."""

    kind: str
    target: str

    @property
    def name(self) -> str:
        return f"camera{self.target}" if self.kind == "camera" else Path(self.target).stem


def expand_inputs(inputs: list[str]) -> tuple[list[Source], list[str]]:
    """Turn command-line inputs into sources; folders give their images in name order.

    Returns:
        (sources, one error line per input that names no usable media).
    """
    sources: list[Source] = []
    errors: list[str] = []
    for item in inputs:
        path = Path(item)
        if item.isdigit() and not path.exists():
            sources.append(Source("camera", item))
        elif path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                errors.append(f"{item}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            sources += [Source("image", str(p)) for p in images]
        elif not path.exists():
            errors.append(f"{item}: no such file or folder")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            sources.append(Source("image", item))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(Source("video", item))
        else:
            errors.append(f"{item}: not an image or video file (by its extension)")
    return sources, errors


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read an image file -> HxWx3 uint8 RGB; :class:`InputError` if unreadable."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise InputError(f"{path}: no such file")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as err:  # e.g. a header claiming more pixels than OpenCV's limit
        reason = str(err).strip().splitlines()[-1]
        limit = "more pixels than OpenCV decodes" if "MAX_IMAGE_PIXELS" in reason else reason
        raise InputError(f"{path}: cannot decode the image ({limit})") from None
    if image is None:
        raise InputError(f"{path}: cannot decode the image (corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def video_frames(source: Source, max_frames: int | None = None) -> tuple[Iterator[np.ndarray], float, tuple[int, int]]:
    """Open a video file or camera -> (RGB frames, frames per second, (width, height))."""
    capture = cv2.VideoCapture(int(source.target) if source.kind == "camera" else source.target)
    if not capture.isOpened():
        raise InputError(f"{source.target}: cannot open the {source.kind}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def frames() -> Iterator[np.ndarray]:
        count = 0
        try:
            while max_frames is None or count < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                count += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()
    return frames(), fps, size
