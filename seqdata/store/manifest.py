"""The manifest: what a dataset directory holds, written last and atomically.

``manifest.json`` records the spec, the format, the bucket boundaries, each shard (path
relative to the directory, counts per bucket, size, SHA-256) and the length histogram.
Readers check all of it before opening a shard: a version they do not know, a path that
leaves the directory, or counts that do not add up are refused with a message naming
the field, the value found and what was expected.

Layout (manifest_version 2): ``DIR/manifest.json``, the card ``DIR/README.md`` and the
shards, alone, in ``DIR/data/`` (so that pandas, pyarrow, polars, DuckDB and Hugging Face
``datasets`` read ``DIR/data`` as one table). Version 1 directories, with the shards
beside the manifest, still read; builds write version 2.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from seqdata.buckets import bucket_lower_bounds, check_boundaries
from seqdata.checks import check_int
from seqdata.errors import ManifestError, SeqdataError
from seqdata.spec import LagSumSpec
from seqdata.store.atomic import read_regular_text, write_bytes_atomic
from seqdata.store.formats import FORMAT_NAMES, SUFFIXES

MANIFEST_NAME = "manifest.json"
# A manifest lists every shard with its counts per bucket: about 1 KB a shard with 29
# buckets, so 256 MiB holds hundreds of thousands of shards; more is not a manifest.
MAX_MANIFEST_BYTES = 256 * 2**20
# Shard paths are relative names such as data/shard-00000.h5: no NUL, no control characters,
# no surrogates, no './' (which would let one file be listed twice under two spellings).
SHARD_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")
MANIFEST_VERSION = 2  # what builds write
READ_VERSIONS = (1, 2)  # 1: shards beside the manifest; 2: shards in DATA_DIR, a card
DATA_DIR = "data"  # version 2: the directory of the shards, and of nothing else
KIND = "seqdata.lagsum"


@dataclass(frozen=True)
class ShardInfo:
    """One shard file: sequences of one generation chunk, grouped by bucket."""

    path: str
    chunk: int
    bucket_sequences: tuple[int, ...]
    bucket_timesteps: tuple[int, ...]
    size: int
    sha256: str

    @property
    def num_sequences(self) -> int:
        return sum(self.bucket_sequences)

    @property
    def num_timesteps(self) -> int:
        return sum(self.bucket_timesteps)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "chunk": self.chunk, "num_sequences": self.num_sequences,
                "num_timesteps": self.num_timesteps,
                "bucket_sequences": list(self.bucket_sequences),
                "bucket_timesteps": list(self.bucket_timesteps),
                "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    """Everything a reader needs to know about a dataset directory."""

    spec: LagSumSpec
    format: str
    boundaries: tuple[int, ...]
    shards: tuple[ShardInfo, ...]
    length_counts: tuple[int, ...]  # sequences of each length, from spec min length up
    version: int = MANIFEST_VERSION  # as read (a version 1 manifest keeps its checksum)

    @property
    def num_sequences(self) -> int:
        return sum(s.num_sequences for s in self.shards)

    @property
    def num_timesteps(self) -> int:
        return sum(s.num_timesteps for s in self.shards)

    @property
    def bucket_sequences(self) -> np.ndarray:
        return np.sum([s.bucket_sequences for s in self.shards], axis=0, dtype=np.int64)

    @property
    def bucket_timesteps(self) -> np.ndarray:
        return np.sum([s.bucket_timesteps for s in self.shards], axis=0, dtype=np.int64)

    @property
    def leaky(self) -> bool:
        return self.spec.seed_compat_leak

    def to_doc(self) -> dict[str, Any]:
        """The manifest as the JSON object written to manifest.json, checksum included."""
        doc = {
            "manifest_version": self.version,
            "kind": KIND,
            "format": self.format,
            "spec": self.spec.to_dict(),
            "leaky": self.leaky,
            "num_sequences": self.num_sequences,
            "num_timesteps": self.num_timesteps,
            "boundaries": list(self.boundaries),
            "bucket_sequences": self.bucket_sequences.tolist(),
            "bucket_timesteps": self.bucket_timesteps.tolist(),
            "length_histogram": {"min_length": self.spec.lengths.low,
                                 "counts": list(self.length_counts)},
            "shards": [s.to_dict() for s in self.shards],
        }
        doc["checksum"] = checksum(doc)
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_doc(), indent=1) + "\n"

    @property
    def checksum(self) -> str:
        """The manifest's checksum: it names this exact dataset (spec, shards, hashes)."""
        return self.to_doc()["checksum"]


def checksum(doc: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON without its ``checksum`` field.

    It makes any damage to the manifest itself detectable, a changed seed included.
    """
    body = {k: v for k, v in doc.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = Path(directory) / MANIFEST_NAME
    write_bytes_atomic(path, manifest.to_json().encode())
    return path


def read_manifest(directory: Path | str) -> Manifest:
    """Read and validate ``DIR/manifest.json``; raises ManifestError naming what is wrong."""
    root = Path(directory)
    if not root.exists():
        raise ManifestError(f"dataset directory {root} does not exist")
    if not root.is_dir():
        raise ManifestError(f"{root} is not a directory (expected a dataset directory)")
    path = root / MANIFEST_NAME
    try:
        text = read_regular_text(path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise ManifestError(f"{path} not found: {root} is not a finished seqdata dataset "
                            f"(the manifest is written last)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read {path}: {e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path} is not valid JSON: {e}") from None
    except (ValueError, RecursionError) as e:  # a 5000-digit number, nesting 100,000 deep
        raise ManifestError(f"{path} is not a manifest: {type(e).__name__}: "
                            f"{str(e)[:200]}") from None
    try:
        manifest = _parse(doc, root)
    except SeqdataError as e:
        raise ManifestError(f"{path}: {e}") from None
    except (RecursionError, ValueError, OSError) as e:  # nested too deep; NUL in a path
        raise ManifestError(f"{path} is not a manifest: {type(e).__name__}: "
                            f"{str(e)[:200]}") from None
    if manifest.version >= 2:
        check_data_dir(root)
    return manifest


def check_data_dir(root: Path) -> None:
    """Refuse a ``DIR/data`` that is a symbolic link or not a directory (a missing one is
    left to the readers: every shard in it is then missing)."""
    data = root / DATA_DIR
    if data.is_symlink():
        raise ManifestError(f"{data} is a symbolic link, expected the directory of the "
                            f"dataset's shards inside {root}")
    if data.exists() and not data.is_dir():
        raise ManifestError(f"{data} is not a directory, expected the directory of the "
                            f"dataset's shards")


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    if key not in doc:
        raise ManifestError(f"missing field {where}{key}")
    value = doc[key]
    if isinstance(value, bool) and kind is not bool:
        raise ManifestError(f"{where}{key} must be {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ManifestError(f"{where}{key} must be {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", str: "a string", list: "a list", dict: "an object",
             bool: "true or false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _counts(doc: dict[str, Any], key: str, n: int, where: str) -> tuple[int, ...]:
    values = _get(doc, key, list, where)
    if len(values) != n:
        raise ManifestError(f"{where}{key} must be {n} non-negative integers, got {values!r}")
    for i, v in enumerate(values):
        check_int(f"{where}{key}[{i}]", v, 0, error=ManifestError)
    return tuple(values)


def check_relative_path(root: Path, rel: str, where: str) -> None:
    """Refuse shard paths that are absolute, climb with '..', hold anything but plain
    name characters, or resolve outside ``root``."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or "\\" in rel or rel.startswith("~"):
        raise ManifestError(f"{where}path must be relative to the dataset directory, got {rel!r}")
    if ".." in pure.parts:
        raise ManifestError(f"{where}path must not contain '..', got {rel!r}")
    if len(rel) > 255 or not SHARD_PATH.fullmatch(rel):
        raise ManifestError(f"{where}path must be names of letters, digits, '.', '_' and '-' "
                            f"joined by '/' (at most 255 characters), got {rel[:80]!r}")
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ManifestError(f"{where}path {rel!r} resolves to {resolved}, outside the "
                            f"dataset directory {root.resolve()}")


def _parse(doc: Any, root: Path) -> Manifest:
    if not isinstance(doc, dict):
        raise ManifestError(f"must hold a JSON object, got {type(doc).__name__}")
    version = _get(doc, "manifest_version", int)
    if version not in READ_VERSIONS:
        raise ManifestError(f"manifest_version is {version}, this seqdata reads versions "
                            f"{' and '.join(map(str, READ_VERSIONS))}")
    found = _get(doc, "checksum", str)
    if found != checksum(doc):
        raise ManifestError("checksum does not match the manifest's content: the manifest "
                            "is damaged or was edited")
    kind = _get(doc, "kind", str)
    if kind != KIND:
        raise ManifestError(f"kind is {kind!r}, expected {KIND!r}")
    fmt = _get(doc, "format", str)
    if fmt not in FORMAT_NAMES:
        raise ManifestError(f"format is {fmt!r}, expected one of {list(FORMAT_NAMES)}")
    spec = LagSumSpec.from_dict(_get(doc, "spec", dict))
    if _get(doc, "leaky", bool) != spec.seed_compat_leak:
        raise ManifestError(f"leaky is {doc['leaky']} but spec.seed_compat_leak is "
                            f"{spec.seed_compat_leak}")
    raw_bounds = _get(doc, "boundaries", list)
    for i, v in enumerate(raw_bounds):
        check_int(f"boundaries[{i}]", v, 1, error=ManifestError)
    boundaries = check_boundaries(raw_bounds, spec.lengths.low, spec.lengths.high)
    nb = len(boundaries)

    shards_doc = _get(doc, "shards", list)
    if len(shards_doc) != spec.num_chunks:
        raise ManifestError(f"shards lists {len(shards_doc)} shards, the spec makes "
                            f"{spec.num_chunks} chunks")
    shards = []
    for i, s in enumerate(shards_doc):
        where = f"shards[{i}]."
        if not isinstance(s, dict):
            raise ManifestError(f"shards[{i}] must be an object, got {s!r}")
        rel = _get(s, "path", str, where)
        check_relative_path(root, rel, where)
        if version >= 2 and PurePosixPath(rel).parent != PurePosixPath(DATA_DIR):
            raise ManifestError(f"{where}path must name a file in {DATA_DIR}/ "
                                f"(manifest_version {version}), got {rel!r}")
        if not rel.endswith(SUFFIXES[fmt]):
            raise ManifestError(f"{where}path {rel!r} must end with {SUFFIXES[fmt]!r} "
                                f"for format {fmt}")
        chunk = _get(s, "chunk", int, where)
        if chunk != i:
            raise ManifestError(f"{where}chunk is {chunk}, expected {i}")
        info = ShardInfo(rel, chunk, _counts(s, "bucket_sequences", nb, where),
                         _counts(s, "bucket_timesteps", nb, where),
                         _get(s, "size", int, where), _get(s, "sha256", str, where))
        start, stop = spec.chunk_ids(chunk)
        listed = _get(s, "num_sequences", int, where)
        if info.num_sequences != stop - start or listed != stop - start:
            raise ManifestError(f"{where}num_sequences must be {stop - start} (chunk {chunk}), "
                                f"got {s['num_sequences']} with buckets summing to "
                                f"{info.num_sequences}")
        if _get(s, "num_timesteps", int, where) != info.num_timesteps:
            raise ManifestError(f"{where}num_timesteps is {s['num_timesteps']}, its buckets "
                                f"sum to {info.num_timesteps}")
        lo = bucket_lower_bounds(boundaries, spec.lengths.low)
        for b, (n, t) in enumerate(zip(info.bucket_sequences, info.bucket_timesteps, strict=True)):
            if not n * lo[b] <= t <= n * boundaries[b]:
                raise ManifestError(f"{where}bucket {b} has {n} sequences and {t} timesteps, "
                                    f"impossible for lengths {lo[b]}..{boundaries[b]}")
        if info.size < 0 or len(info.sha256) != 64 or not _is_hex(info.sha256):
            raise ManifestError(f"{where}size/sha256 must be a byte count and 64 hex digits, "
                                f"got {info.size!r}/{info.sha256!r}")
        shards.append(info)
    resolved = [(root / s.path).resolve() for s in shards]
    if len(set(resolved)) != len(shards):
        raise ManifestError("shards list the same file twice (after resolving links)")

    hist = _get(doc, "length_histogram", dict)
    if _get(hist, "min_length", int, "length_histogram.") != spec.lengths.low:
        raise ManifestError(f"length_histogram.min_length is {hist['min_length']}, expected "
                            f"{spec.lengths.low}")
    span = spec.lengths.high - spec.lengths.low + 1
    counts = _counts(hist, "counts", span, "length_histogram.")
    manifest = Manifest(spec, fmt, boundaries, tuple(shards), counts, version)
    lengths = np.arange(spec.lengths.low, spec.lengths.high + 1)
    for key, found, want in [
        ("num_sequences", doc.get("num_sequences"), manifest.num_sequences),
        ("num_timesteps", doc.get("num_timesteps"), manifest.num_timesteps),
        ("length_histogram sequences", sum(counts), manifest.num_sequences),
        ("length_histogram timesteps", int(np.dot(counts, lengths)), manifest.num_timesteps),
        ("bucket_sequences", doc.get("bucket_sequences"), manifest.bucket_sequences.tolist()),
        ("bucket_timesteps", doc.get("bucket_timesteps"), manifest.bucket_timesteps.tolist()),
    ]:
        if found != want:
            raise ManifestError(f"{key} is {found!r}, the shards add up to {want!r}")
    if manifest.num_sequences != spec.num_sequences:
        raise ManifestError(f"shards hold {manifest.num_sequences} sequences, "
                            f"spec.num_sequences is {spec.num_sequences}")
    return manifest


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def padding_fraction(num_sequences: np.ndarray, num_timesteps: np.ndarray,
                     boundaries: tuple[int, ...]) -> np.ndarray:
    """Per bucket: the padding share if every sequence were padded to the bucket's bound."""
    padded = np.asarray(num_sequences) * np.asarray(boundaries)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = 1.0 - np.asarray(num_timesteps) / padded
    return np.where(padded > 0, frac, math.nan)
