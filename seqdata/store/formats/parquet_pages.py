"""Where the PLAIN value bytes of a Parquet column chunk lie in its file.

Our writer stores every column uncompressed, PLAIN and without a dictionary, so the values
of a column chunk are plain little-endian arrays, page after page, separated only by page
headers (Thrift compact protocol) and, in v1 data pages of nested columns, by the
repetition and definition levels (each a 4-byte length and RLE/bit-packed bytes). This
module reads just enough Thrift to walk the pages and returns the byte ranges of their
values, so that later reads copy values straight from the file (see `parquet.py`).

Every number taken from the file is bounded before it is used: a page lies inside its
column chunk, a level section inside its page, a header within `MAX_HEADER` bytes, and a
chunk holds at most one page per value. A page that is well formed but of a layout other
than ours (a dictionary or index page, another encoding, BIT_PACKED levels, a compressed
data page v2) raises `OtherLayout`: the caller reads such a file with pyarrow. Anything
malformed or inconsistent raises `PageError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

# Thrift compact protocol types
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY = 1, 2, 3, 4, 5, 6, 7, 8
_LIST, _SET, _MAP, _STRUCT = 9, 10, 11, 12
# Parquet's PageType and Encoding
DATA_PAGE, INDEX_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 1, 2, 3
PLAIN, RLE = 0, 3

FIRST_READ = 256  # bytes read for a page header; more if it is longer
MAX_HEADER = 1 << 16  # a numeric column's header (statistics included) is < 1 KiB
MAX_DEPTH = 16  # nesting of Thrift structs and lists skipped in a header


class PageError(ValueError):
    """A page header that cannot be parsed, or describes impossible sizes."""


class OtherLayout(ValueError):
    """A well-formed page of a layout other than our writer's."""


class _Truncated(Exception):
    """The header goes on past the bytes read so far."""


class _Compact:
    """A reader of Thrift compact-protocol values from ``buf``, from position 0."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise _Truncated
        self.pos += 1
        return self.buf[self.pos - 1]

    def varint(self) -> int:
        value = 0
        for shift in range(0, 70, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
        raise PageError("a varint longer than 10 bytes")

    def zigzag(self, bits: int = 32) -> int:
        raw = self.varint()
        value = (raw >> 1) ^ -(raw & 1)
        if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise PageError(f"an i{bits} of {value}")
        return value

    def skip_bytes(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise _Truncated
        self.pos += n

    def skip(self, kind: int, depth: int) -> None:
        """Skip one value of compact type ``kind`` (a field's, not a list element's)."""
        if depth > MAX_DEPTH:
            raise PageError(f"Thrift values nested deeper than {MAX_DEPTH}")
        if kind in (_TRUE, _FALSE):
            return
        if kind == _BYTE:
            self.skip_bytes(1)
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.skip_bytes(8)
        elif kind == _BINARY:
            self.skip_bytes(self.varint())
        elif kind in (_LIST, _SET):
            head = self.byte()
            size, element = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            for _ in range(size):  # every element takes a byte or more: bounded by buf
                self.element(element, depth + 1)
        elif kind == _MAP:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.element(types >> 4, depth + 1)
                    self.element(types & 0x0F, depth + 1)
        elif kind == _STRUCT:
            self.struct(depth + 1, frozenset())
        else:
            raise PageError(f"Thrift type {kind}")

    def element(self, kind: int, depth: int) -> None:
        """Skip one element of a list or map: a boolean there is a byte of its own."""
        if kind in (_TRUE, _FALSE):
            self.skip_bytes(1)
        else:
            self.skip(kind, depth)

    def struct(self, depth: int, keep: frozenset[int]) -> dict[int, int | bool | dict]:
        """A struct's integer and boolean fields by id, and its fields in ``keep`` (structs)
        parsed the same way (keeping none of theirs); everything else skipped."""
        fields: dict[int, int | bool | dict] = {}
        last = 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == 0:
                return fields
            delta = head >> 4
            last = last + delta if delta else self.zigzag(16)
            if kind in (_TRUE, _FALSE):
                fields[last] = kind == _TRUE
            elif kind in (_I16, _I32):
                fields[last] = self.zigzag()
            elif kind == _STRUCT and last in keep:
                if depth >= MAX_DEPTH:
                    raise PageError(f"Thrift values nested deeper than {MAX_DEPTH}")
                fields[last] = self.struct(depth + 1, frozenset())
            else:
                self.skip(kind, depth)


@dataclass(frozen=True)
class PageHeader:
    """What a page header says, as far as locating its values goes."""

    kind: int
    size: int  # uncompressed bytes after the header
    compressed_size: int
    num_values: int  # levels (values, nulls and empty lists) in the page
    encoding: int
    level_encodings: tuple[int, int]  # (repetition, definition); v1 only
    v2_levels: tuple[int, int] | None  # (repetition, definition) bytes; v2 only
    v2_compressed: bool
    header_size: int


def parse_page_header(buf: bytes) -> PageHeader:
    """The `PageHeader` at the start of ``buf``. Raises `_Truncated` if ``buf`` ends
    within it, `PageError` if it is not a page header."""
    r = _Compact(buf)
    top = r.struct(0, frozenset({5, 8}))
    required = (1, 2, 3)
    if any(not isinstance(top.get(f), int) or isinstance(top.get(f), bool) for f in required):
        raise PageError("a page header without its type and sizes")
    kind, size, compressed = top[1], top[2], top[3]
    if size < 0 or compressed < 0:
        raise PageError(f"page sizes {size} / {compressed}")
    v1, v2 = top.get(5), top.get(8)
    if kind == DATA_PAGE and isinstance(v1, dict):
        num, encoding, definition, repetition = _ints(v1, (1, 2, 3, 4), "a data page")
        return PageHeader(kind, size, compressed, num, encoding, (repetition, definition),
                          None, False, r.pos)
    if kind == DATA_PAGE_V2 and isinstance(v2, dict):
        num, encoding, definition, repetition = _ints(v2, (1, 4, 5, 6), "a data page v2")
        return PageHeader(kind, size, compressed, num, encoding, (RLE, RLE),
                          (repetition, definition), bool(v2.get(7, True)), r.pos)
    if kind in (INDEX_PAGE, DICTIONARY_PAGE, DATA_PAGE, DATA_PAGE_V2):
        if kind in (DATA_PAGE, DATA_PAGE_V2):
            raise PageError(f"a data page (type {kind}) header without its page header")
        return PageHeader(kind, size, compressed, 0, -1, (-1, -1), None, False, r.pos)
    raise PageError(f"page type {kind}")


def _ints(header: dict, ids: tuple[int, ...], what: str) -> list[int]:
    """Integer fields ``ids`` of a parsed page header struct (PageError if any is not)."""
    fields = [header.get(f) for f in ids]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in fields):
        raise PageError(f"{what} header without its value count, encodings and sizes")
    return fields


def read_page_header(fd: int, offset: int, limit: int) -> PageHeader:
    """The header of the page at file offset ``offset``, which with its page must end by
    ``limit`` (its column chunk's end)."""
    want = FIRST_READ
    while True:
        n = min(want, limit - offset)
        buf = os.pread(fd, n, offset)
        try:
            return parse_page_header(buf)
        except _Truncated:
            if len(buf) < n:
                raise PageError("the file ends within a page header") from None
            if n >= min(MAX_HEADER, limit - offset):
                raise PageError("a page header running past its column chunk or longer "
                                f"than {MAX_HEADER} bytes") from None
            want *= 4


@dataclass(frozen=True)
class ColumnChunk:
    """A column chunk as the footer describes it, and what its values must add up to."""

    start: int  # file offset of its first page
    size: int  # bytes of all its pages, headers included
    num_values: int  # levels, as the footer says
    max_repetition: int
    max_definition: int
    value_size: int  # bytes of one PLAIN value
    value_bytes: int  # what the manifest's counts make all its values


def value_ranges(fd: int, file_size: int, chunk: ColumnChunk) -> np.ndarray:
    """(file offset, bytes) of the PLAIN values of each data page of ``chunk``, in order:
    an int64 (pages, 2) array.

    Raises `OtherLayout` for a well-formed page of another layout, `PageError` for
    anything malformed: sizes outside the chunk (or the chunk outside the file), level
    sections outside their page, compressed and uncompressed sizes that differ, a page
    without values, or values that do not add up to ``chunk.value_bytes``.
    """
    start, end = chunk.start, chunk.start + chunk.size
    if not 0 <= start <= end <= file_size:
        raise PageError(f"a column chunk at bytes {start}..{end} of a {file_size}-byte file")
    ranges: list[tuple[int, int]] = []
    seen = total = 0
    at = start
    while at < end:
        if seen >= chunk.num_values:
            raise PageError(f"pages after the chunk's {chunk.num_values} values, at byte {at}")
        header = read_page_header(fd, at, end)
        body = at + header.header_size
        if header.compressed_size != header.size:
            raise PageError(f"a page at byte {at} of {header.compressed_size} bytes stored, "
                            f"{header.size} uncompressed")
        if body + header.size > end:
            raise PageError(f"a page at byte {at} of {header.size} bytes runs past its "
                            f"column chunk (ending at byte {end})")
        if header.kind not in (DATA_PAGE, DATA_PAGE_V2):
            raise OtherLayout(f"a page of type {header.kind}")
        if header.encoding != PLAIN:
            raise OtherLayout(f"values of encoding {header.encoding}")
        if header.num_values < 1 or header.num_values > chunk.num_values - seen:
            raise PageError(f"a page of {header.num_values} values at byte {at}, "
                            f"{chunk.num_values - seen} of the chunk's left")
        levels = _levels_size(fd, body, header, chunk)
        values = header.size - levels
        if values % chunk.value_size:
            raise PageError(f"a page at byte {at} holding {values} bytes of values, not a "
                            f"whole number of {chunk.value_size}-byte values")
        ranges.append((body + levels, values))
        seen += header.num_values
        total += values
        at = body + header.size
    if seen != chunk.num_values or total != chunk.value_bytes:
        raise PageError(f"pages holding {seen} values in {total} bytes, expected "
                        f"{chunk.num_values} values in {chunk.value_bytes} bytes")
    return np.array(ranges, np.int64).reshape(-1, 2)


def _levels_size(fd: int, body: int, header: PageHeader, chunk: ColumnChunk) -> int:
    """Bytes of the repetition and definition levels at the start of a data page."""
    if header.v2_levels is not None:  # levels lengths in the header, no prefixes
        if header.v2_compressed:
            raise OtherLayout("a data page v2 marked compressed")
        if min(header.v2_levels) < 0 or sum(header.v2_levels) > header.size:
            raise PageError(f"level sections of {header.v2_levels} bytes in a page of "
                            f"{header.size}")
        return sum(header.v2_levels)
    present = (chunk.max_repetition > 0, chunk.max_definition > 0)
    size = 0
    for there, encoding in zip(present, header.level_encodings, strict=True):
        if not there:
            continue
        if encoding != RLE:
            raise OtherLayout(f"levels of encoding {encoding}")
        if size + 4 > header.size:
            raise PageError(f"a level section past the end of a {header.size}-byte page")
        head = os.pread(fd, 4, body + size)
        n = int.from_bytes(head, "little") if len(head) == 4 else -1
        if n < 0 or size + 4 + n > header.size:
            raise PageError(f"a level section of {n} bytes in a {header.size}-byte page")
        size += 4 + n
    return size
