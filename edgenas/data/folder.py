"""Reader for an image folder with one sub-folder per class (`root/<class>/<image>`).

Why decide the colour mode over all images: one stray RGB image in a grayscale set must
not silently drop colour, and one grayscale image in an RGB set must not break stacking,
so the set is grayscale only if every image is single-channel, else everything is RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edgenas.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# PIL modes with one colour channel (LA: gray plus alpha, which is dropped).
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass
class FolderScan:
    """The folder's structure plus what the header of every image says."""

    class_names: tuple[str, ...]
    files: list[Path]
    labels: np.ndarray  # int64 [N], index into class_names
    mode: str  # "L" or "RGB": what every image is converted to
    first_size: tuple[int, int]  # (width, height) of the first image


def _probe(path: Path) -> tuple[str, tuple[int, int]]:
    """Mode and size from the image header (PIL opens lazily, so pixels are not decoded)."""
    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path} ({e}); remove or replace the file") from e


def scan_image_folder(root: str | Path) -> FolderScan:
    """List classes (sorted sub-folder names) and their images, and read every image header."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"image folder {root} does not exist; pass --data-dir with a folder that has one sub-folder per class"
        )
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"image folder {root} has no class sub-folders; put each class's images in its own sub-folder "
            f"(e.g. {root / 'cat' / '0001.png'})"
        )
    if len(class_dirs) < 2:
        raise DataError(
            f"image folder {root} has only one class sub-folder ({class_dirs[0].name}); add at least one more class"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        images = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise DataError(
                f"class folder {class_dir} has no images ({', '.join(IMAGE_SUFFIXES)}); add images or remove the folder"
            )
        files += images
        labels += [label] * len(images)
    probes = [_probe(p) for p in files]
    mode = "L" if all(m in _GRAY_MODES for m, _ in probes) else "RGB"
    return FolderScan(
        class_names=tuple(d.name for d in class_dirs),
        files=files,
        labels=np.asarray(labels, dtype=np.int64),
        mode=mode,
        first_size=probes[0][1],
    )


def folder_side(scan: FolderScan, resize: int | None) -> int:
    """The common square side: `resize`, else the first image's side (its shorter side if not square)."""
    return resize if resize is not None else min(scan.first_size)


def load_image_folder(root: str | Path, resize: int | None = None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Load `(images uint8 [N, C, S, S], labels int64 [N], class_names)`.

    Images whose size differs from S×S are resized with PIL's bilinear filter, which
    widens its support when shrinking (i.e. antialiases), matching the tensor resize.
    """
    scan = scan_image_folder(root)
    side = folder_side(scan, resize)
    channels = 1 if scan.mode == "L" else 3
    out = np.empty((len(scan.files), channels, side, side), dtype=np.uint8)
    for i, path in enumerate(scan.files):
        try:
            with Image.open(path) as im:
                im = im.convert(scan.mode)
                if im.size != (side, side):
                    im = im.resize((side, side), Image.Resampling.BILINEAR)
                pixels = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {path} ({e}); remove or replace the file") from e
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return out, scan.labels, scan.class_names
