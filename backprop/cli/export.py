"""`backprop export`: a checkpoint as a torch.nn.Sequential state dict, and the code that loads it."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..checkpoint import CheckpointError, checkpoint_path, load_checkpoint
from ..export import export_torch
from ..sidecar import is_export_metadata, metadata_path
from .options import check_output_file, fail


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `export` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("export", help="write a checkpoint as a torch.nn.Sequential state dict",
                       description="Write a checkpoint's network as a torch.nn.Sequential state dict (a .pt file "
                                   "that torch.load(..., weights_only=True) reads) and print the Python lines "
                                   "that load it. A recurrent layer becomes a subclass of torch's RNN, LSTM or GRU "
                                   "that returns output alone (torch's returns a tuple), and laststep a small "
                                   "LastStep module; the printed lines define both, and `transform`, the "
                                   "torchvision transform that makes an image the input the model was trained on "
                                   "(also in MODEL_PT.json beside it, with the classes and the run's accuracy).")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.npz, or the run directory holding it")
    p.add_argument("--to", required=True, metavar="MODEL_PT",
                   help="the .pt file to write, in an existing directory (required; an earlier export there, with "
                        "its MODEL_PT.json, is replaced; any other existing file is refused)")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Export; returns the exit status."""
    check_output_file(parser, "--to", args.to)
    sidecar = metadata_path(args.to)
    if os.path.isdir(sidecar):
        parser.error(f"--to {args.to}: the metadata file export writes beside it, {sidecar}, is a directory; "
                     "name another --to")
    if os.path.exists(sidecar) and not is_export_metadata(sidecar):  # a file of the user's, or a run's config
        parser.error(f"--to {args.to}: export writes the model's metadata to {sidecar}, which exists and is not "
                     "an earlier export's; name another --to")
    try:
        path = checkpoint_path(args.checkpoint)
        if os.path.exists(args.to) and os.path.samefile(args.to, path):
            parser.error(f"--to {args.to}: that is the checkpoint itself; name another file")
        # Only an earlier export (the file and its metadata) is replaced: never a run's metrics.csv or
        # config.json, the checkpoint, or any other file of the user's (nothing was overwritten).
        if os.path.exists(args.to) and not is_export_metadata(sidecar):
            parser.error(f"--to {args.to}: the file exists and is no earlier export (no {os.path.basename(sidecar)} "
                         "beside it); name a new file (nothing was overwritten)")
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        return fail(str(error))
    code = export_torch(checkpoint, args.to, load_path=os.path.abspath(args.to), source=path)
    print(f"wrote {args.to} and {metadata_path(args.to)} (the input it expects, the classes, the run's accuracy); "
          f"`transform` below turns an image into that input; these Python lines load it:\n{code}")
    return 0
