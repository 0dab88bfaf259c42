"""Search state as plain data on disk: a JSON document, plus a weights-only torch file for its
tensors and numpy arrays. Nothing here is ever unpickled.

``save(path, obj)`` writes ``obj`` to ``path`` (e.g. ``<out>/search_state.json``); when it holds
tensors or arrays they go to a sibling ``<stem>.tensors.<hash>.pt`` (``torch.save`` of a dict of
tensors by name, read back with ``torch.load(weights_only=True)``), and the JSON holds a
marker where each was. What round-trips exactly:

- ``None``, bools, ints (any size), floats (NaN and +-inf too), strings, lists, dicts;
- tuples, marked ``{"$tuple": [...]}`` so they come back as tuples (RNG states, genotype cells);
- dicts with a key that is not a string (or starts with ``$``), as ``{"$dict": [[k, v], ...]}``
  (int keys come back as ints);
- torch tensors ``{"$tensor": name}`` and numpy arrays ``{"$ndarray": {tensor, dtype, shape}}``
  (their raw bytes as a uint8 tensor, so every dtype and byte order comes back as it was).

Anything else (an arbitrary object, a namedtuple, an object array) raises ``TypeError`` naming
where it sits in the structure. A JSON object with a ``$`` key that is not one of these markers
is refused on load.

Crash safety: the tensors file is written first, then the JSON, which names it and its sha256;
both writes are atomic (:func:`raygan.storage.write_bytes`). The tensors file is named by its
content, so a kill between the two writes leaves the previous JSON with its own tensors file
intact; the previous tensors file is deleted only once the new JSON is in place.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import sys
from typing import Any

import numpy as np

from raygan import storage

FORMAT = "raygan.state/1"
MARKERS = ("$tuple", "$dict", "$tensor", "$ndarray", "$float")


class StateError(ValueError):
    """A state file that cannot be read back as written (mismatched, missing or unknown)."""


def dumps(obj: Any) -> tuple[str, dict[str, Any]]:
    """``obj`` as a JSON document and the tensors it refers to by name (empty if none)."""
    data, tensors = _encode(obj)
    return _document(data, None), tensors


def loads(text: str, tensors: dict[str, Any] | None = None) -> Any:
    """The object of :func:`dumps`'s JSON document, with its ``tensors``."""
    return _decode(_parse(text, "<text>")["data"], tensors or {}, "<text>")


def save(path: str, obj: Any) -> None:
    """Write ``obj`` to the JSON file ``path`` (local path or URI), its tensors beside it."""
    data, tensors = _encode(obj)
    previous = _tensors_file_of(path)
    ref = None
    if tensors:
        import torch

        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        blob = buffer.getvalue()
        digest = hashlib.sha256(blob).hexdigest()
        ref = {"file": f"{_stem(path)}.tensors.{digest[:16]}.pt", "sha256": digest}
        storage.write_bytes(_sibling(path, ref["file"]), blob)
    storage.write_text(path, _document(data, ref))
    if previous is not None and previous != (ref and ref["file"]):
        storage.delete(_sibling(path, previous))


def load(path: str) -> Any:
    """Read back what :func:`save` wrote to ``path``."""
    doc = _parse(storage.read_bytes(path).decode(), path)
    tensors: dict[str, Any] = {}
    ref = doc.get("tensors")
    if ref is not None:
        if not _is_tensors_file(None, ref.get("file")):  # the JSON may have been renamed
            raise StateError(f"{path} names {ref.get('file')!r}, not a tensors file beside it")
        file = _sibling(path, ref["file"])
        if not storage.exists(file):
            raise StateError(f"{path} names the tensors file {ref['file']}, which is missing")
        blob = storage.read_bytes(file)
        if hashlib.sha256(blob).hexdigest() != ref["sha256"]:
            raise StateError(
                f"{path}: the tensors file {ref['file']} does not match the hash it was saved "
                "with (a different or damaged file); refusing to load it"
            )
        import torch

        try:
            tensors = torch.load(io.BytesIO(blob), weights_only=True)
        except Exception as err:  # torch raises an UnpicklingError for any other global
            first = " ".join(str(err).split())[:200]
            raise StateError(
                f"{path}: its tensors file is not weights-only data ({first})"
            ) from None
    return _decode(doc["data"], tensors, path)


# ----- the document ------------------------------------------------------------------------
def _document(data: Any, ref: dict[str, str] | None) -> str:
    return json.dumps({"format": FORMAT, "tensors": ref, "data": data}, allow_nan=False, indent=1)


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise StateError(f"{where} is not JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise StateError(f"{where} is not a {FORMAT} document (format: {found!r})")
    return doc


def _split(path: str) -> tuple[str, str]:
    """The folder of ``path`` and its file name (a URI keeps its query on the folder)."""
    if storage.is_uri(path):
        return storage.parent(path), storage.basename(path)
    folder, name = os.path.split(path)
    return folder or ".", name


def _stem(path: str) -> str:
    name = _split(path)[1]
    return name.removesuffix(".json")


def _sibling(path: str, name: str) -> str:
    return storage.join(_split(path)[0], name)


def _is_tensors_file(path: str | None, name: Any) -> bool:
    """Whether ``name`` is a tensors file name as :func:`save` writes them, in the JSON's own
    folder (of ``path``'s JSON exactly, when given): a load reads nothing else, and replacing a
    state deletes nothing else."""
    stem = r"[^/\\]+" if path is None else re.escape(_stem(path))
    return (
        isinstance(name, str)
        and re.fullmatch(stem + r"\.tensors\.[0-9a-f]{16}\.pt", name) is not None
    )


def _tensors_file_of(path: str) -> str | None:
    """The tensors file the JSON at ``path`` names now (None: no JSON, none named, unreadable)."""
    try:
        if not storage.exists(path):
            return None
        name = json.loads(storage.read_bytes(path).decode())["tensors"]["file"]
    except (ValueError, KeyError, TypeError, OSError):
        return None
    return name if _is_tensors_file(path, name) else None


# ----- encoding ----------------------------------------------------------------------------
def _encode(obj: Any) -> tuple[Any, dict[str, Any]]:
    tensors: dict[str, Any] = {}
    torch = sys.modules.get("torch")  # not imported: no tensor can exist
    tensor_type = torch.Tensor if torch is not None else ()

    def add(tensor: Any) -> str:
        name = f"t{len(tensors)}"
        tensors[name] = tensor
        return name

    def enc(x: Any, where: str) -> Any:
        if x is None or isinstance(x, bool | str):
            return str(x) if isinstance(x, str) else x
        if isinstance(x, int):
            return int(x)
        if isinstance(x, float):
            return float(x) if math.isfinite(x) else {"$float": repr(float(x))}
        if isinstance(x, list):
            return [enc(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if type(x) is tuple:
            return {"$tuple": [enc(v, f"{where}[{i}]") for i, v in enumerate(x)]}
        if isinstance(x, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in x):
                return {k: enc(v, f"{where}[{k!r}]") for k, v in x.items()}
            return {"$dict": [[key(k, where), enc(v, f"{where}[{k!r}]")] for k, v in x.items()]}
        if type(x) is np.ndarray:
            if x.dtype.hasobject or x.dtype.fields is not None:
                raise TypeError(f"{where}: a numpy array of dtype {x.dtype} cannot be stored")
            raw = _bytes_tensor(x.tobytes())
            return {"$ndarray": {"tensor": add(raw), "dtype": x.dtype.str, "shape": list(x.shape)}}
        if isinstance(x, tensor_type):
            t = x.detach()
            if t.layout == torch.strided and t.untyped_storage().nbytes() > t.nbytes:
                t = t.clone()  # a view: save its elements, not the whole storage behind it
            return {"$tensor": add(t)}
        raise TypeError(
            f"{where}: a {type(x).__module__}.{type(x).__qualname__} cannot be stored as plain "
            "data (None, bool, int, float, str, list, tuple, dict, numpy array, torch tensor)"
        )

    def key(k: Any, where: str) -> Any:
        if k is None or isinstance(k, bool | int | float | str) or type(k) is tuple:
            return enc(k, f"{where} key {k!r}")
        raise TypeError(f"{where}: a dict key of type {type(k).__qualname__} cannot be stored")

    return enc(obj, "state"), tensors


def _bytes_tensor(data: bytes) -> Any:
    import torch

    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


# ----- decoding ----------------------------------------------------------------------------
def _decode(data: Any, tensors: dict[str, Any], path: str) -> Any:
    def tensor(name: Any, where: str) -> Any:
        if not isinstance(name, str) or name not in tensors:
            raise StateError(f"{path}: {where} refers to tensor {name!r}, which is not saved")
        return tensors[name]

    def dec(x: Any, where: str) -> Any:
        if isinstance(x, list):
            return [dec(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if not isinstance(x, dict):
            return x
        marked = [k for k in x if k.startswith("$")]
        if not marked:
            return {k: dec(v, f"{where}[{k!r}]") for k, v in x.items()}
        if len(x) != 1 or marked[0] not in MARKERS:
            raise StateError(f"{path}: {where} has an unknown marker {sorted(x)}")
        kind, value = marked[0], x[marked[0]]
        if kind == "$tuple":
            return tuple(dec(v, f"{where}[{i}]") for i, v in enumerate(value))
        if kind == "$dict":
            return {dec(k, f"{where} key"): dec(v, f"{where}[{k!r}]") for k, v in value}
        if kind == "$float":
            return float(value)
        if kind == "$tensor":
            return tensor(value, where)
        raw = tensor(value["tensor"], where).numpy().tobytes()
        return np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()

    return dec(data, "state")
