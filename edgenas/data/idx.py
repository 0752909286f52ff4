"""Reader for the IDX format used by MNIST and Fashion-MNIST (gzipped or raw).

Why a hand-written reader: the format is a 4-byte magic, big-endian dimensions and raw
uint8 data, so a few lines of numpy replace a torchvision dependency, and every way a
download can go wrong (wrong file, truncated, bad gzip) gets a one-line `DataError`.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from edgenas.core.errors import DataError

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions [N, H, W]
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension [N]
_GZIP_MAGIC = b"\x1f\x8b"
_KNOWN = {IMAGES_MAGIC: "uint8 images", LABELS_MAGIC: "uint8 labels"}

# The four files of an MNIST-style dataset, keyed by role.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_bytes(path: Path) -> bytes:
    """The file's (decompressed) contents; gzip is detected by suffix or by content."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read IDX file {path}: {e.strerror or e}; check the path and its permissions") from e
    if path.suffix == ".gz" or data[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(
                f"IDX file {path} is not a valid gzip file ({e}); it is corrupt or incomplete, download it again"
            ) from e
    return data


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    """Read one uint8 IDX file into an array ([N, H, W] images or [N] labels).

    `expect_magic` pins the kind of file (IMAGES_MAGIC or LABELS_MAGIC), so swapping an
    images and a labels file is reported as such instead of producing nonsense shapes.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"IDX file {path} is truncated: expected at least 4 header bytes, found {len(data)}")
    magic = int.from_bytes(data[:4], "big")
    allowed = (expect_magic,) if expect_magic is not None else tuple(_KNOWN)
    if magic not in allowed:
        want = " or ".join(f"0x{m:08X} ({_KNOWN.get(m, 'IDX')})" for m in allowed)
        raise DataError(
            f"IDX file {path} has the wrong magic number: expected {want}, found 0x{magic:08X}; is it the right file?"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"IDX file {path} is truncated: expected at least {header} header bytes, found {len(data)}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)
    if len(data) != expected:
        what = "is truncated" if len(data) < expected else "has trailing data"
        raise DataError(
            f"IDX file {path} {what}: expected {expected} bytes (dims {list(dims)}), found {len(data)}; "
            "download it again"
        )
    # bytearray gives a writable buffer, so torch.from_numpy can use it without a warning.
    return np.frombuffer(bytearray(data), dtype=np.uint8, offset=header).reshape(dims)


def find_idx_file(root: Path, stem: str) -> Path:
    """Locate `stem` as `.gz` or raw, also in the dotted spelling (`train-images.idx3-ubyte`)."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        if (root / name).is_file():
            return root / name
    raise DataError(
        f"IDX file {root / (stem + '.gz')} is missing (also looked for {stem}, {dotted}.gz and {dotted}); "
        "put the four train-/t10k- images/labels files in that folder"
    )


def load_idx_dataset(
    root: str | Path, name: str, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load `(train_x, train_y, test_x, test_y)` of an MNIST-style dataset in `root`.

    Images are uint8 [N, H, W], labels int64 [N]. With `num_classes`, labels outside
    0..num_classes-1 are rejected naming the file.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{name} folder {root} does not exist; pass --data-dir with the folder that holds "
            f"{IDX_FILES['train_images']}.gz and the other three IDX files"
        )
    paths = {role: find_idx_file(root, stem) for role, stem in IDX_FILES.items()}
    arrays = {}
    for role, path in paths.items():
        magic = IMAGES_MAGIC if role.endswith("images") else LABELS_MAGIC
        arrays[role] = read_idx(path, expect_magic=magic)
    for part in ("train", "test"):
        x, y = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(x) != len(y):
            raise DataError(
                f"IDX file {paths[f'{part}_labels']} has {len(y)} labels but {paths[f'{part}_images']} has "
                f"{len(x)} images; the two files do not belong together, download them again"
            )
        if num_classes is not None and len(y) and int(y.max()) >= num_classes:
            raise DataError(
                f"IDX file {paths[f'{part}_labels']} has label {int(y.max())} but {name} has {num_classes} classes "
                f"(0..{num_classes - 1}); is it the right dataset?"
            )
    train_shape, test_shape = arrays["train_images"].shape[1:], arrays["test_images"].shape[1:]
    if train_shape != test_shape:
        raise DataError(
            f"IDX file {paths['test_images']} has images of size {test_shape} but {paths['train_images']} has "
            f"{train_shape}; the files come from different datasets"
        )
    return (
        arrays["train_images"],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"],
        arrays["test_labels"].astype(np.int64),
    )
