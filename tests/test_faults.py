"""Untrusted files never run code, and bounded reads: crafted pickles, planted checkpoints, gzip bombs."""

import gzip
import os
import pickle
import resource
import struct
import time
import tracemalloc

import numpy as np
import pytest
import torch

import meanfield.data as D
from meanfield import FlowConfig, Particles, Samples, simulate
from meanfield.data.real import read_cifar_batch, read_idx


class _System:
    """Unpickling calls os.system(cmd): the classic crafted pickle."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Open:
    """Unpickling calls builtins.open(path, 'w'): creates the file without a shell."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _Exec:
    """Unpickling calls builtins.exec(code)."""

    def __init__(self, path):
        self.code = f"open({str(path)!r}, 'w').close()"

    def __reduce__(self):
        return (exec, (self.code,))


def _payloads(marker):
    return {"system": _System(f"touch {marker}"), "open": _Open(marker), "exec": _Exec(marker)}


def _cifar(n, seed=0):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"labels": [int(i % 10) for i in range(n)], b"batch_label": b"training batch 1 of 5"}


# ----------------------------------------------------------------------------- A.1 CIFAR pickles
@pytest.mark.parametrize("kind", ["system", "open", "exec"])
@pytest.mark.parametrize("where", ["data", "labels", "top"])
def test_crafted_cifar_batch_never_runs_code(tmp_path, kind, where):
    marker = tmp_path / "marker"
    evil = _payloads(marker)[kind]
    batch = _cifar(4)
    obj = evil if where == "top" else {**batch, f"{where}".encode(): evil}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(ValueError, match="data_batch_1.*forbidden global"):
        read_cifar_batch(tmp_path / "data_batch_1")
    with pytest.raises(ValueError, match="data_batch_1.*forbidden global"):
        D.cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["system", "open", "exec"])
def test_crafted_batches_meta_is_an_error_naming_the_file(tmp_path, kind):
    marker = tmp_path / "marker"
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(_cifar(10), protocol=2))
    meta = {b"label_names": [b"a"] * 10, b"num_vis": _payloads(marker)[kind]}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta))
    with pytest.raises(ValueError, match=r"batches\.meta.*forbidden global"):
        D.cifar10(tmp_path)
    assert not marker.exists()
    # a malformed (but harmless) meta is no longer swallowed either
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"names": 1}))
    with pytest.raises(ValueError, match=r"batches\.meta"):
        D.cifar10(tmp_path)


def test_object_dtype_array_is_refused(tmp_path):
    """An object array is a container of arbitrary pickled objects: refused outright."""
    arr = np.array([1, "x", None], dtype=object)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": arr, b"labels": [0, 1, 2]}))
    with pytest.raises(ValueError, match="data_batch_1.*forbidden global"):
        read_cifar_batch(tmp_path / "data_batch_1")


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, 5, "numpy1"])
def test_genuine_cifar_files_still_load(tmp_path, protocol):
    batch = _cifar(12, 3)
    raw = pickle.dumps(batch, protocol=2 if protocol == "numpy1" else protocol)
    if protocol == "numpy1":  # the real files name numpy 1's module: numpy.core.multiarray
        raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        assert b"numpy.core.multiarray\n_reconstruct" in raw
    (tmp_path / "data_batch_1").write_bytes(raw)
    names = [n.encode() for n in ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse",
                                  "ship", "truck")]
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(
        {b"label_names": names, b"num_cases_per_batch": 10000, b"num_vis": 3072},
        protocol=2 if protocol == "numpy1" else protocol))
    X, y = read_cifar_batch(tmp_path / "data_batch_1")
    assert np.array_equal(X.reshape(12, -1), batch[b"data"]) and y.tolist() == batch[b"labels"]
    ds = D.cifar10(tmp_path, standardise="none")
    assert ds.class_names[1] == "car"


# ----------------------------------------------------------------------------- A.2 checkpoints
def test_planted_checkpoint_never_runs_code(tmp_path):
    marker = tmp_path / "marker"
    X = torch.linspace(-1, 1, 8, dtype=torch.float64)[:, None]
    data = Samples.from_masses(X, (X[:, 0] > 0).long())
    P = Particles.gaussian(5, 1, 1, seed=0)
    ck = tmp_path / "checkpoint.pt"
    for kind, evil in _payloads(marker).items():
        torch.save({"state": evil, "t": 0.1, "step": 1, "key": "x"}, ck)
        with pytest.raises(ValueError, match="checkpoint.pt"):
            simulate(P, data, FlowConfig(dt=0.1, t_end=0.3, backend="dense"), checkpoint=ck)
        assert not marker.exists(), kind
    # a genuine checkpoint (tensors, numbers, strings, RNG state, history rows, snapshots) loads
    from meanfield.record import Recorder
    ck.unlink()
    cfg = FlowConfig(dt=0.1, t_end=0.3, backend="dense", tau=1e-3)
    r1 = simulate(P, data, cfg, checkpoint=ck, recorder=Recorder(num=3, snapshot=2))
    r2 = simulate(P, data, cfg, checkpoint=ck, recorder=Recorder(num=3, snapshot=2))
    assert r2.resumed_from == pytest.approx(0.3) and torch.equal(r1.particles.a, r2.particles.a)


def test_particles_load_is_weights_only(tmp_path):
    P = Particles.gaussian(5, 2, 3, seed=1, activation="tanh")
    P.save(tmp_path / "particles.pt")
    Q = Particles.load(tmp_path / "particles.pt")
    assert torch.equal(P.w, Q.w) and Q.activation == "tanh"
    marker = tmp_path / "marker"
    torch.save({"a": _System(f"touch {marker}")}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="evil.pt"):
        Particles.load(tmp_path / "evil.pt")
    assert not marker.exists()


# ----------------------------------------------------------------------------- A.3 bounded reads
def _idx_header(dims, code=0x08):
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def _gzip_bomb(path, header: bytes, inflated: int, chunk: int = 1 << 24):
    """header + ``inflated`` zero bytes: one gzip member streamed through GzipFile, then copies of
    a second member (16 MiB of zeros, ~16 kB compressed) -- gzip readers concatenate members, so
    the file is built in well under a second yet inflates to GBs."""
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as gz:
            gz.write(header)
            gz.write(bytes(min(chunk, inflated)))
        zeros = gzip.compress(bytes(chunk), compresslevel=9)
        for _ in range(inflated // chunk - 1):
            raw.write(zeros)


def test_gzip_bomb_fails_fast_with_bounded_memory(tmp_path):
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    _gzip_bomb(bomb, _idx_header((2, 28, 28)), 2 ** 31)  # 2 GiB of zeros behind a 1.5 kB header
    size = bomb.stat().st_size
    assert size < 4 * 2 ** 20, size
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*trailing bytes"):
        read_idx(bomb)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024  # kB on Linux
    assert elapsed < 1.0, elapsed
    assert peak < 100 * 2 ** 20 and grown < 100 * 2 ** 20, (peak, grown)


def test_idx_header_claiming_too_much_is_refused(tmp_path):
    f = tmp_path / "huge.gz"
    _gzip_bomb(f, _idx_header((60000, 60000, 28)), 0)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="huge.gz.*more than"):
        read_idx(f)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_and_overlong_idx_name_the_file(tmp_path, gz):
    good = _idx_header((3, 4, 4)) + bytes(48)
    enc = gzip.compress if gz else (lambda b: b)
    name = "cut.gz" if gz else "cut"
    (tmp_path / name).write_bytes(enc(good[:-5]))
    with pytest.raises(ValueError, match=f"{name}.*truncated"):
        read_idx(tmp_path / name)
    long = "long.gz" if gz else "long"
    (tmp_path / long).write_bytes(enc(good + b"\x00"))
    with pytest.raises(ValueError, match=f"{long}.*trailing bytes"):
        read_idx(tmp_path / long)
    ok = "ok.gz" if gz else "ok"
    (tmp_path / ok).write_bytes(enc(good))
    assert read_idx(tmp_path / ok).shape == (3, 4, 4)
