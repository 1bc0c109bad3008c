"""Where the walkthrough notebook finds its data: the README's data folder beside the repository,
else a small synthetic dataset in the same format (said loudly, since nothing computed on it is a
result). Kept out of the notebook, whose setup cell it makes one line instead of forty."""

from __future__ import annotations

import os
import tempfile

from backprop.datasets import DATASETS, RAW_FILES, raw_dir, write_synthetic_dataset


def repository_root() -> str:
    """This project's folder (pyproject.toml and numpy_net/): from the working directory upwards
    (Jupyter and nbmake run the notebook in examples/), else from where numpy_net is imported."""
    import numpy_net

    for start in (os.getcwd(), os.path.dirname(numpy_net.__file__)):
        folder = os.path.abspath(start)
        while True:
            if all(os.path.exists(os.path.join(folder, mark)) for mark in ("pyproject.toml", "numpy_net")):
                return folder
            if os.path.dirname(folder) == folder:
                break
            folder = os.path.dirname(folder)
    return os.getcwd()


def has_raw_files(folder: str, dataset: str) -> bool:
    """Whether ``folder`` holds the dataset's four IDX files (<Dataset>/raw/)."""
    return all(os.path.isfile(os.path.join(raw_dir(folder, dataset), name)) for name in RAW_FILES.values())


def find_data() -> tuple[str, str, bool, str]:
    """(dataset, data folder, synthetic?, work folder): BACKPROP_DATASET (fashion-mnist, mnist, or
    synthetic) and BACKPROP_DATA_DIR when set; else Fashion-MNIST in ../shared/datasets beside the
    repository; else 2,000 + 500 synthetic images written into a new temporary work folder (where
    the notebook's runs go in any case). Prints which, and on synthetic data that nothing is a result."""
    dataset = os.environ.get("BACKPROP_DATASET") or "fashion-mnist"
    if dataset not in (*DATASETS, "synthetic"):
        raise SystemExit(f"BACKPROP_DATASET={dataset!r}: expected one of {', '.join((*DATASETS, 'synthetic'))}")
    synthetic = dataset == "synthetic"
    dataset = "fashion-mnist" if synthetic else dataset
    data_dir = os.environ.get("BACKPROP_DATA_DIR")  # an explicit folder is used as it is
    if not data_dir and not synthetic:
        data_dir = os.path.normpath(os.path.join(repository_root(), os.pardir, "shared", "datasets"))
        synthetic = not has_raw_files(data_dir, dataset)
    work = tempfile.mkdtemp(prefix="walkthrough-")
    if synthetic:
        why = "BACKPROP_DATASET=synthetic" if os.environ.get("BACKPROP_DATASET") == "synthetic" else (
            f"no {dataset} in the README's data folder {os.path.relpath(str(data_dir), repository_root())}")
        data_dir = os.path.join(work, "data")
        write_synthetic_dataset(data_dir, dataset, n_train=2000, n_test=500)
        print(f"SYNTHETIC DATA ({why}): 2,000 made-up training images, class k a bright band at row 2 + 2k.\n"
              "Every accuracy, curve and picture below only shows that the code runs: none of them is a result.\n"
              f"Real data: {os.path.relpath(raw_dir('../shared/datasets', dataset))}/ (beside the repository), or set "
              "BACKPROP_DATA_DIR.")
    else:
        print(f"real data: {dataset} from {os.path.relpath(str(data_dir), repository_root())} (relative to the "
              "repository)")
    return dataset, str(data_dir), synthetic, work
