"""Data files are untrusted and may be huge: only the rows asked for are read, headers are checked
against the bytes really there, integers outside uint8 need --input-scale, labels must match."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from cli_runner import assert_refused, peak_rss, small_network, snnexport
from snnexport import data
from snnexport.errors import SnnexportError

SHAPE = (16, 16, 1)  # the zoo LeNet's input
MB = 2 ** 20


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return small_network(tmp_path_factory.mktemp("data"), 8)


def _npy_header(shape: tuple[int, ...], dtype=np.float32) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def deflate_bomb(path: Path, blocks: int) -> int:
    """An .npz whose member x.npy inflates to ``blocks`` MiB of float32 zeros (rows of 16x16x1) from
    about 1 kB per MiB, with correct sizes and CRC: the kind of file that took 9.7 GB to load.
    Returns the uncompressed size. Built by hand (a repeated deflate block), in well under a second."""
    header = _npy_header((blocks * MB // (4 * 16 * 16),) + SHAPE)
    block = bytes(MB)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(header + block) + c.flush(zlib.Z_FULL_FLUSH)
    repeated = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(block) + c.flush(zlib.Z_FULL_FLUSH) == repeated  # a full flush resets the state
    last = c.compress(block) + c.flush(zlib.Z_FINISH)
    body_parts = [first, repeated * (blocks - 2), last]
    size = len(header) + blocks * MB
    crc = zlib.crc32(header)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    csize = sum(map(len, body_parts))
    name = b"x.npy"
    local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 8, 0, 0x21, crc, csize, size, len(name), 0)
    central = struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 0, 20, 0, 0, 8, 0, 0x21, crc, csize, size,
                          len(name), 0, 0, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(local + name)
        for part in body_parts:
            f.write(part)
        offset = f.tell()
        f.write(central + name)
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name), offset, 0))
    return size


@pytest.fixture(scope="module")
def bomb(work) -> Path:
    path = work / "bomb.npz"
    size = deflate_bomb(path, 3700)  # 3.9 GB of float32 in 3.7 MB
    assert path.stat().st_size < 5 * MB and size > 3.8e9
    with zipfile.ZipFile(path) as z:  # a valid archive: what a sender of a real bomb would make
        assert z.getinfo("x.npy").file_size == size
    return path


@pytest.mark.parametrize("command", ["simulate", "convert"])
def test_a_deflate_bomb_costs_only_the_rows_asked_for(work, bomb, command):
    def args(data_file):
        if command == "simulate":
            return ["simulate", work / "net.snn", "--data", data_file, "-n", "3"]
        return [work / "model.h5", "--calibration", data_file, "--calibration-samples", "3", "-o", work / "b.snn"]

    base, code, err = peak_rss(*args(work / "data.npz"))
    assert code == 0, err
    rss, code, err = peak_rss(*args(bomb))
    assert code == 0, err
    assert rss < base + 64 * MB, (rss / MB, base / MB)  # the whole member: 3,900 MB, and as much again as float32
    x, y = data.load_samples(bomb, SHAPE, limit=5)
    assert x.shape == (5,) + SHAPE and not x.any() and y is None


def test_a_deflate_bomb_read_whole_is_refused(work, bomb):
    rss, code, err = peak_rss("simulate", work / "net.snn", "--data", bomb)
    assert code == 1 and "Traceback" not in err, err
    assert "decompress" in err and "-n" in err, err
    assert rss < 1024 * MB


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_a_header_that_claims_more_than_the_file_holds_is_damage(work, tmp_path, suffix):
    raw = _npy_header((10 ** 12,) + SHAPE) + bytes(4096)
    path = tmp_path / f"huge{suffix}"
    if suffix == ".npy":
        path.write_bytes(raw)
    else:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("x.npy", raw)
    proc = snnexport("simulate", work / "net.snn", "--data", path, "-n", "3")
    assert_refused(proc, f"data file huge{suffix}", "is damaged", "header claims", "(1000000000000, 16, 16, 1)",
                   "the file holds 4.1 kB")


def test_a_memory_mapped_npy_reads_only_the_rows_asked_for(work, tmp_path):
    big = tmp_path / "big.npy"
    a = np.lib.format.open_memmap(big, "w+", np.float32, (300_000,) + SHAPE)  # 307 MB, sparse on disk
    a[:3] = 0.5
    del a
    base, code, err = peak_rss("simulate", work / "net.snn", "--data", work / "data.npz", "-n", "3")
    rss, code, err = peak_rss("simulate", work / "net.snn", "--data", big, "-n", "3")
    assert code == 0, err
    assert rss < base + 32 * MB, (rss / MB, base / MB)


@pytest.mark.parametrize("values", [[0, 614000], [-300, 12]])
def test_integers_outside_uint8_need_input_scale(work, tmp_path, values):
    x = np.zeros((4,) + SHAPE, np.int64)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = values
    np.save(tmp_path / "ints.npy", x)
    proc = snnexport("simulate", work / "net.snn", "--data", tmp_path / "ints.npy")
    assert_refused(proc, f"from {min(values)} to {max(values)}", "--input-scale")
    proc = snnexport("simulate", work / "net.snn", "--data", tmp_path / "ints.npy", "--input-scale", "0.001")
    assert proc.returncode == 0, proc.stderr.decode()


def test_uint8_keeps_its_note_and_nan_is_refused(work, tmp_path):
    np.save(tmp_path / "u8.npy", np.full((2,) + SHAPE, 200, np.uint8))
    proc = snnexport("simulate", work / "net.snn", "--data", tmp_path / "u8.npy")
    assert proc.returncode == 0 and "uint8: dividing by 255" in proc.stderr.decode()
    np.save(tmp_path / "nan.npy", np.full((2,) + SHAPE, np.nan, np.float32))
    assert_refused(snnexport("simulate", work / "net.snn", "--data", tmp_path / "nan.npy"), "NaN")


@pytest.mark.parametrize("labels, needle", [(np.arange(5), "labels of shape (5,) for 6 samples"),
                                            (np.zeros((6, 2, 2)), "labels of shape (6, 2, 2)"),
                                            (np.array(["a"] * 6), "labels must be numbers"),
                                            (np.full(6, 0.5), "not whole numbers")])
def test_labels_that_do_not_fit_the_samples_are_refused(work, tmp_path, labels, needle):
    np.savez(tmp_path / "d.npz", x=np.zeros((6,) + SHAPE, np.float32), y=labels)
    proc = snnexport("simulate", work / "net.snn", "--data", tmp_path / "d.npz", "-n", "2")
    assert_refused(proc, "d.npz", needle)


# --- the loader itself --------------------------------------------------------------------------------

@pytest.mark.parametrize("save", ["npy", "npz", "npz_compressed", "npz_fortran"])
def test_partial_reads_give_the_first_rows_exactly(tmp_path, save):
    rng = np.random.default_rng(0)
    x = rng.random((50,) + SHAPE).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 50)]  # one-hot
    path = tmp_path / f"d.{save[:3]}"
    if save == "npy":
        np.save(path, x)
    elif save == "npz":
        np.savez(path, x_test=x, y_test=y)
    elif save == "npz_compressed":
        np.savez_compressed(path, x=x, y=y)
    else:
        np.savez(path, x=np.asfortranarray(x), y=y)
    got, labels = data.load_samples(path, SHAPE, limit=7)
    np.testing.assert_array_equal(got, x[:7])
    if save != "npy":
        np.testing.assert_array_equal(labels, y[:7].argmax(axis=1))
    full, _ = data.load_samples(path, SHAPE)
    np.testing.assert_array_equal(full, x)


def test_one_sample_without_a_batch_axis_is_still_one_sample(tmp_path):
    x = np.arange(16 * 16, dtype=np.float32).reshape(16, 16) / 256  # grey image, no channel axis
    np.save(tmp_path / "one.npy", x)
    got, _ = data.load_samples(tmp_path / "one.npy", SHAPE, limit=3)
    np.testing.assert_array_equal(got, x.reshape((1,) + SHAPE))


def test_a_0_d_array_is_one_sample_of_one_value(tmp_path):
    np.save(tmp_path / "scalar.npy", np.float32(0.5))  # was an IndexError: () read as a batch of ()
    got, _ = data.load_samples(tmp_path / "scalar.npy", (1,))
    np.testing.assert_array_equal(got, np.full((1, 1), 0.5, np.float32))
    with pytest.raises(SnnexportError, match=r"has shape \(\); expected \(N, 16, 16, 1\)"):
        data.load_samples(tmp_path / "scalar.npy", SHAPE)


def test_pickled_and_odd_arrays_are_refused_without_loading(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SnnexportError, match="Python objects"):
        data.load_samples(tmp_path / "obj.npy", SHAPE)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(SnnexportError, match="not a readable numpy file"):
        data.load_samples(tmp_path / "junk.npz", SHAPE)
