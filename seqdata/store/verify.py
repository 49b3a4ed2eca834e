"""Verify a dataset: every shard's bytes, structure and counts, and optionally its labels.

Problems are collected, not raised, so that one run names every bad shard. Datasets of
both layouts verify (manifest_version 1: shards beside the manifest; 2: in ``data/``).
The card (README.md) is documentation, not data: one that is missing or differs from the
manifest's is a note, not a problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from seqdata.errors import ShardError
from seqdata.generate import labels_from_sums, lag_sums
from seqdata.progress import Progress
from seqdata.sequences import Sequences
from seqdata.store.atomic import file_sha256
from seqdata.store.card import CARD_NAME, card_is_current
from seqdata.store.manifest import Manifest, read_manifest
from seqdata.store.remote import is_url, open_remote
from seqdata.store.shards import content_problems, read_shard


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one shard."""

    shard: str
    message: str


@dataclass(frozen=True)
class VerifyReport:
    root: Path | str  # the dataset's directory or URL
    num_shards: int
    labels_checked: bool
    leaky: bool
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()  # not damage: a card missing or edited, the old layout

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_shards(self) -> list[str]:
        return sorted({p.shard for p in self.problems})


def verify_dataset(path: Path | str, labels: bool = False, progress: bool = False,
                   cache: Path | str | None = None) -> VerifyReport:
    """Check every shard against the manifest (raises ManifestError for a bad manifest).

    At a URL (`seqdata.store.remote`), each shard is downloaded anew, cached copies
    untrusted, and checked the same way; reports name the URL.

    >>> import tempfile
    >>> from seqdata.spec import LagSumSpec
    >>> from seqdata.store.build import build_dataset
    >>> d = tempfile.mkdtemp()
    >>> _ = build_dataset(d, LagSumSpec(num_sequences=30), progress=False)
    >>> verify_dataset(d, labels=True).ok
    True
    """
    if is_url(path):
        remote = open_remote(str(path), cache, find_shards=False)
        return _verify(remote.url, remote.local, remote.manifest, remote.fresh_copies(),
                       labels, progress)
    root = Path(path)
    manifest = read_manifest(root)
    return _verify(root, root, manifest, ((i, root, None) for i in range(len(manifest.shards))),
                   labels, progress)


def _verify(location: Path | str, home: Path, manifest: Manifest,
            copies: Iterable[tuple[int, Path, str | None]], labels: bool,
            progress: bool) -> VerifyReport:
    """Check each shard as ``copies`` yields it: (index, the directory holding it, why
    it could not be fetched or None). ``home`` holds the manifest and the card."""
    problems: list[Problem] = []
    bar = Progress(len(manifest.shards), f"verify {PurePosixPath(str(location)).name}",
                   enabled=progress)
    for index, root, unfetched in copies:
        info = manifest.shards[index]
        messages = [unfetched] if unfetched else _check_shard(root, manifest, index, labels)
        # A copy's messages name the dataset's location, not the scratch directory.
        problems += [Problem(info.path, m.replace(str(root), str(location))) for m in messages]
        bar.advance(info.num_sequences, info.num_timesteps)
    return VerifyReport(location, len(manifest.shards), labels, manifest.leaky,
                        tuple(problems), _notes(location, home, manifest))


def _notes(location: Path | str, root: Path, manifest: Manifest) -> tuple[str, ...]:
    if manifest.version < 2:
        return (f"old layout (manifest_version {manifest.version}: shards beside the "
                f"manifest, no card); `seqdata convert {location} NEW` writes the current one",)
    if not (root / CARD_NAME).exists():
        return (f"{CARD_NAME} (the dataset card) is missing",)
    if not card_is_current(root, manifest):
        return (f"{CARD_NAME} differs from the card of this manifest (edited, or written "
                f"by another seqdata version)",)
    return ()


def _check_shard(root: Path, manifest: Manifest, index: int, labels: bool) -> list[str]:
    info = manifest.shards[index]
    path = root / info.path
    if not path.exists():
        return ["missing"]
    try:
        size = path.stat().st_size
        if size != info.size:
            return [f"size is {size} bytes, the manifest says {info.size} (truncated or "
                    f"replaced)"]
        digest = file_sha256(path)
    except OSError as e:
        return [f"cannot be read: {e.strerror or e}"]
    if digest != info.sha256:
        # A damaged file is not parsed any further: its bytes are already known wrong.
        return [f"sha256 is {digest}, the manifest says {info.sha256}"]
    try:
        parts = read_shard(root, manifest, index)
        meta = read_shard(root, manifest, index, values=False)
    except ShardError as e:
        return [str(e)]
    problems = content_problems(manifest, info, parts, meta)
    return problems + (_label_problems(manifest, parts) if labels else [])


def _label_problems(manifest: Manifest, parts: list[Sequences]) -> list[str]:
    """Buckets whose labels differ from the lag-sum rule applied to their values."""
    spec = manifest.spec
    problems = []
    for b, part in enumerate(parts):
        if not len(part):
            continue
        if spec.seed_compat_leak:  # feature 0 holds the sum itself
            expected = labels_from_sums(part.x[:, 0], spec.threshold)
        else:
            expected = labels_from_sums(lag_sums(part.x, part.offsets, spec.window),
                                        spec.threshold)
        wrong = int(np.count_nonzero(expected != part.y))
        if wrong:
            problems.append(f"bucket {b}: {wrong} labels differ from the lag-sum rule")
    return problems
