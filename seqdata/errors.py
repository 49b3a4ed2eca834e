"""The domain errors of seqdata.

Every error a user can cause derives from :class:`SeqdataError`; the CLIs print its
message as one line and exit non-zero, so messages name the thing (file, option, field),
the value found and what was expected.
"""

from __future__ import annotations


class SeqdataError(Exception):
    """Base class of every error seqdata raises for bad input or bad data."""


class SpecError(SeqdataError, ValueError):
    """A dataset spec or option has an invalid value."""


class ManifestError(SeqdataError):
    """A manifest is missing, unreadable, of an unknown version or inconsistent."""


class ShardError(SeqdataError):
    """A shard file is missing, damaged, or does not match its manifest entry."""


class OutputError(SeqdataError):
    """An output location cannot be used (not empty, not writable, disk full)."""


class RemoteError(SeqdataError):
    """A URL cannot be used: fsspec, or the package of its protocol, is missing."""
