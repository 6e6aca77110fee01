"""Stage train@MODEL (and train-text@MODEL): train one model family on its training set.

Reads  --data (an image family: an image set, images.npy, labels.npy, classes.json; a text
       family: a text set with its vocab.json, the text training split) and params.yaml's
       `train.common` and `train.<model>` sections.
Writes --out (the final checkpoint, aigc.checkpoint format) and --live (dvclive: metrics.json,
       plots/metrics/*.tsv, plots/images/samples/epoch_NNN.png, params.yaml).
Keeps  .resume/<model>-<hash>/last.pt while it runs (git-ignored; removed on success), so a
       killed run resumes where it stopped. SIGTERM/SIGINT: checkpoint, then exit 128 + signal.

    python -m stages.train --model dcgan --data data/train --out models/dcgan/model.pt \\
        --live logs/dcgan [--params params.yaml]
    python -m stages.train --model gpt --data data/text/split/train \\
        --out models/text/gpt/model.pt --live logs/text/gpt

Data parallel on N GPUs (or N CPU processes), with the same arguments:

    torchrun --nproc_per_node N -m stages.train --model dcgan ...
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from aigc.errors import exit_on_error
from aigc.imagesets import load_image_set
from aigc.models import MODELS
from aigc.params import ParamsError
from aigc.text_sets import load_token_set
from aigc.training import TrainingError, TrainingStopped, read_train_params, resume_key, train

RESUME_ROOT = Path(".resume")  # git-ignored; one folder per (family, params, data) combination


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model family (a key of aigc MODELS)")
    parser.add_argument("--data", required=True, help="training image set (or text set) folder")
    parser.add_argument("--out", required=True, help="final checkpoint path")
    parser.add_argument("--live", required=True, help="dvclive folder")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    with exit_on_error():  # bad params, --data missing or not a set of the family's modality
        if args.model not in MODELS:
            raise ParamsError(
                f"--model {args.model!r} is not a model family; allowed: {', '.join(MODELS)}"
            )
        if MODELS[args.model].modality == "text":
            data = load_token_set(args.data)
        else:
            data = load_image_set(args.data)  # memory-mapped: only shapes are read here
        common, loop, config, raw_params = read_train_params(args.params, args.model, data)
        if data.modality == "image":
            data = load_image_set(args.data, mmap=False)  # now into memory

    resume_dir = RESUME_ROOT / resume_key(raw_params, data)
    meta = {
        "classes": list(data.classes),
        f"train_{'images' if data.modality == 'image' else 'texts'}": len(data),
    }
    with exit_on_error(TrainingError):  # device = cuda without a GPU, a NaN loss
        try:
            result = train(
                args.model,
                config,
                loop,
                common,
                data,
                out=args.out,
                live_dir=args.live,
                resume_dir=resume_dir,
                meta=meta,
            )
        except TrainingStopped as stop:  # SIGTERM/SIGINT: checkpoint saved; exit as the signal
            print(str(stop), file=sys.stderr)
            raise SystemExit(128 + stop.signal_number) from None
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line, not one per process
        rate = f"{data.unit}_per_second"
        print(
            f"{args.model}: {result['steps']} steps in {result['train_seconds']:.0f} s "
            f"({result[rate]:.0f} {data.unit}/s) -> {args.out}"
        )


if __name__ == "__main__":
    main()
