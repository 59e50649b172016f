"""Reading the splits of a named labelled-data layout (`DATASETS`) into `LabelledTexts`.

`read_dataset` reads:
- `sst2`: data_dir/{train,dev,test}.tsv, no header, label<TAB>sentence.
- `chnsenticorp`: data_dir/{train,dev,test}.tsv, header label<TAB>text_a.
- `directory`: data_dir/train/<class>/*.txt and optional test/ and dev/ (or validation/) alike;
  labels are the folder names; without dev/, validation is carved from train with a fixed seed.
- `imdb`: the aclImdb folder in the `directory` layout, classes neg and pos; taken from
  data_dir, else from the Keras cache, else downloaded there (failing fast when offline).
- `files`: train_file, validation_file, test_file (relative to data_dir), any reader options.

One file is read by `labelled_files.read_labelled_file` (its bad-input policy applies to every
layout), a class folder by `text_directory.read_text_directory`.
"""

import os

import numpy as np

from keras_llm.data.labelled_files import HEADER_FLAG_VALUES, column_from_flag, read_labelled_file
from keras_llm.data.labelled_texts import DataError
from keras_llm.data.text_directory import (ACLIMDB_CLASSES, class_folders,
                                           find_or_download_aclimdb, read_text_directory)

__all__ = ["DATASETS", "VALIDATION_SEED", "VALIDATION_SPLIT", "file_reader_options",
           "layout_reader_options", "read_dataset", "split_validation"]

DATASETS = ("sst2", "chnsenticorp", "directory", "imdb", "files")

# Reader options of the named file layouts: SST-2 as distributed for Kim (2014), no header;
# ChnSentiCorp as distributed by Baidu, with a "label<TAB>text_a" header.
_FILE_LAYOUTS = {
    "sst2": dict(file_format="tsv", header=False, column_names=("label", "sentence"),
                 text_column="sentence", label_column="label"),
    "chnsenticorp": dict(file_format="tsv", header=True, text_column="text_a",
                         label_column="label"),
}
_LAYOUT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
_VALIDATION_FOLDERS = ("dev", "validation")
# The Keras "text classification from scratch" example carves 20 % of aclImdb/train for
# validation with seed 1337; we keep both so numbers compare.
VALIDATION_SPLIT = 0.2
VALIDATION_SEED = 1337


def layout_reader_options(dataset):
    """The `read_labelled_file` options of a named file layout ("sst2", "chnsenticorp").

    Returns:
        A new dict (file_format, header, text_column, label_column, ...), or None when `dataset`
        is not a file layout (class folders, "imdb", "files").
    """
    layout = _FILE_LAYOUTS.get(dataset)
    return dict(layout) if layout is not None else None


def file_reader_options(data_config):
    """The `read_labelled_file` options a run's files were read with.

    A named file layout (`sst2`, `chnsenticorp`) gives its own columns and header; `files` gives
    the configured `--file_format`, `--text_column`, `--label_column` and `--header`; class-folder
    layouts (`directory`, `imdb`) give only the encoding, so the reader's defaults apply.
    """
    options = {"encoding": data_config.encoding, "errors": data_config.errors}
    layout = layout_reader_options(data_config.dataset)
    if layout is not None:
        options.update(layout)
    elif data_config.dataset == "files":
        options.update(
            file_format=data_config.file_format,
            text_column=column_from_flag(data_config.text_column),
            label_column=column_from_flag(data_config.label_column),
            header=HEADER_FLAG_VALUES[data_config.header],
        )
    return options


def split_validation(data, *, validation_split=VALIDATION_SPLIT, seed=VALIDATION_SEED):
    """Carves a random validation split from training data, the same every run for a seed.

    Both halves keep file order. The skipped rows stay with the training half.

    Args:
        data: `LabelledTexts`.
        validation_split: float in (0, 1), the fraction of examples (rounded down) to hold out.
        seed: int, seeds the permutation.

    Returns:
        (train, validation), two `LabelledTexts`.

    Raises:
        ValueError: `validation_split` outside (0, 1) or leaving either half empty.
    """
    num_validation = int(validation_split * len(data)) if 0 < validation_split < 1 else 0
    if not 0 < num_validation < len(data):
        raise ValueError(f"split_validation({data.path}): expected validation_split in (0, 1) "
                         f"leaving both halves non-empty, received {validation_split} of "
                         f"{len(data)} examples")
    order = np.random.default_rng(seed).permutation(len(data))
    held_out = np.sort(order[:num_validation])
    kept = np.sort(order[num_validation:])
    return data.select(kept.tolist()), data.select(held_out.tolist(), skipped=[])


def read_dataset(dataset, data_dir=None, *, train_file=None, validation_file=None,
                 test_file=None, class_names=None, validation_split=VALIDATION_SPLIT,
                 seed=VALIDATION_SEED, **reader_options):
    """Reads the splits of a named layout (see the module docstring for the layouts).

    Args:
        dataset: one of `DATASETS`.
        data_dir: str or path-like, the folder holding the layout; for "imdb" the aclImdb
            folder or its parent, or None to use (or download into) the Keras cache; for "files"
            the folder the file names are relative to (None: as given).
        train_file, validation_file, test_file: "files" only; `train_file` is required.
        class_names: "directory" only: the class folders to read (None: every train
            sub-folder, which must then match the test sub-folders).
        validation_split, seed: "directory" and "imdb" without a dev/ folder: the fraction of
            train held out for validation, and the seed of that split.
        **reader_options: passed to `read_labelled_file` (over the layout's own options), e.g.
            encoding, errors, skip_bad_rows; class-folder layouts take only those three.

    Returns:
        dict with keys "train" and, when the layout has them, "validation" and "test", each a
        `LabelledTexts`.

    Raises:
        ValueError: an unknown dataset name (the message lists `DATASETS`), or options that do
            not apply to the dataset.
        DataError: missing files or folders, bad rows; for "imdb" offline with nothing cached.
    """
    if dataset not in DATASETS:
        raise ValueError(f"expected dataset in {DATASETS}, received {dataset!r}")
    if dataset != "files" and (train_file or validation_file or test_file):
        raise ValueError(f"train_file/validation_file/test_file apply to dataset='files', "
                         f"received dataset={dataset!r}")
    if dataset in _FILE_LAYOUTS:
        if data_dir is None:
            raise ValueError(f"--dataset={dataset} needs --data_dir, the folder holding "
                             f"train.tsv, dev.tsv and test.tsv; received none")
        options = {**_FILE_LAYOUTS[dataset], **reader_options}
        return {split: read_labelled_file(os.path.join(data_dir, name), **options)
                for split, name in _LAYOUT_FILES.items()}
    if dataset == "files":
        if not train_file:
            raise ValueError("dataset='files' expected train_file, received none")
        files = {"train": train_file, "validation": validation_file, "test": test_file}
        return {split: read_labelled_file(os.path.join(data_dir or "", name), **reader_options)
                for split, name in files.items() if name}

    unknown = set(reader_options) - {"encoding", "errors", "skip_bad_rows"}
    if unknown:
        raise ValueError(f"dataset={dataset!r} reads whole .txt files; expected only encoding, "
                         f"errors and skip_bad_rows, received {sorted(unknown)}")
    if dataset == "imdb":
        if class_names is not None:
            raise ValueError(f"dataset='imdb' has the classes {ACLIMDB_CLASSES}; expected no "
                             f"class_names, received {class_names!r}")
        data_dir, class_names = find_or_download_aclimdb(data_dir), ACLIMDB_CLASSES
    elif data_dir is None:
        raise ValueError("--dataset=directory needs --data_dir (with train/<class>/*.txt); "
                         "received none")
    data_dir = os.fspath(data_dir)
    split_dirs = {"train": os.path.join(data_dir, "train")}
    for name in _VALIDATION_FOLDERS:
        if os.path.isdir(os.path.join(data_dir, name)):
            split_dirs["validation"] = os.path.join(data_dir, name)
            break
    if os.path.isdir(os.path.join(data_dir, "test")):
        split_dirs["test"] = os.path.join(data_dir, "test")
    if class_names is None:
        # Every split must have the same class folders: a folder only in train (aclImdb's
        # unsup/) would be a class the test never scores, one only in test an unseen label.
        class_names = class_folders(split_dirs["train"])
        for split, directory in split_dirs.items():
            if class_folders(directory) != class_names:
                raise DataError(f"{directory}: has class folders {class_folders(directory)}, "
                                f"train/ has {class_names}; expected the same classes in every "
                                f"split, or pass class_names to choose them", path=directory)
    splits = {split: read_text_directory(directory, class_names=class_names, **reader_options)
              for split, directory in split_dirs.items()}
    if "validation" not in splits:
        splits["train"], splits["validation"] = split_validation(
            splits["train"], validation_split=validation_split, seed=seed)
    return {split: splits[split] for split in ("train", "validation", "test") if split in splits}
