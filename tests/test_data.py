"""raygan.data: real torchvision loaders on files written in the datasets' own formats, the
image folder, the procedural ``shapes`` set, and the device batch sampler.

The files the tests write are small, so they are not the published CIFAR-10 and STL-10 files
and raygan's md5 check refuses them. A test that loads them makes them "published" with
:func:`publish`, which patches torchvision's class attributes (``train_list``, ``test_list``,
``meta``), where raygan reads the published md5 sums, with the sums of the files just written,
for that test only (``monkeypatch``). raygan itself has no hook for adding sums: its check runs
unchanged in every test (hashing, comparing, the STL-10 cache), and only the expected values
differ; the malicious-file tests patch in the sums of the benign files, then swap one file.
"""

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10, STL10

from raygan import data


def _pattern(n: int, size: int, seed: int) -> np.ndarray:
    """Distinct random uint8 images (N, 3, size, size)."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def write_cifar10(root, per_batch: int = 4) -> np.ndarray:
    """Write CIFAR-10's python format (pickled dicts of flat CHW rows); return the train set."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    train = []
    for i, (name, _) in enumerate(CIFAR10.train_list + CIFAR10.test_list):
        images = _pattern(per_batch, 32, seed=i)
        batch = {
            "batch_label": name,
            "data": images.reshape(per_batch, 3072),
            "labels": [int(x) for x in np.arange(per_batch) % 10],
            "filenames": [f"{name}_{j}.png" for j in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
        if name.startswith("data_batch"):
            train.append(images)
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    with open(folder / CIFAR10.meta["filename"], "wb") as f:
        pickle.dump(meta, f)
    return np.concatenate(train)


def write_stl10(root) -> np.ndarray:
    """Write STL-10's binary format (column-major 96x96 planes); return train+unlabeled."""
    folder = root / STL10.base_folder
    folder.mkdir(parents=True)
    images = {
        "train": _pattern(3, 96, 1),
        "unlabeled": _pattern(2, 96, 2),
        "test": _pattern(2, 96, 3),
    }
    for split, x in images.items():
        x.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")
        if split != "unlabeled":
            (np.arange(len(x), dtype=np.uint8) % 10 + 1).tofile(folder / f"{split}_y.bin")
    return np.concatenate([images["train"], images["unlabeled"]])


def publish(monkeypatch, cls, root) -> None:
    """Make the files written under ``root`` the published ones for this test: torchvision's
    md5 lists on ``cls`` hold their sums until the test ends (see the module docstring). A
    file not written keeps its published sum."""
    folder = root / cls.base_folder

    def md5(name, published):
        path = folder / name
        return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else published

    def listed(files):
        return [[name, md5(name, published)] for name, published in files]

    monkeypatch.setattr(cls, "train_list", listed(cls.train_list))
    monkeypatch.setattr(cls, "test_list", listed(cls.test_list))
    if hasattr(cls, "meta"):
        [[_, md5]] = listed([[cls.meta["filename"], None]])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5})


@pytest.fixture
def hashed(monkeypatch):
    """The names of the files raygan hashes, in order, as the test goes."""
    names: list[str] = []
    real = data._md5

    def counting(path):
        names.append(path.name)
        return real(path)

    monkeypatch.setattr(data, "_md5", counting)
    return names


class CreatesMarker:
    """Unpickling this opens (creates) ``marker``: what a malicious pickle can do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cifar10_through_torchvision(tmp_path, monkeypatch):
    expected = write_cifar10(tmp_path)
    publish(monkeypatch, CIFAR10, tmp_path)
    images = data.load("cifar10", root=tmp_path)
    assert images.dtype == torch.uint8 and images.shape == (20, 3, 32, 32)
    assert torch.equal(images, torch.from_numpy(expected))
    assert data.load("cifar10", root=tmp_path, resolution=16).shape == (20, 3, 16, 16)
    subset = data.load("cifar10", root=tmp_path, max_images=5, seed=3)
    assert subset.shape[0] == 5
    assert torch.equal(subset, data.load("cifar10", root=tmp_path, max_images=5, seed=3))


def test_stl10_is_train_plus_unlabeled_at_48(tmp_path, monkeypatch):
    expected = torch.from_numpy(write_stl10(tmp_path))
    publish(monkeypatch, STL10, tmp_path)
    images = data.load("stl10", root=tmp_path)
    assert images.shape == (5, 3, 48, 48)
    assert torch.equal(data.load("stl10", root=tmp_path, resolution=96), expected)
    assert torch.equal(images, data.resize(expected, 48))


@pytest.mark.parametrize(
    ("name", "folder", "file"),
    [
        ("cifar10", "cifar-10-batches-py", "data_batch_1"),
        ("stl10", "stl10_binary", "unlabeled_X.bin"),
    ],
)
def test_missing_files_name_what_and_where(tmp_path, name, folder, file):
    with pytest.raises(data.DatasetMissing) as err:
        data.load(name, root=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert f"{tmp_path / folder}" in message and file in message and "download=True" in message


def test_missing_files_are_listed_not_present_ones(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(data.DatasetMissing, match=r"\{test_batch\}"):
        data.load("cifar10", root=tmp_path)


def test_files_that_are_not_the_published_ones_are_refused(tmp_path):
    """torchvision's own published sums (nothing patched): the small files written here are
    not CIFAR-10's or STL-10's, so raygan refuses them, naming the first file."""
    write_cifar10(tmp_path)
    write_stl10(tmp_path)
    for name, folder, file in [
        ("cifar10", "cifar-10-batches-py", "data_batch_1"),
        ("stl10", "stl10_binary", "train_X.bin"),
    ]:
        with pytest.raises(data.DatasetNotPublished) as err:
            data.load(name, root=tmp_path)
        message = str(err.value)
        assert "\n" not in message and "is not the published file" in message
        assert f"{tmp_path / folder / file} " in message
        assert isinstance(err.value, data.DatasetMissing)  # reported as one line by the CLI


def test_a_malicious_cifar10_batch_is_refused_and_never_unpickled(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    publish(monkeypatch, CIFAR10, tmp_path)  # every file as written is "published" ...
    marker = tmp_path / "unpickled"
    batch = {"batch_label": "x", "data": CreatesMarker(marker), "labels": [], "filenames": []}
    evil = pickle.dumps(batch)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(evil)  # ... but this one
    with pytest.raises(data.DatasetNotPublished) as err:
        data.load("cifar10", root=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert f"{tmp_path}/cifar-10-batches-py/data_batch_3 is not the published file" in message
    assert not marker.exists()
    # the payload is live: unpickling it does create the marker
    pickle.loads(evil)
    assert marker.exists()


def test_cifar10_is_hashed_at_every_load(tmp_path, monkeypatch, hashed):
    write_cifar10(tmp_path)
    publish(monkeypatch, CIFAR10, tmp_path)
    data.load("cifar10", root=tmp_path)
    data.load("cifar10", root=tmp_path)
    files = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + ["batches.meta"]
    assert hashed == files + files


def test_stl10_is_hashed_once_then_cached_until_a_file_changes(tmp_path, monkeypatch, hashed):
    monkeypatch.setenv("RAYGAN_CACHE", str(tmp_path / "cache"))
    expected = torch.from_numpy(write_stl10(tmp_path))
    publish(monkeypatch, STL10, tmp_path)
    files = [name for name, _ in STL10.train_list + STL10.test_list]
    assert torch.equal(data.load("stl10", root=tmp_path, resolution=96), expected)
    assert hashed == files
    cached = json.loads((tmp_path / "cache" / "verified-datasets.json").read_text())
    path = str((tmp_path / "stl10_binary" / "unlabeled_X.bin").resolve())
    assert cached[path]["md5"] == dict(STL10.train_list)["unlabeled_X.bin"]
    assert {"size", "mtime_ns", "ctime_ns", "ino"} <= set(cached[path])
    data.load("stl10", root=tmp_path)
    assert hashed == files  # the second load hashed nothing

    # the same size, and the old mtime put back: still hashed again, and refused
    target = tmp_path / "stl10_binary" / "unlabeled_X.bin"
    st = target.stat()
    target.write_bytes(bytes(st.st_size))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(data.DatasetNotPublished, match=r"unlabeled_X\.bin is not the published"):
        data.load("stl10", root=tmp_path)
    assert hashed[len(files) :] == ["unlabeled_X.bin"]


def test_stl10_cache_holds_only_for_the_md5_it_matched(tmp_path, monkeypatch):
    """A file verified against one published sum is not taken as verified against another."""
    monkeypatch.setenv("RAYGAN_CACHE", str(tmp_path / "cache"))
    write_stl10(tmp_path)
    with monkeypatch.context() as patched:
        publish(patched, STL10, tmp_path)
        data.load("stl10", root=tmp_path)
    with pytest.raises(data.DatasetNotPublished, match=r"train_X\.bin is not the published"):
        data.load("stl10", root=tmp_path)  # torchvision's real sums again


def test_download_fetches_the_archive_then_checks_its_files(tmp_path, monkeypatch, hashed):
    """download=True fetches torchvision's archive (checked against its published md5 by
    torchvision), and the files it held are md5-checked before they are read."""
    import torchvision.datasets.utils as tv_utils

    fetched = []

    def fake_download(url, root, filename, md5):
        fetched.append((url, filename, md5))
        write_cifar10(Path(root))
        publish(monkeypatch, CIFAR10, Path(root))

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    assert data.load("cifar10", root=tmp_path, download=True).shape == (20, 3, 32, 32)
    assert fetched == [(CIFAR10.url, CIFAR10.filename, CIFAR10.tgz_md5)]
    assert len(hashed) == 7
    data.load("cifar10", root=tmp_path, download=True)  # present: no second download
    assert len(fetched) == 1


def test_image_folder_recursive_cropped_and_resized(tmp_path):
    colours = {"a.png": (255, 0, 0), "sub/b.PNG": (0, 255, 0), "sub/deep/c.jpg": (0, 0, 255)}
    for i, (name, colour) in enumerate(colours.items()):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40 + 10 * i, 30), colour).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    images = data.load("folder", root=tmp_path, resolution=16)
    assert images.shape == (3, 3, 16, 16)
    means = images.float().mean((2, 3))
    assert means.argmax(1).tolist() == [0, 1, 2]  # sorted paths, colours preserved


def test_folder_without_images(tmp_path):
    with pytest.raises(data.DatasetMissing, match="no images"):
        data.load("folder", root=tmp_path)


def test_shapes_deterministic_labelled_any_resolution():
    a = data.make_shapes(400, 32, seed=1)
    assert a.images.dtype == torch.uint8 and a.images.shape == (400, 3, 32, 32)
    assert torch.equal(a.images, data.make_shapes(400, 32, seed=1).images)
    assert not torch.equal(a.images, data.make_shapes(400, 32, seed=2).images)
    assert a.labels.shape == (400,) and set(a.labels.tolist()) == set(
        range(len(data.SHAPE_CLASSES))
    )
    assert a.images.float().std() > 40  # varied colours, not blank frames
    big = data.make_shapes(4, 96, seed=1)
    assert big.images.shape == (4, 3, 96, 96)
    assert torch.equal(big.labels, data.make_shapes(4, 8, seed=1).labels)


def test_shapes_is_the_default_dataset():
    assert data.DEFAULT_DATASET == "shapes"
    images = data.load(max_images=10)
    assert images.shape == (10, 3, 32, 32)
    assert torch.equal(images, data.make_shapes(10, 32, seed=0).images)


def test_registry_names_and_native_resolutions():
    assert set(data.DATASETS) == {"shapes", "cifar10", "stl10", "folder"}
    assert [data.native_resolution(n) for n in ("cifar10", "stl10", "shapes")] == [32, 48, 32]
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*cifar10"):
        data.load("mnist")


def test_device_batches_cover_each_image_once_per_epoch():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    batches = data.DeviceBatches(images, seed=0)
    drawn = torch.cat([batches.sample(4) for _ in range(5)])  # 20 = two epochs
    values = ((drawn[:, 0, 0, 0] + 1) * 127.5).round().long()
    assert sorted(values[:10].tolist()) == list(range(10))
    assert sorted(values[10:].tolist()) == list(range(10))
    assert batches.epoch == 2.0


def test_device_batches_reproducible_and_scaled():
    images = data.make_shapes(64, 16, seed=0).images
    a = data.DeviceBatches(images, seed=5)
    b = data.DeviceBatches(images, seed=5)
    x = a.sample(32)
    assert torch.equal(x, b.sample(32))
    assert not torch.equal(x, data.DeviceBatches(images, seed=6).sample(32))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert x.min() == -1 or x.max() == 1
    last = data.DeviceBatches(images, seed=5, channels_last=True).sample(8)
    assert last.is_contiguous(memory_format=torch.channels_last)


def test_device_batches_reject_float_images():
    with pytest.raises(ValueError, match="uint8"):
        data.DeviceBatches(torch.zeros(4, 3, 8, 8))


# --------------------------------------------------------------------------- class labels


def test_shapes_labelled_are_the_same_images_with_their_shape_classes():
    found = data.load_labelled("shapes", max_images=64, resolution=16, seed=2)
    assert torch.equal(found.images, data.load("shapes", max_images=64, resolution=16, seed=2))
    assert torch.equal(found.labels, data.make_shapes(64, 16, 2).labels.long())
    assert found.labels.dtype == torch.int64 and found.classes == data.SHAPE_CLASSES


def test_cifar10_labels_follow_their_images_through_a_subset(tmp_path, monkeypatch):
    everything = torch.from_numpy(write_cifar10(tmp_path))
    publish(monkeypatch, CIFAR10, tmp_path)
    found = data.load_labelled("cifar10", root=tmp_path)
    assert torch.equal(found.images, everything) and found.labels.dtype == torch.int64
    assert found.labels.tolist() == [j % 10 for _ in range(5) for j in range(4)]
    # the published names (the file written here says class0...): known without unpickling
    assert found.classes == data.CIFAR10_CLASSES == data.classes("cifar10")
    subset = data.load_labelled("cifar10", root=tmp_path, max_images=7, seed=3)
    assert torch.equal(subset.images, data.load("cifar10", root=tmp_path, max_images=7, seed=3))
    for image, label in zip(subset.images, subset.labels, strict=True):
        (at,) = [i for i in range(len(everything)) if torch.equal(everything[i], image)]
        assert label == found.labels[at]
    small = data.load_labelled("cifar10", root=tmp_path, resolution=16, split="train")
    assert small.images.shape == (20, 3, 16, 16) and torch.equal(small.labels, found.labels)


def test_labelled_cifar10_is_md5_checked_before_it_is_unpickled(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    publish(monkeypatch, CIFAR10, tmp_path)
    marker = tmp_path / "unpickled"
    batch = {"batch_label": "x", "data": CreatesMarker(marker), "labels": [], "filenames": []}
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps(batch))
    with pytest.raises(data.DatasetNotPublished, match=r"data_batch_2 is not the published"):
        data.load_labelled("cifar10", root=tmp_path)
    assert not marker.exists()


def _stl10_colour(label: int) -> tuple[int, int, int]:
    """A flat colour per STL-10 label as stored (1..10)."""
    return (20 * label, 250 - 20 * label, 7 * label)


def write_stl10_train(root, labels: list[int]) -> None:
    """Only STL-10's labelled train split, in its binary format (uint8, each image a
    column-major 3x96x96 block; labels uint8 1..10), each image its label's flat colour."""
    folder = root / STL10.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    images = np.zeros((len(labels), 3, 96, 96), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i] = np.array(_stl10_colour(label), dtype=np.uint8)[:, None, None]
    images[:, :, 0, 1] = 255  # one marked pixel: row 0, column 1 (column-major below)
    images.transpose(0, 1, 3, 2).tofile(folder / "train_X.bin")
    np.array(labels, dtype=np.uint8).tofile(folder / "train_y.bin")


STL10_LABELS = [3, 10, 1, 3, 7, 10, 2]  # as stored: 1..10, out of order, repeated


def test_stl10_labels_come_from_its_labelled_train_split(tmp_path, monkeypatch, hashed):
    """The train split alone (no unlabeled or test files on disk): only its two files are
    checked and read, its 1..10 labels become 0..9, each with its own image."""
    monkeypatch.setenv("RAYGAN_CACHE", str(tmp_path / "cache"))
    write_stl10_train(tmp_path, STL10_LABELS)
    publish(monkeypatch, STL10, tmp_path)
    found = data.load_labelled("stl10", root=tmp_path, resolution=96)
    assert hashed == ["train_X.bin", "train_y.bin"]
    assert found.images.shape == (7, 3, 96, 96) and found.labels.dtype == torch.int64
    assert found.labels.tolist() == [label - 1 for label in STL10_LABELS]
    assert found.classes == data.STL10_CLASSES == data.classes("stl10")
    assert found.classes[found.labels[1]] == "truck"  # stored label 10
    assert (found.images[:, :, 0, 1] == 255).all() and (found.images[:, :, 1, 0] != 255).all()
    subset = data.load_labelled("stl10", root=tmp_path, max_images=4, seed=2)
    assert subset.images.shape == (4, 3, 48, 48)
    for image, label in zip(subset.images, subset.labels, strict=True):
        assert tuple(image[:, 40, 40].tolist()) == _stl10_colour(int(label) + 1)
    assert hashed == ["train_X.bin", "train_y.bin"]  # verified once: cached since
    with pytest.raises(data.DatasetMissing, match=r"\{unlabeled_X\.bin,test_X\.bin,test_y\.bin\}"):
        data.load("stl10", root=tmp_path)  # what load reads is still all there must be


def test_labelled_stl10_checks_the_files_it_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYGAN_CACHE", str(tmp_path / "cache"))
    write_stl10_train(tmp_path, STL10_LABELS)
    labels = tmp_path / STL10.base_folder / "train_y.bin"
    labels.unlink()
    with pytest.raises(data.DatasetMissing) as err:
        data.load_labelled("stl10", root=tmp_path)
    assert f"expected {tmp_path / 'stl10_binary'}/{{train_y.bin}};" in str(err.value)
    write_stl10_train(tmp_path, STL10_LABELS)
    publish(monkeypatch, STL10, tmp_path)
    labels.write_bytes(bytes([0] * len(STL10_LABELS)))  # label 0 is not STL-10's: 1..10
    with pytest.raises(data.DatasetNotPublished, match=r"train_y\.bin is not the published"):
        data.load_labelled("stl10", root=tmp_path)


def test_stl10_unlabeled_images_are_refused_for_labels_in_one_line(tmp_path):
    message = (
        "dataset 'stl10' split 'train+unlabeled' cannot be loaded with labels: a conditional "
        "search uses its labelled 'train' split (split='train', the default)"
    )
    with pytest.raises(data.DatasetUnlabelled) as err:  # refused before any file is looked at
        data.load_labelled("stl10", root=tmp_path, split="train+unlabeled")
    assert str(err.value) == message
    assert isinstance(err.value, data.DatasetMissing)  # the CLI: one line, exit code 2
    with pytest.raises(data.DatasetUnlabelled, match=r"^dataset 'shapes' split 'train'.*no split"):
        data.load_labelled("shapes", split="train")


def write_classes(root, counts: dict[str, int]) -> dict[str, tuple[int, int, int]]:
    """One subfolder per class, its images one flat colour of its own (nested one deeper for
    the last class: found recursively)."""
    colours = {}
    for k, (name, n) in enumerate(counts.items()):
        colour = (40 + 80 * k, 200 - 60 * k, 90)
        folder = root / name / ("deeper" if k == len(counts) - 1 else "")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (20 + i, 24), colour).save(folder / f"{i}.png")
        colours[name] = colour
    return colours


def test_a_folder_has_one_class_per_subfolder(tmp_path):
    colours = write_classes(tmp_path, {"cats": 3, "dogs": 2, "owls": 4})
    found = data.load_labelled("folder", root=tmp_path, resolution=8)
    assert found.classes == ("cats", "dogs", "owls") == data.classes("folder", tmp_path)
    assert found.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert data.num_classes("folder", tmp_path) == 3
    assert torch.equal(found.images, data.load("folder", root=tmp_path, resolution=8))
    for image, label in zip(found.images, found.labels, strict=True):
        assert tuple(image[:, 4, 4].tolist()) == colours[found.classes[label]]
    subset = data.load_labelled("folder", root=tmp_path, resolution=8, max_images=4, seed=1)
    assert subset.classes == found.classes and len(subset.labels) == 4
    assert torch.equal(
        subset.images, data.load("folder", root=tmp_path, resolution=8, max_images=4, seed=1)
    )
    for image, label in zip(subset.images, subset.labels, strict=True):
        assert tuple(image[:, 4, 4].tolist()) == colours[found.classes[label]]


@pytest.mark.parametrize(
    ("layout", "said"),
    [
        ({"only": 3}, "found 1 subfolder(s) and 0 loose image(s)"),
        ({"a": 1, "b": 1, "": 1}, "found 2 subfolder(s) and 1 loose image(s)"),
    ],
)
def test_a_folder_without_classes_is_refused_with_one_line(tmp_path, layout, said):
    for name, n in layout.items():
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"x{name}{i}.png")
    for refused in (
        lambda: data.load_labelled("folder", root=tmp_path),
        lambda: data.classes("folder", tmp_path),
    ):
        with pytest.raises(data.DatasetUnlabelled) as err:
            refused()
        assert str(err.value).endswith(said) and "\n" not in str(err.value)
        assert "one subfolder per class" in str(err.value)


def test_class_names_without_loading(tmp_path):
    assert data.classes() == data.SHAPE_CLASSES and data.num_classes("shapes") == 8
    assert data.num_classes("cifar10", tmp_path) == data.num_classes("stl10", tmp_path) == 10
    with pytest.raises(data.DatasetMissing, match="folder dataset needs root"):
        data.classes("folder")
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'"):
        data.num_classes("mnist")


def test_a_dataset_without_labels_is_refused_with_one_line(monkeypatch):
    plain = data._Dataset(32, data._load_shapes)
    monkeypatch.setitem(data._REGISTRY, "plain", plain)
    with pytest.raises(data.DatasetUnlabelled, match=r"^dataset 'plain' has no class labels$"):
        data.load_labelled("plain")
    with pytest.raises(data.DatasetUnlabelled, match=r"^dataset 'plain' has no class labels$"):
        data.num_classes("plain")


def test_labelled_batches_draw_the_images_unlabelled_batches_draw():
    found = data.load_labelled("shapes", max_images=20, resolution=8)
    plain = data.DeviceBatches(found.images, seed=4)
    labelled = data.DeviceBatches(found.images, seed=4, labels=found.labels)
    for _ in range(5):  # past an epoch: a new permutation on both sides
        x, y = labelled.sample_labelled(6)
        assert torch.equal(x, plain.sample(6))
        for image, label in zip(x, y, strict=True):
            (at,) = [
                i
                for i in range(20)
                if torch.equal(found.images[i].float().mul(2 / 255).sub(1), image)
            ]
            assert label == found.labels[at]
    resumed = data.DeviceBatches(found.images, seed=0, labels=found.labels)
    resumed.load_state_dict(labelled.state_dict())
    assert all(
        torch.equal(a, b)
        for a, b in zip(resumed.sample_labelled(6), labelled.sample_labelled(6), strict=True)
    )
    with pytest.raises(ValueError, match="hold no labels"):
        plain.sample_labelled(2)
    with pytest.raises(ValueError, match="one label per image"):
        data.DeviceBatches(found.images, labels=found.labels[:5])
