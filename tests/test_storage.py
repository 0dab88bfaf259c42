"""Storage on a local path and on a URI: atomic writes, reads, torch checkpoints, arch files."""

import pytest
import torch

from raygan import spaces, storage


@pytest.fixture(params=["local", "uri"])
def root(request, tmp_path):
    return str(tmp_path) if request.param == "local" else f"file://{tmp_path}"


def test_write_read_exists_and_no_temporary_left(root, tmp_path):
    path = storage.join(root, "deep", "state.pkl")
    assert not storage.exists(path)
    storage.write_bytes(path, b"one")
    storage.write_bytes(path, b"two")  # replaced atomically
    assert storage.exists(path) and storage.read_bytes(path) == b"two"
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["state.pkl"]


def test_torch_state_and_arch_files_round_trip(root):
    path = storage.join(root, "state.pt")
    storage.write_bytes(path, b"")
    with open(path.removeprefix("file://"), "wb") as f:
        torch.save({"G": {"w": torch.arange(3.0)}}, f)
    assert torch.equal(storage.load_torch(path)["G"]["w"], torch.arange(3.0))
    arch = spaces.Arch(
        spaces.Genotype.parse("autogan:1,0,1,1/1,0,0,1,1/1,0,1,0,3"),
        spaces.Genotype.parse("autogan_d:"),
        256,
        128,
    )
    spaces.write_arch_file(storage.join(root, "best.yaml"), arch)
    assert spaces.read_arch_file(storage.join(root, "best.yaml")) == arch


def test_delete_removes_a_file_or_a_folder_and_accepts_one_already_gone(root, tmp_path):
    keep = storage.join(root, "keep", "state.pt")
    files = [storage.join(root, "run", "a", "state.pt"), storage.join(root, "run", "b.json")]
    for path in [keep, *files]:
        storage.write_bytes(path, b"x")
    storage.delete(files[1])
    assert not storage.exists(files[1]) and storage.exists(files[0])
    storage.delete(storage.join(root, "run"))
    assert not (tmp_path / "run").exists() and storage.exists(keep)
    storage.delete(storage.join(root, "run"))  # gone already: nothing to do, no error
    assert storage.exists(keep)
