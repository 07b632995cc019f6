"""A restricted unpickler for the pickles that come from outside.

CIFAR-10 python batches and the Kaggle test file are pickles, and unpickling
runs whatever callables the file names. ``safe_load_pickle`` admits only the
globals those files need to rebuild numpy arrays and plain containers; any
other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``...) is
refused before it is even imported. This is the ``find_class`` recipe of the
Python docs ("Restricting Globals", pickle module documentation).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import importlib
import io
import os
import pickle
from pathlib import Path
from typing import IO, Any

from hpsearch.data.errors import DataError

# numpy moved its internals from numpy.core to numpy._core in 2.0; pickles
# written by either version name either module, so both spellings are allowed
# and resolved to whichever exists in the installed numpy.
_NUMPY_CORE_GLOBALS = {
    ("multiarray", "_reconstruct"),  # ndarray.__reduce__ (protocols 2-4)
    ("multiarray", "scalar"),  # numpy scalars, e.g. np.int64 labels
    ("numeric", "_frombuffer"),  # ndarray.__reduce_ex__ under protocol 5
}

_ALLOWED: set[tuple[str, str]] = {("numpy", "ndarray"), ("numpy", "dtype")}
for _sub, _name in _NUMPY_CORE_GLOBALS:
    _ALLOWED.add((f"numpy.core.{_sub}", _name))
    _ALLOWED.add((f"numpy._core.{_sub}", _name))

# Plain containers and numbers. Protocol 0-2 pickles name these as globals
# (e.g. ``__builtin__ bytes`` for an empty bytes object); calling any of them
# on unpickled data cannot reach the file system or the interpreter.
_SAFE_BUILTINS = {
    "bytes", "bytearray", "str", "int", "float", "complex", "bool",
    "list", "dict", "tuple", "set", "frozenset",
}
_ALLOWED.update(("builtins", name) for name in _SAFE_BUILTINS)

PathOrFile = str | os.PathLike | IO[bytes]


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], display_name: str):
        # encoding="bytes": CIFAR batches were pickled by Python 2, whose str
        # keys and image data must come back as bytes (CIFAR-10 page's loader).
        super().__init__(file, encoding="bytes")
        self._display_name = display_name

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (e.g. "__builtin__") are mapped to Python 3 ones as
        # the default find_class does for old protocols, then checked against
        # the allow-list; the mapping only renames, it admits nothing.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) == ("_codecs", "encode"):
            return self._latin1_encode
        if (module, name) not in _ALLOWED:
            raise DataError(
                f"refused to unpickle {self._display_name}: it references the global "
                f"{module}.{name}, which a data file has no need for; allowed are numpy "
                f"arrays, lists, dicts, bytes, strings and numbers"
            )
        return getattr(_import_numpy_aware(module), name)

    def _latin1_encode(self, obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        """Stand-in for ``_codecs.encode``, which protocol 0-2 pickles written
        by Python 3 use to rebuild ``bytes`` (``encode(text, 'latin1')``).
        Only that codec is admitted: others (zlib, rot13, ...) have no
        business in a data file."""
        if not isinstance(obj, str) or not isinstance(encoding, str) or _codec_name(encoding) != "iso8859-1":
            raise DataError(
                f"refused to unpickle {self._display_name}: it calls _codecs.encode with "
                f"encoding {encoding!r}; only 'latin1' (how old pickles store bytes) is allowed"
            )
        return obj.encode("latin-1", errors)


def _codec_name(encoding: str) -> str | None:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return None


def _import_numpy_aware(module: str):
    if module.startswith(("numpy.core.", "numpy._core.")):
        sub = module.split(".", 2)[2]
        for candidate in (f"numpy._core.{sub}", f"numpy.core.{sub}"):
            try:
                return importlib.import_module(candidate)
            except ImportError:
                continue
        raise ImportError(module)
    return importlib.import_module(module)


def safe_load_pickle(path_or_file: PathOrFile) -> Any:
    """Unpickle a data file admitting only numpy arrays and plain containers.

    ``path_or_file`` is a path or a binary file object. Raises ``DataError``
    naming the file for a missing, truncated or corrupt file and for any
    global outside the allow-list (no code from the file runs)."""
    if isinstance(path_or_file, (str, os.PathLike)):
        path = Path(path_or_file)
        try:
            with open(path, "rb") as f:
                return _load(f, str(path))
        except FileNotFoundError as e:
            raise DataError(f"file not found: {path}") from e
        except IsADirectoryError as e:
            raise DataError(f"expected a pickle file but found a directory: {path}") from e
    name = getattr(path_or_file, "name", None)
    return _load(path_or_file, str(name) if isinstance(name, (str, os.PathLike)) else "<pickle stream>")


def _load(f: IO[bytes], display_name: str) -> Any:
    try:
        return _RestrictedUnpickler(f, display_name).load()
    except DataError:
        raise
    except EOFError as e:
        raise DataError(f"{display_name} is truncated or empty (unexpected end of pickle data)") from e
    except (pickle.UnpicklingError, io.UnsupportedOperation) as e:
        raise DataError(f"{display_name} is not a valid pickle file ({e}); is it truncated or corrupt?") from e
    except Exception as e:  # numpy and pickle raise many types on garbage input
        raise DataError(
            f"{display_name} could not be unpickled ({type(e).__name__}: {e}); is it truncated or corrupt?"
        ) from e
