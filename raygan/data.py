"""Datasets as uint8 image tensors, and the batch sampler the training loop draws from.

Every dataset loads to one ``uint8`` tensor ``(N, 3, H, W)`` at the requested resolution,
resized once here so that nothing is decoded or resized per step. ``DeviceBatches`` then keeps
that tensor on the trial's device and draws batches from it with a seeded generator: a step
costs one gather and one conversion to float, so data is never the bottleneck of a GAN step.

Datasets, by registry name:

- ``shapes`` (default): built-in procedural coloured shapes on plain or gradient backgrounds,
  generated on the fly (no files, no download), deterministic by seed, any resolution, with a
  class label per image (the shape type). It lets laptops and the test suite run the whole
  pipeline offline, and raygan's own metric extractor is trained on it.
- ``cifar10``: the 50,000 training images at 32 px, read by torchvision from a local root.
- ``stl10``: ``train+unlabeled`` (105,000 images) resized to 48 px, as the papers use it.
- ``folder``: every image under a directory (recursively), centre-cropped to a square and
  resized.

:func:`load_labelled` gives the same images with their int64 class labels and class names,
for class-conditional runs (:func:`classes` names them without loading): ``shapes``' shape
types, CIFAR-10's labels, STL-10's labelled ``train`` split (5,000 images; only its files are
checked, the unlabeled images have no labels), and one class per subfolder of a ``folder``.
Data without labels is refused in one line (:class:`DatasetUnlabelled`).

Real datasets are never downloaded unless the caller passes ``download=True``; a missing file
raises :class:`DatasetMissing` naming what is expected where. CIFAR-10 and STL-10 files are
checked against their published md5 sums before anything reads them (torchvision unpickles
CIFAR-10's batches); a file that differs raises :class:`DatasetNotPublished`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F


class DatasetMissing(ValueError):
    """A dataset's files are not where the loader looks for them."""


class DatasetNotPublished(DatasetMissing):
    """A dataset file is there but is not the published one (its md5 differs): never read.

    A :class:`DatasetMissing`, so that whatever reports a missing dataset as one line (the
    command line: exit code 2) reports this one too."""


class DatasetUnlabelled(DatasetMissing):
    """The data has no class labels (or not where they were asked for): a class-conditional
    run cannot use it.

    A :class:`DatasetMissing` (the labels are what is missing), so that the command line's
    check of a dataset reports it as one line, exit code 2, as it does a missing file."""


def cache_dir() -> Path:
    """raygan's cache root: ``$RAYGAN_CACHE``, else ``~/.cache/raygan``."""
    return Path(os.environ.get("RAYGAN_CACHE") or Path.home() / ".cache" / "raygan").expanduser()


def data_root() -> Path:
    """Where real datasets are looked for by default: ``$RAYGAN_DATA``, else the cache's data/."""
    return Path(os.environ.get("RAYGAN_DATA") or cache_dir() / "data").expanduser()


def resize(images: torch.Tensor, resolution: int, chunk: int = 4096) -> torch.Tensor:
    """Resize a uint8 batch to ``resolution`` square, antialiased, in chunks to bound memory.

    Chunking keeps the float copy small: STL-10's 105k images at 96 px would need 11 GB as
    one float tensor.
    """
    if images.shape[-2:] == (resolution, resolution):
        return images.contiguous()
    out = torch.empty((images.shape[0], 3, resolution, resolution), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].float()
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _subset_index(n: int, max_images: int | None, seed: int) -> torch.Tensor | None:
    """The sorted indices of a seeded random subset of ``n`` (None: keep all), so that a
    capped dataset still covers every class, and its labels follow its images."""
    if max_images is None or max_images >= n:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:max_images].sort().values


def _subset(images: torch.Tensor, max_images: int | None, seed: int) -> torch.Tensor:
    keep = _subset_index(images.shape[0], max_images, seed)
    return images if keep is None else images[keep]


class Labelled(NamedTuple):
    """uint8 images (N, 3, R, R), their int64 class labels (N,) and the class names: what a
    class-conditional run trains and is scored on."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]


def _labelled_subset(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    max_images: int | None,
    seed: int,
) -> Labelled:
    """The same subset of images as :func:`_subset`, with their labels."""
    keep = _subset_index(images.shape[0], max_images, seed)
    if keep is not None:
        images, labels = images[keep], labels[keep]
    return Labelled(images, labels.long(), classes)


# --------------------------------------------------------------------------- shapes

SHAPES_DEFAULT_SIZE = 50_000
_PIXELS_PER_CHUNK = 1 << 22


class Shapes(NamedTuple):
    """uint8 images (N, 3, R, R) and their labels: shape indices into ``SHAPE_CLASSES``."""

    images: torch.Tensor
    labels: torch.Tensor


def _polygon(u: torch.Tensor, v: torch.Tensor, sides: int, inradius: float) -> torch.Tensor:
    angles = [math.pi / 2 + 2 * math.pi * i / sides for i in range(sides)]
    return torch.stack([u * math.cos(a) + v * math.sin(a) for a in angles]).amax(0) - inradius


def _star(u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    theta = torch.atan2(v, u) + math.pi / 2
    tooth = ((theta * (5 / (2 * math.pi))) % 1.0 - 0.5).abs() * 2  # 1 at the 5 tips
    return (r - (0.35 + 0.65 * tooth * tooth)) * 0.5


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    arm_a = torch.maximum(u.abs() - 0.95, v.abs() - 0.3)
    arm_b = torch.maximum(u.abs() - 0.3, v.abs() - 0.95)
    return torch.minimum(arm_a, arm_b)


# Each shape as an approximate signed distance (negative inside) in its own unit frame:
# (u, v) coordinates and r = |(u, v)|.
_SHAPES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "circle": lambda u, v, r: r - 0.9,
    "square": lambda u, v, r: torch.maximum(u.abs(), v.abs()) - 0.75,
    "triangle": lambda u, v, r: _polygon(u, v, 3, 0.55),
    "ring": lambda u, v, r: (r - 0.7).abs() - 0.25,
    "cross": lambda u, v, r: _cross(u, v),
    "star": _star,
    "crescent": lambda u, v, r: torch.maximum(
        r - 0.95, 0.75 - torch.sqrt((u - 0.45) ** 2 + (v - 0.2) ** 2)
    ),
    # aspect 0.5, so that it never passes for a circle
    "ellipse": lambda u, v, r: (torch.sqrt(u * u + (v / 0.5) ** 2) - 1.0) * 0.5,
}
SHAPE_CLASSES: tuple[str, ...] = tuple(_SHAPES)


def _affine(abc: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Per-image ``a * x + b * y + c`` over the pixel grid, for abc of shape (N, 3)."""
    a, b, c = abc.T[:, :, None, None]
    return a * xs + (b * ys + c)


def make_shapes(n: int, resolution: int = 32, seed: int = 0) -> Shapes:
    """Render ``n`` shape images at ``resolution`` px, deterministic in ``seed``.

    All scene parameters are drawn up front from one seeded generator, so an image depends
    only on (seed, n, index) and renders the same scene at any resolution. Rendering is
    vectorised: one pass per shape class, in chunks of about 4M pixels.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(SHAPE_CLASSES), (n,), generator=g)
    centre = (torch.rand(n, 2, generator=g) - 0.5) * 0.6
    size = 0.4 + 0.3 * torch.rand(n, generator=g)
    angle = 2 * math.pi * torch.rand(n, generator=g)
    bg_a = torch.rand(n, 3, generator=g)
    gradient = torch.rand(n, generator=g) < 0.5
    bg_b = torch.where(gradient[:, None], torch.rand(n, 3, generator=g), bg_a)
    direction = 2 * math.pi * torch.rand(n, generator=g)
    fg = torch.rand(n, 3, generator=g)
    # keep the shape visible: move its colour away from the background's mean
    too_close = (fg - (bg_a + bg_b) / 2).norm(dim=1) < 0.4
    fg = torch.where(too_close[:, None], (fg + 0.5) % 1.0, fg)

    # every per-pixel quantity is affine in the pixel grid: p = a * x + b * y + c per image
    cos_a, sin_a = torch.cos(angle) / size, torch.sin(angle) / size
    cx, cy = centre[:, 0], centre[:, 1]
    u_abc = torch.stack([cos_a, sin_a, -(cx * cos_a + cy * sin_a)], 1)
    v_abc = torch.stack([-sin_a, cos_a, cx * sin_a - cy * cos_a], 1)
    t_abc = torch.stack(
        [0.35 * torch.cos(direction), 0.35 * torch.sin(direction), 0.5 + 0 * size], 1
    )
    px_per_unit = size * (resolution / 2)

    axis = (torch.arange(resolution, dtype=torch.float32) + 0.5) * (2 / resolution) - 1
    xs, ys = axis[None, None, :], axis[None, :, None]
    images = torch.empty((n, 3, resolution, resolution), dtype=torch.uint8)
    chunk = max(1, _PIXELS_PER_CHUNK // (resolution * resolution))
    for k, distance in enumerate(_SHAPES.values()):
        for idx in (labels == k).nonzero().squeeze(1).split(chunk):
            u, v = _affine(u_abc[idx], xs, ys), _affine(v_abc[idx], xs, ys)
            d = distance(u, v, torch.sqrt(u * u + v * v))
            # signed distance -> coverage, with a one-pixel soft edge for antialiasing
            alpha = (0.5 - d * px_per_unit[idx, None, None]).clamp_(0, 1)[:, None]
            t = _affine(t_abc[idx], xs, ys).clamp_(0, 1)[:, None]
            a, b, f = (c[idx, :, None, None] for c in (bg_a, bg_b, fg))
            img = torch.lerp(a + (b - a) * t, f, alpha)
            images[idx] = img.mul_(255).round_().to(torch.uint8)
    return Shapes(images, labels)


def _load_shapes(
    root: Path | None, resolution: int, max_images: int | None, seed: int, download: bool
) -> torch.Tensor:
    return make_shapes(max_images or SHAPES_DEFAULT_SIZE, resolution, seed).images


def _labelled_shapes(
    root: Path | None, resolution: int, max_images: int | None, seed: int, download: bool
) -> Labelled:
    shapes = make_shapes(max_images or SHAPES_DEFAULT_SIZE, resolution, seed)
    return Labelled(shapes.images, shapes.labels.long(), SHAPE_CLASSES)


# --------------------------------------------------------------------------- torchvision


def _presence_checked(cls: type) -> type:
    """``cls`` with its md5 sums blanked, so that torchvision checks files exist, not content.

    raygan checks the content itself first (:func:`_verify`), before the class is built:
    torchvision would otherwise hash every file again at every construction (2.6 GB for
    STL-10, at every trial start).
    """
    attrs: dict = {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
    }
    if hasattr(cls, "meta"):
        attrs["meta"] = {**cls.meta, "md5": None}
    return type(f"PresenceChecked{cls.__name__}", (cls,), attrs)


@functools.cache
def _torchvision(name: str) -> tuple[type, type]:
    """A torchvision dataset class and its presence-checked subclass, imported on first use:
    torchvision takes seconds to import, and most runs (``shapes``) never need it."""
    from torchvision import datasets

    cls = getattr(datasets, name)
    return cls, _presence_checked(cls)


def _published(cls: type) -> list[tuple[str, str]]:
    """``(file name, published md5)`` of every file of a torchvision dataset, read from the
    class's own attributes (``train_list``, ``test_list``, ``meta``) at each call."""
    files = [(name, md5) for name, md5 in cls.train_list + cls.test_list]
    meta = getattr(cls, "meta", None)
    return [*files, (meta["filename"], meta["md5"])] if meta else files


def _expected_files(cls: type) -> list[str]:
    return [name for name, _ in _published(cls)]


def _missing(root: Path | str, folder: str, names: list[str]) -> list[str]:
    return [name for name in names if not (Path(root) / folder / name).is_file()]


def _require(root: Path, cls: type, title: str, home: str, download: bool) -> None:
    """Every file is present: else download the archive (``download``; torchvision checks its
    published md5) or raise :class:`DatasetMissing`."""
    missing = _missing(root, cls.base_folder, _expected_files(cls))
    if missing and not download:
        raise DatasetMissing(
            f"{title} not found: expected {root / cls.base_folder}/{{{','.join(missing)}}}; "
            f"extract {cls.filename} from {home} into {root} (or set RAYGAN_DATA to where it "
            f"is), or ask for a download (--download; download=True in Python)"
        )
    if missing:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verified_path() -> Path:
    return cache_dir() / "verified-datasets.json"


def _stamp(path: Path, md5: str) -> dict[str, int | str]:
    """What a cached verification of ``path`` is valid for: the md5 it matched, and the file's
    size, inode, mtime and ctime (a replaced file, even one given its old mtime back, has a
    new ctime)."""
    st = path.stat()
    return {
        "md5": md5,
        "size": st.st_size,
        "ino": st.st_ino,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


def _read_verified() -> dict[str, dict]:
    try:
        verified = json.loads(_verified_path().read_text())
    except (OSError, ValueError):
        return {}
    return verified if isinstance(verified, dict) else {}


def _write_verified(verified: dict[str, dict]) -> None:
    """Write the cache atomically; a cache that can't be written only means hashing again."""
    path = _verified_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(verified, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def _verify(root: Path, cls: type, title: str, home: str, cache: bool) -> None:
    """Check every file of ``cls`` under ``root`` against its published md5 before anything
    reads it; a file that differs raises :class:`DatasetNotPublished` (one line, naming it).

    Without ``cache`` every file is hashed at every call: CIFAR-10 (170 MB, about a second),
    whose batches torchvision unpickles, so a file is never trusted on anything but its
    content. With ``cache`` (STL-10: 2.6 GB, which torchvision reads as raw uint8 arrays, so
    no code can run from it) a file that matched is recorded in ``verified-datasets.json``
    under :func:`cache_dir`, keyed by its resolved path, with the md5 it matched and its
    size, inode, mtime and ctime (:func:`_stamp`); while all of those still hold it is not
    hashed again, so each file is hashed once per node. A changed or replaced file, or a
    different published md5, misses the cache and is hashed again.
    """
    folder = root / cls.base_folder
    verified = _read_verified() if cache else {}
    recorded = False
    for name, md5 in _published(cls):
        path = folder / name
        key = str(path.resolve())
        if cache and verified.get(key) == _stamp(path, md5):
            continue
        actual = _md5(path)
        if actual != md5:
            raise DatasetNotPublished(
                f"{title} file {path} is not the published file (md5 {actual}, published "
                f"{md5}); refusing to read it: replace it with the one from {home}, or "
                f"delete it and ask for a download (--download; download=True in Python)"
            )
        if cache:
            verified[key] = _stamp(path, md5)
            recorded = True
    if recorded:
        _write_verified(verified)


CIFAR10_HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"
STL10_HOME = "https://cs.stanford.edu/~acoates/stl10/"


def _cifar10(root: Path | None, download: bool) -> Any:
    """CIFAR-10's train set, once every file was checked against its published md5."""
    root = Path(root or data_root())
    cls, checked = _torchvision("CIFAR10")
    _require(root, cls, "CIFAR-10", CIFAR10_HOME, download)
    _verify(root, cls, "CIFAR-10", CIFAR10_HOME, cache=False)  # before torchvision unpickles
    return checked(str(root), train=True, download=False)


def _load_cifar10(
    root: Path | None, resolution: int, max_images: int | None, seed: int, download: bool
) -> torch.Tensor:
    images = torch.from_numpy(_cifar10(root, download).data).permute(0, 3, 1, 2)  # stored HWC
    return resize(_subset(images, max_images, seed), resolution)


def _labelled_cifar10(
    root: Path | None, resolution: int, max_images: int | None, seed: int, download: bool
) -> Labelled:
    ds = _cifar10(root, download)
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)
    found = _labelled_subset(images, torch.tensor(ds.targets), CIFAR10_CLASSES, max_images, seed)
    return found._replace(images=resize(found.images, resolution))


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")  # fmt: skip
"""CIFAR-10's classes, in label order: what its published ``batches.meta`` lists, named here
so that they are known without reading (unpickling) it."""

STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship",
                 "truck")  # fmt: skip
"""STL-10's classes, in label order: what its ``class_names.txt`` lists. Named here, not read:
that file has no published md5, so nothing raygan reports comes from it."""

STL10_LABELLED_SPLIT = "train"
"""The split a conditional run reads: the 5,000 labelled training images (``train+unlabeled``,
what :func:`load` gives, adds 100,000 images that have no labels)."""

_STL10_SPLIT_FILES: dict[str, tuple[str, ...]] = {"train": ("train_X.bin", "train_y.bin")}
"""The files a split reads where that is not every file; ``train+unlabeled`` (what
:func:`load` reads) checks all five, as it always has."""


def _only(cls: type, files: tuple[str, ...]) -> type:
    """``cls`` as if it listed only ``files``, with the md5 sums its lists hold now: what
    :func:`_require`, :func:`_verify` and torchvision's presence check then look at."""

    def kept(entries: list) -> list:
        return [[name, md5] for name, md5 in entries if name in files]

    attrs = {"train_list": kept(cls.train_list), "test_list": kept(cls.test_list)}
    return type(cls.__name__, (cls,), attrs)


def _stl10(root: Path | None, download: bool, split: str) -> Any:
    """An STL-10 split, once every file it reads was checked against its published md5 (the
    labelled ``train`` split needs neither the 2.4 GB of unlabeled images nor the test set)."""
    root = Path(root or data_root())
    cls, checked = _torchvision("STL10")
    if split in _STL10_SPLIT_FILES:
        cls = _only(cls, _STL10_SPLIT_FILES[split])
        checked = _presence_checked(cls)
    _require(root, cls, "STL-10", STL10_HOME, download)
    _verify(root, cls, "STL-10", STL10_HOME, cache=True)
    return checked(str(root), split=split, download=False)


def _load_stl10(
    root: Path | None, resolution: int, max_images: int | None, seed: int, download: bool
) -> torch.Tensor:
    images = torch.from_numpy(_stl10(root, download, "train+unlabeled").data)  # already CHW
    return resize(_subset(images, max_images, seed), resolution)


def _labelled_stl10(
    root: Path | None, resolution: int, max_images: int | None, seed: int, download: bool
) -> Labelled:
    """The labelled ``train`` split (5,000 images): the ``unlabeled`` 100,000 have none."""
    ds = _stl10(root, download, STL10_LABELLED_SPLIT)
    labels = torch.from_numpy(ds.labels.astype("int64"))  # torchvision: files' 1..10 -> 0..9
    found = _labelled_subset(torch.from_numpy(ds.data), labels, STL10_CLASSES, max_images, seed)
    return found._replace(images=resize(found.images, resolution))


# --------------------------------------------------------------------------- image folder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _all_folder_files(root: Path | None) -> list[Path]:
    """Every image under ``root``, recursively, sorted; refused in one line if there is none."""
    if root is None or not Path(root).is_dir():
        raise DatasetMissing(f"folder dataset needs root=<a directory of images>; got {root}")
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetMissing(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    return files


def _folder_files(root: Path | None, max_images: int | None, seed: int) -> list[Path]:
    """Every image under ``root`` (recursively, sorted), or a seeded subset of them."""
    return _subset_files(_all_folder_files(root), max_images, seed)


def _subset_files(files: list[Path], max_images: int | None, seed: int) -> list[Path]:
    if max_images is not None and max_images < len(files):
        g = torch.Generator().manual_seed(seed)
        files = [files[i] for i in sorted(torch.randperm(len(files), generator=g)[:max_images])]
    return files


def _folder_classes(root: Path | None) -> tuple[str, ...]:
    return _class_names(root, _all_folder_files(root))


def _class_names(root: Path, files: list[Path]) -> tuple[str, ...]:
    """The sorted names of ``root``'s subfolders that hold ``files`` (its images, found
    recursively): one class each. Loose images in ``root``, or fewer than 2 classes, are
    refused in one line: such a folder says nothing about which image is of which class."""
    parts = [p.relative_to(root).parts for p in files]
    loose = sum(len(part) == 1 for part in parts)
    classes = tuple(sorted({part[0] for part in parts if len(part) > 1}))
    if loose or len(classes) < 2:
        raise DatasetUnlabelled(
            f"folder {root}: a conditional run needs its images in one subfolder per class "
            f"(at least 2); found {len(classes)} subfolder(s) and {loose} loose image(s)"
        )
    return classes


def _decode(files: list[Path], resolution: int) -> torch.Tensor:
    """Decode once per file (images differ in size, so this step cannot be batched)."""
    from PIL import Image, ImageOps

    images = torch.empty((len(files), 3, resolution, resolution), dtype=torch.uint8)
    for i, path in enumerate(files):
        with Image.open(path) as im:
            fitted = ImageOps.fit(im.convert("RGB"), (resolution, resolution), Image.BICUBIC)
        images[i] = (
            torch.frombuffer(bytearray(fitted.tobytes()), dtype=torch.uint8)
            .view(resolution, resolution, 3)
            .permute(2, 0, 1)
        )
    return images


def _load_folder(
    root: Path | None, resolution: int, max_images: int | None, seed: int, download: bool
) -> torch.Tensor:
    return _decode(_folder_files(root, max_images, seed), resolution)


def _labelled_folder(
    root: Path | None, resolution: int, max_images: int | None, seed: int, download: bool
) -> Labelled:
    """One class per subfolder of ``root`` (sorted names), its images found recursively: the
    same images as :func:`_load_folder`, each labelled by the subfolder it is under."""
    everything = _all_folder_files(root)
    classes = _class_names(root, everything)
    files = _subset_files(everything, max_images, seed)
    labels = torch.tensor([classes.index(f.relative_to(root).parts[0]) for f in files])
    return Labelled(_decode(files, resolution), labels.long(), classes)


# --------------------------------------------------------------------------- registry


_Loader = Callable[[Path | None, int, int | None, int, bool], torch.Tensor]


@dataclass(frozen=True)
class _Labels:
    """How a dataset gives class labels: its labelled loader (the arguments of ``_Loader``),
    its class names from ``root`` alone (so that a run can be checked and its networks built
    before any image is read), and the split it reads where the dataset has several."""

    loader: Callable[[Path | None, int, int | None, int, bool], Labelled]
    classes: Callable[[Path | None], tuple[str, ...]]
    split: str | None = None


@dataclass(frozen=True)
class _Dataset:
    native_resolution: int
    loader: _Loader
    labelled: _Labels | None = None  # None: no labels, a conditional run refuses it
    resolutions: tuple[int, ...] | None = None  # the sizes a run may train at; None: any


_REGISTRY: dict[str, _Dataset] = {
    "shapes": _Dataset(32, _load_shapes, _Labels(_labelled_shapes, lambda _: SHAPE_CLASSES)),
    "cifar10": _Dataset(
        32,
        _load_cifar10,
        _Labels(_labelled_cifar10, lambda _: CIFAR10_CLASSES, "train"),
        (32,),  # its images are 32 px: a larger run would learn upsampled blur
    ),
    "stl10": _Dataset(
        48,
        _load_stl10,
        _Labels(_labelled_stl10, lambda _: STL10_CLASSES, STL10_LABELLED_SPLIT),
        (48, 64),  # the papers' 48, or 64 (its images are 96 px)
    ),
    "folder": _Dataset(32, _load_folder, _Labels(_labelled_folder, _folder_classes)),
}
DATASETS: tuple[str, ...] = tuple(_REGISTRY)
DEFAULT_DATASET = "shapes"


def _entry(name: str) -> _Dataset:
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return _REGISTRY[name]


def native_resolution(name: str) -> int:
    """The resolution a dataset is trained at by default (``folder`` has none: 32)."""
    return _entry(name).native_resolution


def load(
    name: str = DEFAULT_DATASET,
    *,
    root: str | os.PathLike | None = None,
    resolution: int | None = None,
    max_images: int | None = None,
    seed: int = 0,
    download: bool = False,
) -> torch.Tensor:
    """Load dataset ``name`` as a uint8 tensor (N, 3, R, R).

    ``resolution`` defaults to the dataset's native one. ``max_images`` keeps a random subset
    chosen by ``seed`` (for ``shapes`` it is the number generated, default 50,000; ``seed``
    also picks the images). ``root`` defaults to :func:`data_root`; ``folder`` requires it.
    """
    entry, resolution = _checked(name, resolution, max_images)
    return entry.loader(Path(root) if root else None, resolution, max_images, seed, download)


def _checked(name: str, resolution: int | None, max_images: int | None) -> tuple[_Dataset, int]:
    """The dataset's entry and the resolution asked for (its native one by default)."""
    entry = _entry(name)
    resolution = resolution or entry.native_resolution
    if resolution < 1 or (max_images is not None and max_images < 1):
        raise ValueError(f"resolution and max_images must be positive: {resolution}, {max_images}")
    return entry, resolution


def load_labelled(
    name: str = DEFAULT_DATASET,
    *,
    root: str | os.PathLike | None = None,
    resolution: int | None = None,
    max_images: int | None = None,
    seed: int = 0,
    download: bool = False,
    split: str | None = None,
) -> Labelled:
    """Dataset ``name`` with its int64 class labels, for a class-conditional run: the images
    :func:`load` gives for the same arguments, the same ``max_images`` subset, each with its
    label. ``stl10`` is the exception: its labelled ``train`` split (5,000 images), since
    the unlabeled images :func:`load` adds have none. ``split`` may only name the split read
    (``"train"``, for ``cifar10`` and ``stl10``); data without labels is refused in one line
    (:class:`DatasetUnlabelled`)."""
    entry, resolution = _checked(name, resolution, max_images)
    labels = _labels(name, entry, split)
    return labels.loader(Path(root) if root else None, resolution, max_images, seed, download)


def load_training(
    name: str,
    *,
    labelled: bool,
    root: str | os.PathLike | None = None,
    resolution: int | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A run's training images and, when ``labelled`` (a class-conditional run), their
    labels: :func:`load` or :func:`load_labelled`, as every trainer reads its data."""
    options = {"root": root, "resolution": resolution, "max_images": max_images, "seed": seed}
    if not labelled:
        return load(name, **options), None
    found = load_labelled(name, **options)
    return found.images, found.labels


def _labels(name: str, entry: _Dataset, split: str | None) -> _Labels:
    """The dataset's labels, if it has them in ``split``: else one line saying why not."""
    labels = entry.labelled
    if labels is None:
        raise DatasetUnlabelled(f"dataset {name!r} has no class labels")
    if split is not None and split != labels.split:
        read = f"its labelled {labels.split!r} split" if labels.split else "no split"
        raise DatasetUnlabelled(
            f"dataset {name!r} split {split!r} cannot be loaded with labels: a conditional "
            f"search uses {read} (split={labels.split!r}, the default)"
        )
    return labels


def resolutions(name: str) -> tuple[int, ...] | None:
    """The sizes dataset ``name`` may be trained at (None: any, ``shapes`` and ``folder``)."""
    return _entry(name).resolutions


def classes(name: str = DEFAULT_DATASET, root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The class names of dataset ``name``, in label order, without loading its images:
    what a conditional run needs to check its data and build its networks first. The
    refusals of :func:`load_labelled` (no labels; a folder not laid out by class) apply."""
    return _labels(name, _entry(name), None).classes(Path(root) if root else None)


def num_classes(name: str = DEFAULT_DATASET, root: str | os.PathLike | None = None) -> int:
    """How many classes :func:`load_labelled` labels ``name``'s images with."""
    return len(classes(name, root))


# --------------------------------------------------------------------------- batches


class DeviceBatches:
    """Training batches drawn from a uint8 image tensor held on the trial's device.

    The images move to ``device`` once; each :meth:`sample` gathers indices on the device and
    converts only that batch to float in [-1, 1]. Batches walk through seeded random
    permutations (every image once per epoch), so a run is reproducible from ``seed``.
    ``labels`` (a conditional run's) move with them: :meth:`sample_labelled` draws the same
    indices as :meth:`sample`, with their labels.
    """

    def __init__(
        self,
        images: torch.Tensor,
        device: str | torch.device = "cpu",
        *,
        seed: int = 0,
        channels_last: bool = False,
        labels: torch.Tensor | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels is not None and labels.shape != (images.shape[0],):
            raise ValueError(f"expected one label per image, got {tuple(labels.shape)}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = None if labels is None else labels.long().to(self.device)
        self.channels_last = channels_last
        self._gen = torch.Generator(device=self.device).manual_seed(seed)
        self._order = self._permutation()
        self._pos = 0
        self._drawn = 0

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def epoch(self) -> float:
        """Images drawn so far, in passes over the dataset."""
        return self._drawn / len(self)

    def _permutation(self) -> torch.Tensor:
        return torch.randperm(len(self), generator=self._gen, device=self.device)

    def _indices(self, batch_size: int) -> torch.Tensor:
        parts, need = [], batch_size
        while need:
            if self._pos == len(self):
                self._order, self._pos = self._permutation(), 0
            take = min(need, len(self) - self._pos)
            parts.append(self._order[self._pos : self._pos + take])
            self._pos += take
            need -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def state_dict(self) -> dict[str, object]:
        """Where the sampler stands (RNG, permutation, position): resuming replays exactly."""
        return {
            "rng": self._gen.get_state(),
            "order": self._order.cpu(),
            "pos": self._pos,
            "drawn": self._drawn,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self._gen.set_state(state["rng"].cpu())  # loaded with map_location, may be on a GPU
        self._order = state["order"].to(self.device)
        self._pos = int(state["pos"])
        self._drawn = int(state["drawn"])

    def sample(self, batch_size: int) -> torch.Tensor:
        """A float batch (B, 3, H, W) in [-1, 1] on the device."""
        return self._batch(self._indices(batch_size))

    def sample_labelled(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A float batch as :meth:`sample`, and its labels (B,)."""
        if self.labels is None:
            raise ValueError("these batches hold no labels (DeviceBatches(labels=...))")
        index = self._indices(batch_size)
        return self._batch(index), self.labels.index_select(0, index)

    def _batch(self, index: torch.Tensor) -> torch.Tensor:
        x = self.images.index_select(0, index)
        self._drawn += index.shape[0]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.float().mul_(2 / 255).sub_(1)
