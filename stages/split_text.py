"""Split text: divide the clean text set into train, val and test, and build the vocabulary.

Reads `--clean` (data/text/clean) and writes `--out`/train, `--out`/val and `--out`/test
(data/text/split/...), each a text set (aigc/text_sets.py), stratified by class and seeded as
the image split is (aigc/splits.py `stratified_take`), plus `--out`/train/vocab.json: the
character vocabulary of the training texts.

    python -m stages.split_text --clean data/text/clean --out data/text/split
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aigc.errors import exit_on_error
from aigc.params import load_section
from aigc.text_sets import (
    TextSet,
    TextSplitParams,
    Vocabulary,
    load_text_set,
    save_text_set,
    split_rows,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", required=True, help="clean text set folder")
    parser.add_argument("--out", required=True, help="folder for train/, val/, test/")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        params = load_section(args.params, "text_split", TextSplitParams)

    with exit_on_error():  # --clean missing, --out not writable
        clean = load_text_set(args.clean)
        rows = split_rows(clean.labels, params)
        for name, chosen in rows.items():
            table = clean.table.iloc[chosen].reset_index(drop=True)
            save_text_set(Path(args.out) / name, TextSet(table, clean.classes))
        vocabulary = Vocabulary.from_texts(clean.table.iloc[rows["train"]]["text"].tolist())
        vocabulary.save(Path(args.out) / "train" / "vocab.json")
    sizes = ", ".join(f"{name} {len(chosen)}" for name, chosen in rows.items())
    print(f"split-text: {len(clean)} texts into {sizes}; {len(vocabulary.tokens)} tokens")


if __name__ == "__main__":
    main()
