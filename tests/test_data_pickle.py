"""The restricted unpickler: data comes back, code never runs."""

import io
import os
import pickle
import subprocess

import numpy as np
import pytest

from hpsearch.data import DataError, safe_load_pickle


class _RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch EVAL_MARKER')",))


class _SpawnsProcess:
    def __reduce__(self):
        return (subprocess.Popen, (["touch", "POPEN_MARKER"],))


def _write(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def test_crafted_reduce_does_not_run_code(tmp_path):
    marker = tmp_path / "MARKER"
    path = _write(tmp_path / "evil.pkl", {b"data": _RunsShell(f"touch {marker}")}, protocol=2)
    with pytest.raises(DataError) as err:
        safe_load_pickle(path)
    assert not marker.exists()
    msg = str(err.value)
    assert str(path) in msg and "system" in msg and "\n" not in msg


@pytest.mark.parametrize("payload, refused", [(_CallsEval(), "builtins.eval"), (_SpawnsProcess(), "subprocess.Popen")])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_other_dangerous_globals_are_refused(tmp_path, monkeypatch, payload, refused, protocol):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "evil.pkl", [1, payload], protocol=protocol)
    with pytest.raises(DataError, match=refused):
        safe_load_pickle(path)
    assert not list(tmp_path.glob("*MARKER"))


def test_codecs_encode_admits_only_latin1(tmp_path):
    # _codecs.encode('abc', 'rot13') hand-assembled: protocol-2 bytes use
    # encode(text, 'latin1'), any other codec is refused.
    raw = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    path = tmp_path / "rot13.pkl"
    path.write_bytes(raw)
    with pytest.raises(DataError, match="rot13"):
        safe_load_pickle(path)


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_arrays_and_plain_containers_round_trip(tmp_path, protocol):
    obj = {
        b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072),
        b"labels": [3, 7],
        "floats": np.linspace(0, 1, 5, dtype=np.float32),
        b"filenames": [b"a.png", b"b.png"],
        b"empty": b"",
        "meta": ("text", 1.5, 2**70, None, True, {1, 2}, frozenset({3})),
        "scalar": np.int64(9),
    }
    back = safe_load_pickle(_write(tmp_path / f"p{protocol}.pkl", obj, protocol))
    assert np.array_equal(back[b"data"], obj[b"data"]) and back[b"data"].dtype == np.uint8
    assert np.array_equal(back["floats"], obj["floats"])
    assert back[b"labels"] == [3, 7] and back[b"filenames"] == [b"a.png", b"b.png"]
    assert back[b"empty"] == b"" and back["meta"] == obj["meta"] and back["scalar"] == 9


def test_reads_from_a_file_object():
    buf = io.BytesIO(pickle.dumps({b"ids": [1, 2]}, protocol=2))
    assert safe_load_pickle(buf) == {b"ids": [1, 2]}


def test_truncated_corrupt_empty_and_missing_files_name_the_file(tmp_path):
    good = pickle.dumps({b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10))}, protocol=2)
    cases = {
        "truncated": good[: len(good) // 2],
        "garbage": bytes(range(256)) * 4,
        "empty": b"",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError) as err:
            safe_load_pickle(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value), name
    with pytest.raises(DataError, match="not found"):
        safe_load_pickle(tmp_path / "absent.pkl")
