"""raygan.state: search state as JSON plus a weights-only tensors file (fast, no Ray cluster)."""

from __future__ import annotations

import json
import math
import os
import re
from collections import namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import raygan
from raygan import state, storage
from raygan.searchers.controller import ControllerSearch
from raygan.searchers.nsga2 import NSGA2
from raygan.strategies.common import Driver


def same(a: Any, b: Any) -> bool:
    """Exact equality, types included: a tuple is not a list, an int key not a str, a float32
    array not a float64 one, NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(
            same(ka, kb) and same(a[ka], b[kb]) for ka, kb in zip(a, b, strict=True)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def kinds() -> dict[str, Any]:
    """Every kind a search state holds."""
    mt = np.random.MT19937(5)
    return {
        "plain": [None, True, False, 0, -7, 2**100, -(2**70), 1.5, -0.0, "text", ""],
        "floats": [math.nan, math.inf, -math.inf, 1e-310, 0.1 + 0.2],
        "tuples": ((), (1, (2, 3)), [(0, 1), (1, 0)]),
        "int_keys": {0: "trial_0/state.pt", 7: "trial_7/state.pt"},
        "mixed_keys": {1: "a", "1": "b", (0, 1): "c", None: "d", 2.5: "e", False: "f"},
        "dollar_keys": {"$tuple": [1], "$x": "not a marker"},
        "empty": [{}, [], ""],
        "numpy_rng": np.random.default_rng(3).bit_generator.state,  # ints over 64 bits
        "mt19937": mt.state,  # a uint32 key array inside
        "arrays": [
            np.arange(6, dtype=np.float32).reshape(2, 3),
            np.array([1, -2], dtype=">i4"),  # big-endian stays big-endian
            np.array(3.25),  # 0-d
            np.zeros((0, 3), dtype=np.int64),
            np.array([True, False]),
            np.array([1 + 2j], dtype=np.complex128),
            np.arange(12, dtype=np.float64).reshape(3, 4).T,  # not C-contiguous
        ],
        "tensors": {
            "weight": torch.randn(3, 4),
            "step": torch.tensor(5.0),
            "ids": torch.tensor([1, 2], dtype=torch.int64),
            "rng": torch.Generator().manual_seed(9).get_state(),  # a ByteTensor
            "view": torch.arange(100.0)[10:13],
        },
    }


def test_every_kind_round_trips_exactly(tmp_path: Path) -> None:
    obj = kinds()
    text, tensors = state.dumps(obj)
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert same(state.loads(text, tensors), obj)
    path = str(tmp_path / "s.json")
    state.save(path, obj)
    back = state.load(path)
    assert same(back, obj)
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2 and files[0] == "s.json"
    assert re.fullmatch(r"s\.tensors\.[0-9a-f]{16}\.pt", files[1])
    # the tensors file is a plain dict of tensors, loadable with weights_only
    saved = torch.load(tmp_path / files[1], weights_only=True)
    assert all(isinstance(t, torch.Tensor) for t in saved.values())
    assert back["tensors"]["view"].untyped_storage().nbytes() == 3 * 4  # not the whole arange
    rng = np.random.default_rng(0)
    rng.bit_generator.state = back["numpy_rng"]
    assert rng.random() == np.random.default_rng(3).random()


def test_only_data_is_written_and_the_previous_tensors_file_goes(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    state.save(path, {"w": torch.ones(2)})
    state.save(path, {"w": torch.zeros(2)})
    assert len(os.listdir(tmp_path)) == 2  # the first tensors file was deleted
    state.save(path, {"a": 1, "d": {3: (1, 2)}})
    assert os.listdir(tmp_path) == ["s.json"]  # no tensors: no tensors file
    assert json.loads((tmp_path / "s.json").read_text())["tensors"] is None
    assert state.load(path) == {"a": 1, "d": {3: (1, 2)}}


def test_a_kill_between_the_two_writes_leaves_the_previous_state(tmp_path, monkeypatch):
    path = str(tmp_path / "s.json")
    state.save(path, {"w": torch.ones(2), "step": 1})

    def killed(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(storage, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        state.save(path, {"w": torch.zeros(2), "step": 2})
    back = state.load(path)
    assert back["step"] == 1 and torch.equal(back["w"], torch.ones(2))


def test_what_is_not_plain_data_is_refused_with_where_it_is() -> None:
    with pytest.raises(TypeError, match=r"state\['a'\]\[1\].*builtins\.object"):
        state.dumps({"a": [1, object()]})
    Pair = namedtuple("Pair", "x y")
    with pytest.raises(TypeError, match=r"state\['p'\].*Pair"):
        state.dumps({"p": Pair(1, 2)})
    with pytest.raises(TypeError, match="dtype object"):
        state.dumps([np.array([{}], dtype=object)])
    with pytest.raises(TypeError, match="dict key"):
        state.dumps({frozenset(): 1})
    with pytest.raises(TypeError, match=r"state\[0\].*numpy\.int64"):
        state.dumps([np.int64(3)])


def test_a_tensors_file_that_does_not_match_is_refused(tmp_path: Path) -> None:
    path, other = str(tmp_path / "s.json"), str(tmp_path / "other" / "s.json")
    state.save(path, {"w": torch.ones(3)})
    state.save(other, {"w": torch.full((3,), 2.0)})
    (mine,) = (p for p in tmp_path.iterdir() if p.suffix == ".pt")
    (theirs,) = (p for p in (tmp_path / "other").iterdir() if p.suffix == ".pt")
    mine.write_bytes(theirs.read_bytes())  # a valid tensors file, but not this JSON's
    with pytest.raises(state.StateError, match="does not match the hash"):
        state.load(path)
    mine.unlink()
    with pytest.raises(state.StateError, match="which is missing"):
        state.load(path)


class Payload:
    """Unpickling this creates ``marker`` (the pickle names only ``builtins.open``)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_tensors_file_is_refused_and_never_runs(tmp_path: Path) -> None:
    """An attacker who rewrites the tensors file and its hash in the JSON still gets no code
    run: the file is read with ``weights_only=True``, which refuses any other global."""
    import hashlib
    import io

    path, marker = tmp_path / "s.json", tmp_path / "payload-ran"
    state.save(str(path), {"w": torch.ones(3)})
    (tensors,) = (p for p in tmp_path.iterdir() if p.suffix == ".pt")
    buffer = io.BytesIO()
    torch.save({"w": Payload(str(marker))}, buffer)
    tensors.write_bytes(buffer.getvalue())
    doc = json.loads(path.read_text())
    doc["tensors"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    path.write_text(json.dumps(doc))
    with pytest.raises(state.StateError, match="weights-only"):
        state.load(str(path))
    assert not marker.exists()
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)  # the payload is live
    assert marker.exists()


def test_an_unknown_marker_or_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    for data in ({"$pickle": "gASV"}, {"$tuple": [1], "extra": 2}, [{"$tensor": "t0"}]):
        path.write_text(json.dumps({"format": state.FORMAT, "tensors": None, "data": data}))
        with pytest.raises(state.StateError, match=r"unknown marker|not saved"):
            state.load(str(path))
    inner, victim = tmp_path / "sub" / "s.json", tmp_path / "elsewhere.tensors.pt"
    inner.parent.mkdir()
    victim.write_bytes(b"not the state's")
    ref = {"file": "../elsewhere.tensors.pt", "sha256": "0" * 64}
    inner.write_text(json.dumps({"format": state.FORMAT, "tensors": ref, "data": 1}))
    with pytest.raises(state.StateError, match="not a tensors file beside it"):
        state.load(str(inner))  # a load reads only a sibling
    state.save(str(inner), 1)  # and a save replacing the JSON deletes nothing else
    assert state.load(str(inner)) == 1 and victim.exists()
    path.write_text(json.dumps({"format": "something/9", "data": 1}))
    with pytest.raises(state.StateError, match=r"not a raygan\.state/1 document"):
        state.load(str(path))


# ----- the real states ----------------------------------------------------------------------
def nsga2() -> NSGA2:
    return NSGA2("nas_cell_g", population_size=6, generations=4, metrics=("a", "b"),
                 modes=("max", "min"), seed=3)  # fmt: skip


def nsga2_result(config: dict) -> dict[str, float]:
    genes = [int(v) for v in config["genotype"].partition(":")[2].replace("/", ",").split(",")]
    return {"a": float(sum(genes)), "b": float(sum(v != 0 for v in genes))}


def continue_nsga2(search: NSGA2, out: list) -> list:
    """Ask one, tell the oldest of two out, to the end; every proposal in order."""
    seen = []
    while not search.finished:
        suggestion = search.ask() if len(out) < 2 else None
        if suggestion is not None:
            out.append(suggestion)
            seen.append(suggestion)
        else:
            key, config = out.pop(0)
            search.tell(key, nsga2_result(config))
    return seen


def test_nsga2_mid_search_continues_identically(tmp_path: Path) -> None:
    search = nsga2()
    out = [search.ask() for _ in range(6)]  # a whole generation out
    for key, config in out[:4]:
        search.tell(key, nsga2_result(config))
    out = out[4:]
    path = str(tmp_path / "nsga2.json")
    state.save(path, search.state_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["nsga2.json"]  # numbers and strings only
    resumed = nsga2()
    resumed.load_state_dict(state.load(path))
    assert resumed.state_dict() == search.state_dict()
    assert continue_nsga2(resumed, list(out)) == continue_nsga2(search, list(out))
    assert resumed.history() == search.history()
    assert NSGA2.from_bytes(search.to_bytes()).state_dict() == search.state_dict()


def controller(seed: int = 7) -> ControllerSearch:
    return ControllerSearch(steps=(2, 2, 1), batch_size=3, candidates=4, keep=2, seed=seed)


def reward(config: dict) -> dict[str, float]:
    return {"is": 1.0 + sum(config["genotype"].encode()) % 7 + 0.1 * config["entropy"]}


def test_controller_mid_search_continues_identically(tmp_path: Path) -> None:
    search = controller()
    while search.stage == 0:  # through stage 0: kept prefixes with LSTM states, a new Adam
        pending = []
        while (s := search.ask()) is not None:
            pending.append(s)
        for s in reversed(pending):
            search.tell(s.key, reward(s.config))
    pending = [search.ask() for _ in range(3)]
    search.tell(pending[1].key, reward(pending[1].config))  # one of three told
    path = str(tmp_path / "controller.json")
    state.save(path, search.state_dict())
    resumed = controller(seed=99)
    resumed.load_state_dict(state.load(path))

    def finish(s: ControllerSearch) -> list[dict]:
        for p in (pending[0], pending[2]):
            s.tell(p.key, reward(p.config))
        configs = []
        while not s.finished:
            asked = []
            while (p := s.ask()) is not None:
                asked.append(p)
            for p in asked:
                s.tell(p.key, reward(p.config))
            configs += [p.config for p in asked]
        return configs

    assert finish(resumed) == finish(search)
    assert [(p.cells, p.reward) for p in resumed.kept] == [(p.cells, p.reward) for p in search.kept]
    assert same(
        state.loads(*state.dumps(resumed.state_dict())),
        state.loads(*state.dumps(search.state_dict())),
    )


def test_driver_state_is_json(tmp_path: Path) -> None:
    driver = Driver.__new__(Driver)  # save/load need only the folder and the state
    driver.__dict__.update(out=str(tmp_path / "search"), started_with={"seed": 0}, lease=None)
    driver.state = {"stage": 2, "d_weights": {0: "a/state.pt", 5: "b/state.pt"}, "done": False}
    driver.save()
    assert Driver.STATE == "search_state.json"
    doc = json.loads(Path(driver.state_path).read_text())
    assert doc["tensors"] is None and doc["data"]["d_weights"] == {
        "$dict": [[0, "a/state.pt"], [5, "b/state.pt"]]
    }
    again = Driver.__new__(Driver)
    again.__dict__.update(out=driver.out, state={}, started_with={})
    again.load()
    assert same(again.state, driver.state)


def test_raygan_imports_no_pickle() -> None:
    package = Path(raygan.__file__).parent
    imports = re.compile(r"^\s*(import|from)\s+[\w.]*pickle", re.MULTILINE)
    found = [
        str(p.relative_to(package)) for p in package.rglob("*.py") if imports.search(p.read_text())
    ]
    assert found == []
