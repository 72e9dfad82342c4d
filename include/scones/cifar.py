"""The CIFAR-100 "python version" archive: its layout, its label names, and reading its pickles safely.

The archive holds three pickles (`meta`, `train`, `test`) written by Python 2. Unpickling runs code named
inside the file, so a tampered archive could run anything. `RestrictedUnpickler` only resolves the numpy
globals that rebuild a `uint8` array, plus ``_codecs.encode`` limited to the call Python 3 writes for `bytes`
under protocol 2; every other global (``os.system``, ``builtins.eval``, any class) is refused. Archives pickled
with protocols 2 to 5, by Python 2 or 3, load.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from include.scones.cifar_labels import COARSE_LABEL_NAMES, FINE_LABEL_NAMES  # noqa: F401 - re-exported

ARCHIVE_ROOT = "cifar-100-python"
SPLITS = ("train", "test")
IMAGE_SHAPE = (3, 32, 32)  # rows of `data` are 3072 bytes: the red plane, then green, then blue


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list: it is not a CIFAR data file."""


def _latin1_bytes(*args: Any) -> bytes:
    """`_codecs.encode` as Python 3 pickles `bytes` under protocol 2: `encode(str(data, 'latin1'), 'latin1')`.

    Only that call is accepted: another codec (`rot13`, `zlib_codec`, ...) or other arguments are no CIFAR data,
    and refusing them keeps the allowed global from being anything more than a bytes literal."""
    if len(args) == 2 and isinstance(args[0], str) and args[1] == "latin1":
        return bytes(args[0], "latin1")
    codec = f" and codec {args[1]!r}" if len(args) == 2 and isinstance(args[1], str) else ""
    raise UnsafePickleError(
        f"refusing to unpickle '_codecs.encode' with {len(args)} arguments{codec}: "
        "CIFAR files only use it as encode(str, 'latin1')"
    )


_reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
_frombuffer = np.zeros(1).__reduce_ex__(5)[0]

# Exactly the globals a pickled numpy array needs: `_reconstruct` (protocols 2 to 4) or, under protocol 5, the
# `_frombuffer` numpy writes for contiguous arrays (frombuffer + reshape: no object arrays, no code), `ndarray` and
# `dtype`; plus `_codecs.encode`, Python 3's protocol-2 spelling of a bytes literal. numpy 2 moved `numpy.core` to
# `numpy._core`; files written by either major version must load, so both spellings map to the same function.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class CifarFormatError(ValueError):
    """The archive or a pickle in it does not have the CIFAR-100 structure."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle global '{module}.{name}': CIFAR files only need numpy array reconstruction"
            ) from None


def restricted_loads(data: bytes) -> Any:
    # latin1 is what numpy documents for Python 2 pickles: byte strings inside arrays stay byte-exact.
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def _text_keys(obj: dict[Any, Any]) -> dict[str, Any]:
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class CifarSplit:
    data: np.ndarray  # (N, 3072) uint8
    fine_labels: list[int]
    filenames: list[str]

    def image(self, index: int) -> np.ndarray:
        """Row `index` as a (32, 32, 3) RGB array."""
        return self.data[index].reshape(IMAGE_SHAPE).transpose(1, 2, 0)


@dataclass(frozen=True)
class CifarArchive:
    fine_label_names: list[str]
    splits: dict[str, CifarSplit]


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    path = f"{ARCHIVE_ROOT}/{name}"
    try:
        member = tar.getmember(path)
    except KeyError:
        raise CifarFormatError(f"archive has no '{path}': not a CIFAR-100 python archive") from None
    handle = tar.extractfile(member) if member.isfile() else None
    if handle is None:
        raise CifarFormatError(f"'{path}' in the archive is not a regular file")
    return handle.read()


def _split(raw: Any, name: str) -> CifarSplit:
    if not isinstance(raw, dict):
        raise CifarFormatError(f"'{name}' pickle holds {type(raw).__name__}, expected a dict")
    fields = _text_keys(raw)
    missing = {"data", "fine_labels", "filenames"} - set(fields)
    if missing:
        raise CifarFormatError(f"'{name}' pickle lacks {sorted(missing)}")
    data = fields["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CifarFormatError(f"'{name}' data must be a uint8 array of shape (N, 3072)")
    labels = [int(label) for label in fields["fine_labels"]]
    filenames = [_text(f) for f in fields["filenames"]]
    if not len(labels) == len(filenames) == data.shape[0]:
        raise CifarFormatError(f"'{name}' has {data.shape[0]} images, {len(labels)} labels, {len(filenames)} names")
    return CifarSplit(data=data, fine_labels=labels, filenames=filenames)


def read_archive(path: Path) -> CifarArchive:
    """Read meta, train and test from the .tar.gz without extracting anything to disk."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            meta = restricted_loads(_member(tar, "meta"))
            splits = {name: _split(restricted_loads(_member(tar, name)), name) for name in SPLITS}
    except UnsafePickleError:
        raise
    except (tarfile.TarError, pickle.UnpicklingError, EOFError, OSError) as exc:
        raise CifarFormatError(f"cannot read CIFAR archive {path}: {exc}") from exc
    if not isinstance(meta, dict) or "fine_label_names" not in _text_keys(meta):
        raise CifarFormatError("'meta' pickle lacks fine_label_names")
    names = [_text(n) for n in _text_keys(meta)["fine_label_names"]]
    return CifarArchive(fine_label_names=names, splits=splits)
