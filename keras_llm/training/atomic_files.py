"""The one atomic writer for everything a run writes: JSON, text, bytes and whole folders.

A reader (another worker, a resumed run, `experiments.evaluate`) never sees a half-written file:
each is written to a temporary path in the same folder, then renamed over its name
(`os.replace` is atomic on POSIX). Temporary files and folders come with mode 0600 / 0700
(`tempfile`), so each gets the mode `open` / `mkdir` would have given it, `mode & ~umask`,
before the rename.

Used for config.json, training_data.json, results.json, best/best.json, labels.json and the
tokenizer folder (and its files), and an export's assets.extra files (manifest.json, the
TFRecord of warm-up requests); chief-awareness is the caller's (`RunDirectory`).
"""

import json
import os
import shutil
import tempfile


def _read_umask():
    umask = os.umask(0)  # The only way to read it; done once, at import.
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _chmod_as_created(path, mode):
    """Gives a temporary file or folder the mode `open` / `mkdir` would have: mode & ~umask."""
    os.chmod(path, mode & ~_UMASK)


def write_bytes(path, data):
    """Writes `data` to `path` via a temporary file in the same folder, then a rename.

    Args:
        path: str or path-like; its folder is created if missing.
        data: bytes, e.g. a TFRecord file's contents.

    Raises:
        OSError: the folder cannot be created or written; no temporary file is left.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        _chmod_as_created(temporary, 0o666)  # mkstemp makes it 0600.
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_text(path, text):
    """Writes `text` (UTF-8, no newline translation) to `path` atomically, as `write_bytes` does.

    Args:
        path: str or path-like; its folder is created if missing.
        text: str.

    Raises:
        OSError: the folder cannot be created or written; no temporary file is left.
    """
    write_bytes(path, text.encode("utf-8"))


def write_json(path, value):
    """Writes `value` as indented JSON (sorted keys, UTF-8, final newline) to `path` atomically.

    Raises:
        TypeError: `value` is not JSON-serializable; nothing is written.
    """
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_text(path, text)


def save_directory(save_fn, directory):
    """Calls `save_fn(temporary_directory)`, then renames the complete folder to `directory`.

    Other workers load `MODEL_DIR/tokenizer` when it exists; renaming a complete folder into
    place means they never see it half-written.

    Args:
        save_fn: `str -> None`, writes the folder's files into the directory it is given.
        directory: str, the final folder; it must not exist yet (or be empty).
    """
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
    try:
        save_fn(temporary)
        _chmod_as_created(temporary, 0o777)  # mkdtemp makes it 0700.
        os.replace(temporary, directory)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
