"""Reading a user's .npz file of named arrays (`dse run --inputs`): in, a path; out, name ->
array. No pickles are loaded, each array's header is checked against the IR's size limit
before its data is read, and every way the file can be unreadable (missing, not a zip, a
single .npy, truncated, corrupt) is one user error naming the file."""
from __future__ import annotations

import zipfile
import zlib

import numpy as np

from compiler.ir import shape_problem

# A zip (.npz: a local file header, or the end record of an empty archive) or a .npy file.
MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")
# What numpy, zipfile and zlib raise on a damaged or foreign file.
READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)


def read_arrays(path, error, purpose: str) -> dict:
    """The arrays of the .npz at `path`, by name; any problem raises `error` (a user error type)
    whose message names the file and `purpose` (e.g. "inputs")."""
    hint = f"write {purpose} with numpy.savez(path, name=array, ...)"
    try:
        with open(path, "rb") as file:         # ours to close, whatever np.load raises
            magic = file.read(6)
            if not magic.startswith(MAGIC):
                raise error(f"{path}: not an .npz file (it starts with {magic!r}, not a zip header); {hint}")
            file.seek(0)
            loaded = np.load(file, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise error(f"{path}: holds a single array (.npy), not named arrays; {hint}")
            members = set(loaded.zip.namelist())
            for key in loaded.files:
                if f"{key}.npy" in members:
                    _check_header(loaded.zip, f"{key}.npy", path, error)
            return {key: loaded[key] for key in loaded.files}
    except READ_ERRORS as exc:
        raise error(f"{path}: cannot read {purpose} ({_reason(exc)}); {hint}") from None


def _check_header(archive: zipfile.ZipFile, member: str, path, error) -> None:
    """Refuse an array whose header declares a shape past the IR's size limit, unread."""
    with archive.open(member) as file:
        version = np.lib.format.read_magic(file)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read(file)
    problem = shape_problem(shape)
    if problem:
        raise error(f"{path}: array '{member.removesuffix('.npy')}': {problem}")


def _reason(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
