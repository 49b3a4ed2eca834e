import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqdata.errors import OutputError
from seqdata.store.atomic import write_bytes_atomic
from seqdata.store.memfile import MemoryFile


def test_a_memory_file_reads_like_a_real_one_after_reuse(tmp_path):
    f = MemoryFile()
    f.write(b"x" * 100)  # stale bytes that a reused buffer must not leak
    f.reset()
    ref = open(tmp_path / "real", "wb+")  # noqa: SIM115
    for target in (f, ref):
        target.write(b"abc")
        target.seek(10)
        target.write(b"def")  # the gap 3..10 reads as zeros
        target.truncate(20)   # so does the extension
        target.seek(2)
        target.write(b"Z")
        target.truncate(15)
    ref.close()
    expected = (tmp_path / "real").read_bytes()
    assert bytes(f.getbuffer()) == expected and len(expected) == 15
    f.seek(0)
    out = bytearray(30)
    assert f.readinto(out) == 15 and bytes(out[:15]) == expected
    f.seek(-5, 2)
    assert f.read() == expected[-5:]


def test_libraries_write_and_read_a_memory_file(tmp_path):
    f = MemoryFile()
    with h5py.File(f, "w") as h:
        h["a"] = np.arange(100_000)  # larger than nothing: the buffer grows
    (tmp_path / "a.h5").write_bytes(f.getbuffer())
    with h5py.File(tmp_path / "a.h5", "r") as h:
        np.testing.assert_array_equal(h["a"][()], np.arange(100_000))
    f.reset()
    pq.write_table(pa.table({"b": np.arange(10)}), f)
    (tmp_path / "b.parquet").write_bytes(f.getbuffer())
    assert pq.read_table(tmp_path / "b.parquet").column("b").to_pylist() == list(range(10))


@pytest.mark.parametrize("durable", [True, False])
def test_publication_is_atomic_with_or_without_waiting_for_the_disk(tmp_path, monkeypatch,
                                                                   durable):
    import seqdata.store.atomic

    path = tmp_path / "shard-00000.h5"
    write_bytes_atomic(path, memoryview(b"first"), durable=durable)
    assert path.read_bytes() == b"first"

    def fail(*args):
        raise OSError(28, "No space left on device")

    # A failure after the bytes went to the temporary file: the old file stays whole.
    monkeypatch.setattr(seqdata.store.atomic, "fsync_path" if durable else "start_writeback", fail)
    with pytest.raises(OutputError, match="No space left on device"):
        write_bytes_atomic(path, b"second", durable=durable)
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
