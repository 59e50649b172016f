"""Labelled texts stored as one .txt file per example in class sub-folders (the aclImdb layout).

    directory/
      neg/0_3.txt, neg/1_1.txt, ...     -> label "neg"
      pos/0_9.txt, ...                  -> label "pos"

This is the layout of `keras.utils.text_dataset_from_directory`. We read the files ourselves
because that utility neither decodes (no --encoding) nor says which file an element came from,
so an undecodable or empty review could not be named in an error.
"""

import logging
import os
import socket
import threading

from keras_llm.data.labelled_texts import BadRow, DataError, LabelledTexts, decode_bytes

_LOG = logging.getLogger(__name__)

ACLIMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
# aclImdb/train/unsup holds 50,000 unlabelled reviews: not a class.
ACLIMDB_CLASSES = ("neg", "pos")


def class_folders(directory):
    """The sorted, non-hidden sub-folder names of `directory` (its class names)."""
    if not os.path.isdir(directory):
        raise DataError(f"{directory}: no such folder; expected class sub-folders of .txt files",
                        path=directory)
    return sorted(name for name in os.listdir(directory)
                  if not name.startswith(".") and os.path.isdir(os.path.join(directory, name)))


def read_text_directory(directory, *, class_names=None, encoding="utf-8", errors="strict",
                        skip_bad_rows=False):
    """Reads a folder of class sub-folders of .txt files, one example per file.

    The label of `directory/<class>/**/*.txt` is "<class>"; other files, files directly in
    `directory` and hidden folders are ignored, as by `keras.utils.text_dataset_from_directory`.

    Args:
        directory: str or path-like.
        class_names: the class folders to read, or None for every sub-folder.
        encoding, errors, skip_bad_rows: as in `read_labelled_file`; an empty or undecodable
            file is a bad row at line 1 (or the undecodable byte's line) of that file.

    Returns:
        `LabelledTexts` in sorted (class, file) order; `path` is `directory`, every line is 1.

    Raises:
        DataError: a missing folder or class folder, no .txt files, or a bad file.
    """
    directory = os.fspath(directory)
    found = class_folders(directory)
    classes = list(class_names) if class_names is not None else found
    missing = [name for name in classes if name not in found]
    if missing or not classes:
        raise DataError(f"{directory}: expected class sub-folders {classes or '(any)'}, found "
                        f"{found}", path=directory)
    texts, labels, skipped = [], [], []
    for name in classes:
        for root, folders, files in os.walk(os.path.join(directory, name)):
            folders[:] = sorted(folder for folder in folders if not folder.startswith("."))
            for file_name in sorted(f for f in files if f.endswith(".txt")):
                path = os.path.join(root, file_name)
                with open(path, "rb") as f:
                    text, bad_lines = decode_bytes(f.read(), path=path, encoding=encoding,
                                                   errors=errors, skip_bad_rows=skip_bad_rows)
                bad = [BadRow(path, line, reason) for line, reason in bad_lines.items()][:1]
                if not bad and not text.strip():
                    bad = [BadRow(path, 1, "empty text: expected a non-empty .txt file")]
                if bad and not skip_bad_rows:
                    raise DataError.from_bad_row(bad[0])
                skipped.extend(bad)
                if not bad:
                    texts.append(text)
                    labels.append(name)
    if not texts:
        raise DataError(f"{directory}: no usable .txt files in {classes} ({len(skipped)} bad "
                        f"ones skipped); expected at least one", path=directory)
    data = LabelledTexts(texts=texts, labels=labels, path=directory, skipped=skipped,
                         lines=[1] * len(texts))
    if skipped:
        _LOG.warning("%s", data.skipped_summary())
    return data


def find_or_download_aclimdb(data_dir=None, timeout_seconds=5.0):
    """The aclImdb folder (with train/ and test/): from data_dir, the Keras cache, or a download.

    Args:
        data_dir: the aclImdb folder or its parent; None to look in (or download into) the Keras
            dataset cache ($KERAS_HOME/datasets, default ~/.keras/datasets).
        timeout_seconds: how long to wait for ai.stanford.edu before giving up (float, s).

    Returns:
        str, the aclImdb folder.

    Raises:
        DataError: data_dir holds no aclImdb, or nothing is cached and the download server
            cannot be reached within `timeout_seconds`; the message says what to download and
            which flag to pass.
    """
    how = (f"download {ACLIMDB_URL}, extract it (tar xzf aclImdb_v1.tar.gz) and pass "
           f"--data_dir=/path/to/aclImdb (or --dataset=directory with the same folder)")
    if data_dir is not None:
        candidates = [os.path.join(os.fspath(data_dir), "aclImdb"), os.fspath(data_dir)]
    else:
        datasets = os.path.join(
            os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))),
            "datasets")
        # Where keras.utils.get_file(..., extract=True) puts it (Keras 3: "<name>_extracted").
        candidates = [os.path.join(datasets, "aclImdb_v1_extracted", "aclImdb"),
                      os.path.join(datasets, "aclImdb")]
    for candidate in candidates:
        if all(os.path.isdir(os.path.join(candidate, split)) for split in ("train", "test")):
            return candidate
    if data_dir is not None:
        raise DataError(f"{data_dir}: expected the aclImdb folder (with train/ and test/) or its "
                        f"parent; to get it, {how}", path=os.fspath(data_dir))
    if not _reachable("ai.stanford.edu", 443, timeout_seconds):
        raise DataError(f"dataset 'imdb' is not in the Keras cache ({candidates[0]}) and "
                        f"ai.stanford.edu cannot be reached within {timeout_seconds:g} s "
                        f"(offline?); {how}")
    import keras  # Imported here: reading files must not pay for Keras.

    extracted = keras.utils.get_file("aclImdb_v1.tar.gz", origin=ACLIMDB_URL, extract=True)
    return os.path.join(extracted, "aclImdb")


def _reachable(host, port, timeout_seconds):
    """Whether a TCP connection to host:port opens within timeout_seconds (DNS included)."""
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout_seconds).close()
            result.append(True)
        except OSError:
            result.append(False)

    # create_connection's timeout does not bound the DNS lookup, so wait on a thread instead.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_seconds)
    return bool(result and result[0])
