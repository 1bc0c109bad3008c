"""`backprop import`: a torch.nn.Sequential state dict (.pt) as a run directory of this program,
which `evaluate`, `export` and `train --resume` (fine-tuning) then take like any run."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..checkpoint import CHECKPOINT_NAME, checkpoint_meta, save_checkpoint
from ..config import ConfigError, new_config
from ..datasets import DataError, load_dataset
from ..export import TorchImportError, read_torch_state
from ..fileio import atomic_write_text
from ..progress import Progress
from .options import (
    DEFAULT_DATA_DIR,
    add_data_options,
    add_preset_option,
    check_data_dir,
    claim_out,
    fail,
    layer_list,
    positive_int,
)
from .options import LAYERS_HELP as _LAYERS_HELP


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `import` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("import", help="turn a torch.nn.Sequential state dict (.pt) into a run directory",
                       description="Read a torch.nn.Sequential state dict (torch.save(model.state_dict(), PATH); "
                                   "read with weights_only=True) for the network --layers describes (default: "
                                   "the layers of --preset, itself lenet by default), and write it as a new run "
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
                   help=_LAYERS_HELP.split(". Not with")[0] + " (default: the preset's layers)")
    add_preset_option(p, default="lenet")
    add_data_options(p, dataset_help="the dataset the run belongs to (default: mnist)",
                     data_dir_help=f"where that dataset's training split is (its size is part of the run; default: "
                                   f"{DEFAULT_DATA_DIR})")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="the run trains on the first N training samples only, as train --limit (default: all)")
    p.add_argument("--out", required=True, metavar="DIR", help="the new (or empty) run directory to write")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Import; returns the exit status."""
    preset = args.preset or "lenet"
    try:
        config = new_config(preset, layers=args.layers, dataset=args.dataset, limit=args.limit)
    except ConfigError as error:
        parser.error(str(error))
    check_data_dir(parser, args.data_dir)
    if not os.path.isfile(args.model):
        return fail(f"{args.model}: no such file")
    try:
        params, tracked = read_torch_state(args.model, config.network)
    except TorchImportError as error:
        return fail(str(error))
    config.dtype = next(iter(params.values())).dtype.name if params else config.dtype
    data_dir = args.data_dir or DEFAULT_DATA_DIR
    with claim_out(parser, args.out, "") as run_dir:
        try:
            dataset = load_dataset(config.dataset, data_dir, dtype=config.dtype, splits=("train",))
        except DataError as error:
            return fail(str(error))
        samples = len(dataset.train_y[: config.limit])  # what `train --resume` will check against
        meta = checkpoint_meta(config, "torch.nn", Progress(), samples, data_dir,
                               num_batches_tracked=tracked)
        path = os.path.join(run_dir.path, CHECKPOINT_NAME)
        save_checkpoint(path, params, {"step": 0, "lr": config.lr, "state": {}}, meta)
        atomic_write_text(os.path.join(run_dir.path, "config.json"), json.dumps(
            {**config.to_json(), "engine": "torch.nn", "data_dir": os.path.abspath(data_dir)}, indent=2) + "\n")
    print(f"wrote {path} ({config.network_summary()}, {config.dtype}) from {args.model}")
    return 0
