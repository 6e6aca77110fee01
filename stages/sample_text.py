"""Stage sample-text@MODEL: write texts from a trained text family.

Reads  --checkpoint (aigc.checkpoint), --test (a text set: the held-out texts that
       reconstructions and the homotopy start from) and params.yaml's `text_sample` section
       (flags such as --num-samples override it; without a params file the defaults of
       aigc.text_sampling.TextSampleParams apply).
Writes --out: a text set (texts.csv: id, origin "sample", label = the requested class when the
       model is conditional, else -1, class, text; classes.json) and info.json {family,
       num_samples, conditional, temperature, top_k};
       --reports: samples.json, what the report shows: the first samples (per class when
       conditional), and for families that encode, reconstructions and the homotopy between
       two held-out texts (decoded at `decode_temperature` with the seed's noise);
       --timings (optional): {num_samples, sampling_seconds, characters_per_second}, kept out
       of the cached --out so a bit-identical re-run keeps its hash.

    python -m stages.sample_text --checkpoint models/text/gpt/model.pt \\
        --test data/text/split/test --out data/text/samples/gpt \\
        --reports reports/text/samples/gpt --timings logs/text/gpt/sampling.json

Outside DVC, an --out ending in .txt writes the texts alone, `%`-separated (fortune's format),
which `python -m stages.evaluate_text --samples FILE` reads back.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd
import torch

from aigc.checkpoint import CheckpointError, load_model
from aigc.errors import exit_on_error
from aigc.files import write_json, write_text
from aigc.params import ParamsError, from_dict, read_params
from aigc.text_sampling import TextSampleParams, generate, homotopy, reconstructions
from aigc.text_sets import COLUMNS, TextSet, load_text_set, save_text_set

SHOWN_PER_CLASS = 3  # samples per class in the report (conditional models)
SHOWN = 12  # samples in the report (unconditional models)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    with exit_on_error():
        params = sample_params(args)
    with exit_on_error(CheckpointError):
        model, checkpoint = load_model(
            args.checkpoint, "cuda" if torch.cuda.is_available() else "cpu"
        )
        if model.modality != "text":
            raise ParamsError(f"{args.checkpoint}: a {model.modality} model; use stages.sample")
        test = load_text_set(args.test) if args.test else None
    with exit_on_error():
        model.configure_text_sampling(params.temperature, params.top_k)
    family = checkpoint["family"]
    classes = list(checkpoint.get("meta", {}).get("classes", []))

    texts, labels, seconds = generate(model, params.num_samples, params.batch_size, params.seed)
    characters = sum(len(text) for text in texts)
    speed = characters / seconds if seconds > 0 else 0.0
    with exit_on_error():  # an output not writable
        if args.out.endswith(".txt"):
            write_text(args.out, "\n%\n".join(texts) + "\n")
        else:
            save_text_set(args.out, sample_set(texts, labels, classes))
            info = {"family": family, "num_samples": len(texts), "conditional": model.conditional,
                    "temperature": params.temperature, "top_k": params.top_k}  # fmt: skip
            write_json(Path(args.out) / "info.json", info)
        if args.reports:
            write_json(
                Path(args.reports) / "samples.json",
                shown(model, texts, labels, classes, test, params),
            )
        if args.timings:
            write_json(args.timings, {"num_samples": len(texts), "sampling_seconds": seconds,
                                      "characters_per_second": speed})  # fmt: skip
    print(f"{family}: {len(texts)} texts ({characters} characters) in {seconds:.1f} s "
          f"({speed:.0f} characters/s) -> {args.out}")  # fmt: skip


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="trained text model checkpoint")
    parser.add_argument("--out", required=True, help="text set folder, or a .txt file")
    parser.add_argument("--reports", help="folder for samples.json (what the report shows)")
    parser.add_argument("--test", help="held-out text set, for reconstructions and the homotopy")
    parser.add_argument("--timings", help="JSON to write the sampling time and speed to")
    parser.add_argument("--params", default="params.yaml")
    for field in dataclasses.fields(TextSampleParams):  # --num-samples etc. override params
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, dest=field.name, type=type(field.default),
                            help=field.metadata["doc"])  # fmt: skip
    return parser.parse_args(argv)


def sample_params(args: argparse.Namespace) -> TextSampleParams:
    """params.yaml `text_sample` (the defaults without a params file), flags on top."""
    section = {}
    if Path(args.params).exists() or args.params != "params.yaml":
        section = read_params(args.params).get("text_sample", {})
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TextSampleParams)}
    section = {**section, **{k: v for k, v in overrides.items() if v is not None}}
    return from_dict(TextSampleParams, section, "text_sample")


def sample_set(texts: list[str], labels, classes: list[str]) -> TextSet:
    names = [classes[label] if 0 <= label < len(classes) else "" for label in labels]
    ids = [f"sample-{i:06d}" for i in range(len(texts))]
    table = pd.DataFrame({"id": ids, "origin": "sample", "label": labels, "class": names,
                          "text": texts})  # fmt: skip
    return TextSet(table[COLUMNS], classes)


def shown(model, texts, labels, classes, test: TextSet | None, params: TextSampleParams) -> dict:
    """What the report shows of this model's texts (see the module docstring)."""
    if model.conditional:
        by_class = {
            name: [text for text, label in zip(texts, labels, strict=True) if label == index][
                :SHOWN_PER_CLASS
            ]
            for index, name in enumerate(classes)
        }
    else:
        by_class = {"": texts[:SHOWN]}
    found = {"samples": by_class}
    if test is not None and model.encodes:
        decoding = {"temperature": params.decode_temperature, "seed": params.seed}
        found["reconstructions"] = reconstructions(model, test, **decoding)
        found["homotopy"] = homotopy(model, test, **decoding)
    return found


if __name__ == "__main__":
    main()
