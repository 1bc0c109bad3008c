"""`backprop import`: a torch.nn.Sequential state dict (.pt) as a run directory of this program,
which `evaluate`, `export` and `train --resume` (fine-tuning) then take like any run."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, NamedTuple

from engine_core.specs import LayerSpec

from ..architecture import format_layers, parse_layers
from ..checkpoint import CHECKPOINT_NAME, checkpoint_meta, save_checkpoint
from ..config import ConfigError, new_config
from ..datasets import DATASETS, EPOCH_SAMPLES, DataError, load_dataset
from ..export import TorchImportError, read_torch_state
from ..fileio import atomic_write_text
from ..progress import Progress
from ..sidecar import metadata_path, recorded
from .options import LAYERS_HELP as _LAYERS_HELP
from .options import (
    add_data_options,
    add_preset_option,
    check_data_dir,
    claim_out,
    fail,
    layer_list,
    limit_error,
    positive_int,
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `import` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("import", help="turn a torch.nn.Sequential state dict (.pt) into a run directory",
                       description="Read a torch.nn.Sequential state dict (torch.save(model.state_dict(), PATH); "
                                   "read with weights_only=True) for the network --layers describes (default: "
                                   "the layers MODEL_PT.json records when `backprop export` wrote the file, else "
                                   "those of --preset, itself lenet by default), and write it as a new run "
                                   "directory (checkpoint.npz, config.json) at epoch 0: `backprop evaluate DIR` "
                                   "evaluates it, `backprop train --resume DIR` trains it on with the preset's "
                                   "optimizer. Keys map one to one: "
                                   "'{index}.weight', '{index}.running_mean', '{index}.num_batches_tracked', "
                                   "a recurrent layer's '{index}.weight_ih_l0', '{index}.bias_hh_l0', ... (torch's "
                                   "names and layout: the state dict of the nn.Sequential `backprop export` prints "
                                   "for --preset lstm) "
                                   "(a file without num_batches_tracked, as torch before 0.4.1 wrote them, starts "
                                   "the count at 0, as torch's load_state_dict does). "
                                   "A float64 file gives a float64 run, any other float32 (float16, bfloat16 and "
                                   "float8 values widen to float32 exactly).")
    p.add_argument("model", metavar="MODEL_PT", help="the .pt file holding the state dict")
    p.add_argument("--layers", type=layer_list, metavar="TEXT",
                   help=_LAYERS_HELP.split(". Not with")[0] + " (default: the layers MODEL_PT.json beside the file "
                                                              "records, as `backprop export` writes it; else the "
                                                              "preset's layers)")
    add_preset_option(p, default="lenet")
    add_data_options(p, dataset_help="the dataset the run belongs to (default: the one MODEL_PT.json records, "
                                     "unless --preset is given; else mnist)",
                     data_dir_help="where that dataset is, recorded in the run for evaluating and resuming it "
                                   "(default: the folder MODEL_PT.json records, if it still exists; optional: "
                                   "the weights are converted without it, and those commands take --data-dir; "
                                   "given, its training split's size is checked against --limit)")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="the run trains on the first N training samples only, as train --limit (default: all)")
    p.add_argument("--out", required=True, metavar="DIR", help="the new (or empty) run directory to write")
    return p


class _Exported(NamedTuple):
    """What export's metadata beside the model fills in for the options not given."""

    layers: LayerSpec | None  # --layers (not with --preset, which stands for layers and dataset)
    layers_from: str | None  # the metadata file the layers were read from
    dataset: str | None  # --dataset (likewise)
    data_dir: str | None  # --data-dir: the folder the run read its dataset from, if it still exists


def _exported(args: argparse.Namespace) -> _Exported:
    """The metadata's defaults for ``args``; ValueError naming the metadata file and the option to
    give instead when a field it records cannot be used."""
    sidecar, recorded_dataset = metadata_path(args.model), recorded(args.model, "dataset")
    layers, dataset, text = None, None, None
    if args.preset is None:
        text = None if args.layers else recorded(args.model, "layers")
        if text is not None:
            try:
                layers = parse_layers(text)
            except ValueError as error:
                raise ValueError(f"{sidecar} records layers that do not parse ({error}); give --layers") from None
        if args.dataset is None:
            dataset = recorded_dataset
            if dataset is not None and dataset not in DATASETS:
                raise ValueError(f"{sidecar} records dataset {dataset!r}, expected one of {', '.join(DATASETS)}; "
                                 "give --dataset")
    folder = recorded(args.model, "data_dir")
    same_data = (args.dataset or dataset) is not None and (args.dataset or dataset) == recorded_dataset
    data_dir = folder if args.data_dir is None and same_data and folder and os.path.isdir(folder) else None
    return _Exported(layers, sidecar if text is not None else None, dataset, data_dir)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Import; returns the exit status."""
    preset = args.preset or "lenet"
    try:
        exported = _exported(args)
    except ValueError as error:
        return fail(str(error))
    try:
        config = new_config(preset, layers=args.layers or exported.layers, dataset=args.dataset or exported.dataset,
                            limit=args.limit)
    except ConfigError as error:
        parser.error(str(error))
    check_data_dir(parser, args.data_dir)
    data_dir = args.data_dir or exported.data_dir  # recorded, unread: evaluate and resume find the data
    if not os.path.isfile(args.model):
        return fail(f"{args.model}: no such file")
    try:
        params, tracked = read_torch_state(args.model, config.network)
    except TorchImportError as error:
        if not error.mismatch:
            source = ""
        elif exported.layers_from:
            source = f"; the layers were those {exported.layers_from} records: give --layers for others"
        elif not args.layers:
            default = "" if args.preset else ", import's default"
            source = (f"; the layers were the {preset} preset's ({format_layers(config.network)}{default}): "
                      "give your network's as --layers TEXT (the grammar: backprop import --help)")
        else:
            source = ""
        return fail(f"{error}{source}")
    config.dtype = next(iter(params.values())).dtype.name if params else config.dtype
    with claim_out(parser, args.out, "") as run_dir:
        samples = config.limit or EPOCH_SAMPLES  # what `train --resume` will check against
        if args.data_dir:  # given: check it holds the dataset, and --limit against its size
            try:
                dataset = load_dataset(config.dataset, args.data_dir, dtype=config.dtype, splits=("train",))
            except DataError as error:
                return fail(str(error))
            if refused := limit_error(config.limit, len(dataset.train_y)):
                return fail(refused)
            samples = len(dataset.train_y[: config.limit])
        meta = checkpoint_meta(config, "torch.nn", Progress(), samples, data_dir,
                               num_batches_tracked=tracked)
        path = os.path.join(run_dir.path, CHECKPOINT_NAME)
        save_checkpoint(path, params, {"step": 0, "lr": config.lr, "state": {}}, meta)
        recorded_dir = {"data_dir": os.path.abspath(data_dir)} if data_dir else {}
        atomic_write_text(os.path.join(run_dir.path, "config.json"), json.dumps(
            {**config.to_json(), "engine": "torch.nn", **recorded_dir}, indent=2) + "\n")
    if args.dataset or exported.dataset:
        which = config.dataset + ("" if args.dataset else f" (as {metadata_path(args.model)} records)")
    else:
        which = f"{config.dataset} (the default: give --dataset for another)"
    folder = data_dir or "none yet (evaluate and train --resume take --data-dir)"
    print(f"wrote {path} ({config.network_summary()}, {config.dtype}) from {args.model}; dataset {which}, "
          f"data folder {folder}")
    return 0
