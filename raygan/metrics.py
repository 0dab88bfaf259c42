"""IS, FID and KID of a generator, computed by torch-fidelity, offline when it has to be.

:func:`evaluate` hands the generator itself to ``torch_fidelity.calculate_metrics`` (no
images on disk) and compares it with a :class:`Reference`, the real data, whose features and
statistics are computed once per (dataset, resolution, image count, extractor) and cached
under the raygan cache (``$RAYGAN_CACHE``, default ``~/.cache/raygan``), never per trial.

Two feature extractors are registered (``EXTRACTORS``):

- ``inception-v3-compat``: torch-fidelity's InceptionV3, the standard; its numbers are
  comparable with the papers'. Used when its weights are on this machine: the file given as
  ``inception_weights=`` or ``$RAYGAN_INCEPTION_WEIGHTS``, or the copy torch-fidelity
  downloaded before into the torch hub cache. Asked for by name without a local file,
  torch-fidelity downloads it.
- ``raygan-shapes-v1``: raygan's own, for machines without those weights (an offline laptop,
  the test suite). A small CNN (four conv-BN-ReLU layers on 32 px input) trained to classify
  the shape in the built-in ``shapes`` dataset; its 8 class logits give the Inception Score
  (at most 8). Its FID/KID features are the trunk's average- and max-pooled activations
  (shape) joined with a 4x4 colour thumbnail of the image (colour and layout), so FID sees
  wrong colours as well as wrong shapes. raygan ships its weights: training is deterministic
  on one machine (fixed seed, fixed data, one CPU thread; about 20 s of one core), but another
  CPU can round differently, and the scores of one version must compare everywhere. Its
  numbers are NOT comparable with Inception numbers, nor with the papers; results also carry
  a digest of the weights that produced them.

``extractor="auto"`` picks Inception when its weights are present, else raygan's own. Every
result records the extractor and the sample count, so numbers from different extractors
are never compared.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from torch import nn
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from raygan import data

INCEPTION = "inception-v3-compat"
SHAPES_EXTRACTOR = "raygan-shapes-v1"
AUTO = "auto"
ISC_SPLITS = 10
KID_SUBSET_SIZE = 1000

# --------------------------------------------------------------------------- own extractor


class ShapesNet(nn.Module):
    """The network behind ``raygan-shapes-v1``: float images in [-1, 1] at 32 px in; FID/KID
    features and shape-class logits out.

    The conv trunk sees each image minus its mean colour, which makes shape classification
    learnable in a few hundred steps (it need not first learn to ignore the background). The
    colour that removes is given back to the features as a 4x4 thumbnail of the image, so
    they describe the shape (average- and max-pooled trunk activations, 256 values) and the
    colour layout (48 values).
    """

    INPUT_SIZE = 32
    FEATURE_DIM = 2 * 128 + 3 * 4 * 4

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out, stride in ((3, 32, 2), (32, 64, 2), (64, 96, 2), (96, 128, 1)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.trunk = nn.Sequential(*layers)
        self.classes = nn.Linear(2 * 128, len(data.SHAPE_CLASSES))

    @classmethod
    def prepare(cls, images: torch.Tensor) -> torch.Tensor:
        """uint8 images of any size -> float in [-1, 1] at the network's 32 px."""
        x = images.float()
        if x.shape[-2:] != (cls.INPUT_SIZE, cls.INPUT_SIZE):
            size = (cls.INPUT_SIZE, cls.INPUT_SIZE)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return x.div_(127.5).sub_(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x - x.mean((2, 3), keepdim=True))
        shape = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        colour = F.adaptive_avg_pool2d(x, 4).flatten(1)
        return torch.cat([shape, colour], 1), self.classes(shape)


TRAIN_STEPS = 400
TRAIN_BATCH = 64
TRAIN_IMAGES = 16_000
TRAIN_SEED = 20_240_601


def train_shapes_net(
    steps: int = TRAIN_STEPS, seed: int = TRAIN_SEED, num_images: int = TRAIN_IMAGES
) -> ShapesNet:
    """Train :class:`ShapesNet` from scratch, deterministically.

    Everything random (initial weights, data, batch order) comes from ``seed``. Training runs
    on the CPU with one thread, wherever it runs: parallel reductions would make the weights
    depend on the thread count, and a second thread slows it down badly on a busy host (Ray
    trials share the cores). A quarter of the images are rendered at 16 px and a quarter at
    48 px, then brought to 32 px like any input, so that the classifier holds for generators
    at other resolutions.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ShapesNet()
    quarter = num_images // 4
    parts = [
        data.make_shapes(2 * quarter, 32, seed),
        data.make_shapes(quarter, 16, seed + 1),
        data.make_shapes(quarter, 48, seed + 2),
    ]
    images = torch.cat([ShapesNet.prepare(p.images) for p in parts])
    labels = torch.cat([p.labels for p in parts])

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net.train()
        for _ in range(steps):
            idx = torch.randint(images.shape[0], (TRAIN_BATCH,), generator=g)
            loss = F.cross_entropy(net(images[idx])[1], labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise one-off work (training, reference statistics) among processes on a host."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shapes_extractor_weights() -> Path:
    """The ``raygan-shapes-v1`` weights raygan ships (``raygan/extractors``): trained once
    with :func:`train_shapes_net`'s defaults and fixed since, so that its scores compare
    across machines (training again on another CPU can round differently, and 400 steps of
    training carry that into the weights)."""
    return Path(str(resources.files("raygan").joinpath("extractors", f"{SHAPES_EXTRACTOR}.pt")))


class ShapesFeatureExtractor(FeatureExtractorBase):
    """``raygan-shapes-v1`` as torch-fidelity sees it: uint8 images in, the requested
    features out ("features" for FID/KID, "logits" for the Inception Score)."""

    FEATURES = ("features", "logits")

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(name, features_list)
        self.net = ShapesNet()
        path = feature_extractor_weights_path or shapes_extractor_weights()
        self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ShapesFeatureExtractor.FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.FEATURES, self.net(ShapesNet.prepare(images)), strict=True))
        return tuple(named[name] for name in self.features_list)


if SHAPES_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(SHAPES_EXTRACTOR, ShapesFeatureExtractor)

# --------------------------------------------------------------------------- extractor choice


@dataclass(frozen=True)
class Extractor:
    """A resolved feature extractor: its torch-fidelity name and local weights file
    (``None``: torch-fidelity downloads its own)."""

    name: str
    weights: Path | None

    @property
    def tag(self) -> str:
        """Identifies the weights in cache keys, so changed weights never reuse statistics."""
        return _file_digest(self.weights) if self.weights else "download"


def _inception_weights(explicit: str | os.PathLike | None) -> Path | None:
    given = explicit or os.environ.get("RAYGAN_INCEPTION_WEIGHTS")
    if given:
        if not Path(given).is_file():
            raise FileNotFoundError(f"Inception weights not found: {given}")
        return Path(given)
    hub_copy = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(URL_INCEPTION_V3)
    return hub_copy if hub_copy.is_file() else None


_WEIGHTS: dict[str, Callable[[str | os.PathLike | None, Path], Path | None]] = {
    INCEPTION: lambda explicit, cache: _inception_weights(explicit),
    SHAPES_EXTRACTOR: lambda explicit, cache: shapes_extractor_weights(),
}
EXTRACTORS: tuple[str, ...] = tuple(_WEIGHTS)


def resolve_extractor(
    extractor: str = AUTO,
    *,
    inception_weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Extractor:
    """Turn an extractor choice into a name and a weights file.

    A search should resolve ``auto`` once and pass the result's name to every trial, so that
    workers with and without Inception weights never mix extractors in one search.
    """
    if extractor != AUTO and extractor not in EXTRACTORS:
        allowed = ", ".join((AUTO, *EXTRACTORS))
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {allowed}")
    cache = Path(cache_dir or data.cache_dir())
    if extractor == AUTO:
        extractor = INCEPTION if _inception_weights(inception_weights) else SHAPES_EXTRACTOR
    return Extractor(extractor, _WEIGHTS[extractor](inception_weights, cache))


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:12]


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


# --------------------------------------------------------------------------- reference data


@dataclass(frozen=True)
class Reference:
    """The real images a generator is compared with.

    By default they come from :func:`raygan.data.load` (``dataset``, ``resolution``,
    ``num_images`` as ``max_images``, ``root``, ``seed``); ``label`` keeps only that class's
    images of them (:func:`raygan.data.load_labelled`: the intra-FID's per-class references).
    ``images`` overrides all that with a uint8 tensor (N, 3, R, R) or a callable returning
    one. They are loaded only when their statistics are not cached yet. :attr:`key` is the
    cache identity: give custom images a ``dataset`` name of their own.
    """

    dataset: str
    resolution: int
    num_images: int | None = None
    root: str | os.PathLike | None = None
    seed: int = 0
    images: torch.Tensor | Callable[[], torch.Tensor] | None = field(
        default=None, compare=False, repr=False
    )
    label: int | None = None

    @property
    def key(self) -> str:
        count = self.num_images or "all"
        where = (
            f"-root{hashlib.sha256(str(self.root).encode()).hexdigest()[:8]}" if self.root else ""
        )
        of = "" if self.label is None else f"-class{self.label}"
        return f"{self.dataset}-{self.resolution}px-{count}-seed{self.seed}{where}{of}"

    def load(self) -> torch.Tensor:
        if self.images is None and self.label is not None:
            found = data.load_labelled(
                self.dataset,
                root=self.root,
                resolution=self.resolution,
                max_images=self.num_images,
                seed=self.seed,
            )
            images = found.images[found.labels == self.label]
        elif self.images is None:
            images = data.load(
                self.dataset,
                root=self.root,
                resolution=self.resolution,
                max_images=self.num_images,
                seed=self.seed,
            )
        else:
            images = self.images() if callable(self.images) else self.images
        expected = (3, self.resolution, self.resolution)
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"reference {self.key}: expected uint8 (N, {', '.join(map(str, expected))}), "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        return images


class _Images(Dataset):
    """A uint8 image tensor as the Dataset torch-fidelity reads, loaded on first access so
    that a cache hit never loads the real data."""

    def __init__(self, source: Reference | torch.Tensor) -> None:
        self._source = source

    @functools.cached_property
    def images(self) -> torch.Tensor:
        return self._source.load() if isinstance(self._source, Reference) else self._source

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


@dataclass(frozen=True)
class ReferenceStats:
    """What is known about a cached reference: its torch-fidelity cache name, how many images
    it holds, and their own Inception Score under the extractor (the ceiling to aim for)."""

    cache_name: str
    num_images: int
    inception_score: float


def _fidelity_options(
    extractor: Extractor, device: torch.device, batch_size: int, cache_dir: Path, seed: int
) -> dict:
    return {
        "feature_extractor": extractor.name,
        "feature_extractor_weights_path": str(extractor.weights) if extractor.weights else None,
        "cuda": device.type == "cuda",
        "batch_size": batch_size,
        "cache_root": str(cache_dir / "fidelity"),
        "rng_seed": seed,
        "isc_splits": ISC_SPLITS,
        "save_cpu_ram": True,  # in-memory tensors: DataLoader worker processes only cost
        "verbose": False,
    }


@contextlib.contextmanager
def _on(device: torch.device) -> Iterator[None]:
    """torch-fidelity moves work to the *current* CUDA device; make that ours. Its feature
    extractor runs in fp32 even under a caller's autocast: the scores must compare."""
    where = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with where, torch.autocast(device.type, enabled=False):
        yield


def generator_autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast of a generator's forward when asked, else none (an enclosing one off):
    its output only becomes uint8 images, which bf16's rounding barely moves."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def reference_statistics(
    reference: Reference,
    extractor: Extractor,
    *,
    batch_size: int = 100,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ReferenceStats:
    """Compute and cache the reference's features and FID statistics, once.

    The first caller on a host computes them under a file lock; every later call (any trial,
    any process) reads the small record written at the end and touches no image. ``device``
    defaults to the GPU where there is one.
    """
    cache = Path(cache_dir or data.cache_dir())
    cache_name = f"raygan-{reference.key}-{extractor.tag}"
    record = cache / "references" / f"{cache_name}-{extractor.name}.json"
    if not record.is_file():
        with _file_lock(record.with_suffix(".lock")):
            if not record.is_file():
                device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
                real = _Images(reference.load())
                with _on(device):
                    result = torch_fidelity.calculate_metrics(
                        input1=real,
                        input1_cache_name=cache_name,
                        input2=real,
                        input2_cache_name=cache_name,
                        isc=True,
                        fid=True,
                        **_fidelity_options(extractor, device, batch_size, cache, seed=0),
                    )
                info = {
                    "cache_name": cache_name,
                    "num_images": len(real),
                    "inception_score": result[torch_fidelity.KEY_METRIC_ISC_MEAN],
                }
                tmp = record.with_suffix(".tmp")
                tmp.write_text(json.dumps(info))
                tmp.replace(record)
    return ReferenceStats(**json.loads(record.read_text()))


# --------------------------------------------------------------------------- evaluation


class _Uint8Output(nn.Module):
    """A generator's [-1, 1] output as the uint8 images torch-fidelity expects; ``bf16``: the
    generator alone runs under bf16 autocast, its output back in fp32 before the rounding."""

    def __init__(self, generator: nn.Module, device: torch.device, bf16: bool = False) -> None:
        super().__init__()
        self.generator = generator
        self.device = device
        self.bf16 = bf16

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with generator_autocast(self.device, self.bf16):
            x = self.generator(z.to(self.device))
        return x.float().add(1).mul_(127.5).add_(0.5).clamp_(0, 255).to(torch.uint8)


def evaluate(
    generator: nn.Module,
    *,
    reference: str | Reference,
    num_samples: int,
    extractor: str = AUTO,
    batch_size: int = 100,
    device: str | torch.device | None = None,
    kid: bool = False,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    inception_weights: str | os.PathLike | None = None,
    bf16: bool = False,
) -> dict:
    """IS, FID (and KID) of ``generator`` against ``reference``, from ``num_samples`` samples.

    ``generator`` has ``latent_dim`` and ``resolution`` and maps N(0, 1) noise to images in
    [-1, 1]. ``reference`` is a :class:`Reference` or a dataset name (at the generator's
    resolution). ``device`` defaults to the generator's; ``seed`` fixes the noise, the IS
    splits and the KID subsets. The generator's train/eval mode is restored afterwards.
    ``bf16``: the generator runs under bf16 autocast (faster; its images barely change); the
    feature extractor always runs in fp32, so that its scores compare with fp32 runs'.

    Returns ``is``, ``is_std``, ``fid`` (``kid``, ``kid_std`` when asked), ``extractor``,
    ``extractor_weights`` (digest of its weights file), ``num_samples``, ``reference`` (its
    cache key) and ``reference_images``. A class-conditional generator (``num_classes`` set)
    is scored on class-balanced samples and adds ``intra_fid``, ``class_fid`` and, where the
    extractor knows the classes, ``class_accuracy`` (:func:`raygan.class_metrics.evaluate`).
    """
    if isinstance(reference, str):
        reference = Reference(reference, generator.resolution)
    if reference.resolution != generator.resolution:
        raise ValueError(
            f"generator makes {generator.resolution} px images but the reference "
            f"{reference.key} is {reference.resolution} px"
        )
    if num_samples < ISC_SPLITS:
        raise ValueError(
            f"num_samples must be at least {ISC_SPLITS} (IS splits), got {num_samples}"
        )
    if getattr(generator, "num_classes", None) is not None:
        return _evaluate_conditional(
            generator, reference, num_samples, extractor, kid, seed, cache_dir, inception_weights,
            bf16,
        )  # fmt: skip
    cache = Path(cache_dir or data.cache_dir())
    chosen = resolve_extractor(extractor, inception_weights=inception_weights, cache_dir=cache)
    if device is None:
        device = next((p.device for p in generator.parameters()), torch.device("cpu"))
    device = torch.device(device)
    stats = reference_statistics(
        reference, chosen, batch_size=batch_size, device=device, cache_dir=cache
    )
    was_training = generator.training  # the wrapper below switches it to eval mode
    model = torch_fidelity.GenerativeModelModuleWrapper(
        _Uint8Output(generator, device, bf16), int(generator.latent_dim), "normal", 0
    )
    try:
        out = _score(
            model, num_samples, reference, stats, chosen, device, batch_size, cache, seed, kid
        )
    finally:
        generator.train(was_training)
    return out


def _evaluate_conditional(
    generator: nn.Module,
    reference: Reference,
    num_samples: int,
    extractor: str,
    kid: bool,
    seed: int,
    cache_dir: str | os.PathLike | None,
    inception_weights: str | os.PathLike | None,
    bf16: bool = False,
) -> dict:
    """A class-conditional generator's scores (:mod:`raygan.class_metrics`): class-balanced
    samples, so every caller of :func:`evaluate` scores one the same way."""
    from raygan import class_metrics  # it builds on this module

    if kid:
        raise ValueError("KID is not scored for a class-conditional generator")
    return class_metrics.evaluate(
        generator,
        reference=reference,
        num_classes=generator.num_classes,
        num_samples=num_samples,
        extractor=extractor,
        seed=seed,
        cache_dir=cache_dir,
        inception_weights=inception_weights,
        bf16=bf16,
    )


def score_images(
    images: torch.Tensor,
    *,
    reference: Reference,
    extractor: Extractor,
    batch_size: int = 100,
    device: str | torch.device = "cpu",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    isc: bool = True,
) -> dict:
    """IS and FID (as :func:`evaluate`'s; ``isc=False``: FID only) of generated uint8 images
    (N, 3, R, R) against ``reference``: for samples made once and scored several ways (a
    conditional generator's, as a whole and class by class)."""
    cache, device = Path(cache_dir or data.cache_dir()), torch.device(device)
    stats = reference_statistics(
        reference, extractor, batch_size=batch_size, device=device, cache_dir=cache
    )
    return _score(
        _Images(images),
        len(images),
        reference,
        stats,
        extractor,
        device,
        batch_size,
        cache,
        seed,
        isc=isc,
    )


def _score(
    input1: object,
    num_samples: int,
    reference: Reference,
    stats: ReferenceStats,
    chosen: Extractor,
    device: torch.device,
    batch_size: int,
    cache: Path,
    seed: int,
    kid: bool = False,
    isc: bool = True,
) -> dict:
    """torch-fidelity on ``input1`` (a generator wrapper or images) against the reference's
    cached statistics."""
    with _on(device):
        result = torch_fidelity.calculate_metrics(
            input1=input1,
            input1_model_num_samples=num_samples,
            input2=_Images(reference),
            input2_cache_name=stats.cache_name,
            isc=isc,
            fid=True,
            kid=kid,
            kid_subset_size=min(KID_SUBSET_SIZE, num_samples, stats.num_images),
            **_fidelity_options(chosen, device, batch_size, cache, seed),
        )
    out = {}
    if isc:
        out["is"] = result[torch_fidelity.KEY_METRIC_ISC_MEAN]
        out["is_std"] = result[torch_fidelity.KEY_METRIC_ISC_STD]
    out["fid"] = result[torch_fidelity.KEY_METRIC_FID]
    if kid:
        out["kid"] = result[torch_fidelity.KEY_METRIC_KID_MEAN]
        out["kid_std"] = result[torch_fidelity.KEY_METRIC_KID_STD]
    return {
        **out,
        "extractor": chosen.name,
        "extractor_weights": chosen.tag,
        "num_samples": num_samples,
        "reference": reference.key,
        "reference_images": stats.num_images,
    }
