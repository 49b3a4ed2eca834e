"""Prediction inputs, checked before anything is allocated or fed to a model.

A ``.npy`` file is judged by its header first: its dtype must be real numbers, its shape
(L, F) or (B, L, F), its declared size that of the file, and its number of values at most
`trainer.defaults.MAX_INPUT_VALUES`. Only then is it mapped (not read into memory), and
its values are checked to be finite in float32, a slice at a time. No TensorFlow here:
the CLI checks its input before loading it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from trainer.defaults import MAX_INPUT_VALUES
from trainer.errors import InputFileError

REAL_KINDS = "fiu"  # float, signed and unsigned int: what float32 holds without loss of kind
ZIP_MAGIC = b"PK\x03\x04"
CHECK_VALUES = 1 << 20  # values converted and checked at a time


def check_real(name: str, dtype: np.dtype) -> None:
    """Refuse a dtype that is not real numbers (complex, bool, strings, records, objects)."""
    if dtype.kind in REAL_KINDS:
        return
    if dtype.kind == "c":
        raise InputFileError(f"{name} holds complex values ({dtype}), expected real numbers "
                             "(the imaginary part would be lost)")
    raise InputFileError(f"{name} holds {dtype} values, expected real numbers (float or int)")


def as_float32(name: str, x: Any, start: int = 0) -> np.ndarray:
    """``x`` as float32, refusing values that are not finite there (NaN, inf, or too large
    for float32). ``start`` is the index of x's first row in what ``name`` holds."""
    x = np.asarray(x)
    check_real(name, x.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        out = x.astype(np.float32, copy=False)
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    where = np.argwhere(bad)[0]
    where[0] += start
    found = np.asarray(x[bad], dtype=np.float64) if x.dtype.kind == "f" else np.zeros(1)
    kinds = [kind for kind, present in (("NaN", np.isnan(found).any()),
                                        ("inf", np.isinf(found).any()),
                                        ("values too large for float32",
                                         np.isfinite(found).any())) if present]
    raise InputFileError(f"{name} holds {' and '.join(kinds)} (the first at index "
                         f"{tuple(int(i) for i in where)}), expected finite real numbers")


def check_values(name: str, x: np.ndarray) -> None:
    """`as_float32` over all of ``x``, a slice of its first axis at a time (so a mapped
    file is read through once, never held converted in memory)."""
    per_row = max(1, math.prod(x.shape[1:]))
    rows = max(1, CHECK_VALUES // per_row)
    for start in range(0, len(x), rows):
        as_float32(name, x[start:start + rows], start)


def load_npy(path: str | os.PathLike[str], name: str | None = None) -> np.ndarray:
    """A checked (L, F) or (B, L, F) array of finite real numbers from a .npy file, mapped
    read-only from the file (convert slices with `as_float32`).

    Args:
        path: the .npy file.
        name: how errors name the file (default: its path).

    Raises:
        InputFileError: not a plain .npy file, not real numbers, the wrong shape, a
            header that does not match the file's size, more than ``MAX_INPUT_VALUES``
            values, or values that are not finite in float32.
    """
    path = Path(path)
    name = name or str(path)
    if not path.is_file():  # a FIFO would block the open below
        raise InputFileError(f"{name} is not a regular file, expected a .npy file")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        shape, fortran, dtype, offset = _read_header(f, name)
    if dtype.hasobject:
        raise InputFileError(f"{name} is not a plain .npy array: it holds Python objects "
                             "(loading them would need pickle)")
    check_real(name, dtype)
    if len(shape) not in (2, 3) or 0 in shape:
        raise InputFileError(f"{name} holds {dtype} of shape {shape}, expected (L, F) or "
                             "(B, L, F) with L, F >= 1")
    values = math.prod(shape)
    declared, held = values * dtype.itemsize, size - offset
    if declared != held:
        raise InputFileError(f"{name} declares {dtype} of shape {shape} ({declared:,} bytes) "
                             f"but holds {held:,} bytes of data: it is truncated or not what "
                             "its header says")
    if values > MAX_INPUT_VALUES:
        raise InputFileError(f"{name} holds {values:,} values, more than the "
                             f"{MAX_INPUT_VALUES:,} read from one .npy file; split it, or "
                             "make a seqdata dataset of it")
    x = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                  order="F" if fortran else "C")
    check_values(name, x)
    return x


def _read_header(f: Any, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset from a .npy header; nothing else read."""
    start = f.read(len(ZIP_MAGIC))
    if start == ZIP_MAGIC:
        raise InputFileError(f"{name} is an .npz archive, expected one .npy array")
    f.seek(0)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:  # 3.0 only differs for record field names, which are refused anyway
            raise ValueError(f"format version {version[0]}.{version[1]} is not read here")
    except ValueError as exc:  # not a .npy file, or a header numpy cannot parse
        detail = " ".join(str(exc).split())[:200]
        raise InputFileError(f"{name} is not a plain .npy array ({detail})") from exc
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise InputFileError(f"{name} is not a plain .npy array (its header's shape is "
                             f"{shape!r})")
    return tuple(shape), bool(fortran), dtype, f.tell()
