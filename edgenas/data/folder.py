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
    skipped: list[Path]  # unreadable headers left out (only with skip_bad)


def _probe(path: Path, skip_bad: bool = False) -> tuple[str, tuple[int, int]] | None:
    """Mode and size from the image header (PIL opens lazily, so pixels are not decoded).

    An unreadable header is a `DataError` naming the file, or None with `skip_bad`.
    """
    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        if skip_bad:
            return None
        raise DataError(f"cannot read image {path} ({e}); remove or replace the file, or set dataset.skip_bad") from e


def scan_image_folder(root: str | Path, skip_bad: bool = False) -> FolderScan:
    """List classes (sorted sub-folder names) and their images, and read every image header.

    With `skip_bad`, files whose header cannot be read are left out and listed in `skipped`.
    """
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
    probed = [_probe(p, skip_bad) for p in files]
    keep = [i for i, pr in enumerate(probed) if pr is not None]
    if not keep:
        raise DataError(f"image folder {root} has no readable image")
    probes = [probed[i] for i in keep]
    mode = "L" if all(m in _GRAY_MODES for m, _ in probes) else "RGB"
    return FolderScan(
        class_names=tuple(d.name for d in class_dirs),
        files=[files[i] for i in keep],
        labels=np.asarray(labels, dtype=np.int64)[keep],
        mode=mode,
        first_size=probes[0][1],
        skipped=[files[i] for i, pr in enumerate(probed) if pr is None],
    )


def folder_side(scan: FolderScan, resize: int | None) -> int:
    """The common square side: `resize`, else the first image's side (its shorter side if not square)."""
    return resize if resize is not None else min(scan.first_size)


def load_image_folder(
    root: str | Path, resize: int | None = None, skip_bad: bool = False
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Load `(images uint8 [N, C, S, S], labels int64 [N], class_names)`.

    Images whose size differs from S×S are resized with PIL's bilinear filter, which
    widens its support when shrinking (i.e. antialiases), matching the tensor resize. An
    unreadable image is a `DataError` naming it, or left out with `skip_bad`.
    """
    from edgenas.data.stream import read_image

    scan = scan_image_folder(root, skip_bad)
    side = folder_side(scan, resize)
    channels = 1 if scan.mode == "L" else 3
    out = np.empty((len(scan.files), channels, side, side), dtype=np.uint8)
    kept = np.ones(len(scan.files), dtype=bool)
    for i, path in enumerate(scan.files):
        try:
            out[i] = read_image(path, scan.mode, side)
        except DataError:
            if not skip_bad:
                raise
            kept[i] = False
    if not kept.all():
        return out[kept], scan.labels[kept], scan.class_names
    return out, scan.labels, scan.class_names
