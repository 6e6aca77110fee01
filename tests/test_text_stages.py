"""The text data stages end to end on a hostile folder corpus: collect-text, clean-text and
split-text account for every text, keep what is text (normalised) and reject the rest with its
reason, and hand on text sets that round-trip exactly."""

from __future__ import annotations

import json

import numpy as np
import yaml
from conftest import tiny_params

from aigc.text_sets import Vocabulary, load_text_set
from stages.clean_text import main as clean_main
from stages.collect_text import main as collect_main
from stages.split_text import main as split_main

SCRIPT = "<script>alert('pwned')</script> is what a fortune may hold."


def hostile_corpus(root):
    """Two classes; the `%`-separated files hold ordinary texts, the rest one hostile item."""
    generator = np.random.default_rng(0)
    words = [a + b for a in ("ka", "lo", "mi", "nu", "pe", "ra", "si", "tu") for b in "rstvx"]
    for name in ("jokes", "quotes"):
        (root / name).mkdir(parents=True)
        texts = [" ".join(generator.choice(words, size=8)).capitalize() + "." for _ in range(20)]
        (root / name / "plain.txt").write_text("\n%\n".join(texts) + "\n")
    hostile = {
        "invalid.txt": b"caf\xe9 is not UTF-8 at all here",
        "wide.txt": b"\xff\xfe" + "A UTF-16 text with a byte-order mark.".encode("utf-16-le"),
        "nul.txt": b"text with a NUL \x00 inside it, binary",
        "huge.txt": b"x" * 50_000_000,
        "ansi.txt": b"\x1b[1;31mRed alert\x1b[0m from a terminal, escape codes gone.",
        "bidi.txt": "An evil \u202egnirts\u202c reversed by a bidi override.".encode(),
        "zero.txt": "Zero\u200bwidth\u200d characters hide in this one.".encode(),
        "script.txt": SCRIPT.encode(),
        "empty.txt": b"",
        "binary.txt": np.random.default_rng(1).bytes(2048) + b"\x00",
    }
    for name, data in hostile.items():
        (root / "jokes" / name).write_bytes(data)


def test_every_text_is_kept_normalised_or_rejected_with_its_reason(tmp_path):
    hostile_corpus(tmp_path / "corpus")
    params = tmp_path / "params.yaml"
    values = tiny_params({"text": {"source": f"folder:{tmp_path / 'corpus'}", "classes": []}})
    params.write_text(yaml.safe_dump(values))
    raw, clean, split = tmp_path / "raw", tmp_path / "clean", tmp_path / "split"
    collect_main(["--out", str(raw), "--params", str(params)])
    clean_main(["--raw", str(raw), "--out", str(clean), "--metrics", str(tmp_path / "m.json"),
                "--params", str(params)])  # fmt: skip
    split_main(["--clean", str(clean), "--out", str(split), "--params", str(params)])

    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["collected"] == metrics["kept"] + metrics["rejected"] == 40 + 10
    rejected = {row["origin"]: row["reason"] for row in load_rejected(clean)}
    assert rejected == {
        "jokes/invalid.txt#0": "invalid_utf8", "jokes/nul.txt#0": "binary",
        "jokes/huge.txt#0": "too_large", "jokes/empty.txt#0": "empty",
        "jokes/binary.txt#0": "binary",
    }  # fmt: skip
    kept = {row.origin: row.text for row in load_text_set(clean).table.itertuples()}
    assert kept["jokes/wide.txt#0"] == "A UTF-16 text with a byte-order mark."
    assert kept["jokes/ansi.txt#0"] == "Red alert from a terminal, escape codes gone."
    assert kept["jokes/bidi.txt#0"] == "An evil gnirts reversed by a bidi override."
    assert kept["jokes/zero.txt#0"] == "Zerowidth characters hide in this one."
    assert kept["jokes/script.txt#0"] == SCRIPT  # text stays text; renderers escape it
    assert metrics["characters_removed"] == {"ansi_escape": 2, "bidi_control": 2, "zero_width": 2}
    assert metrics["encodings"] == {"utf-16-le": 1, "utf-8": 44}

    parts = {name: load_text_set(split / name) for name in ("train", "val", "test")}
    assert sum(len(part) for part in parts.values()) == metrics["kept"]
    ids = [set(part.table["id"]) for part in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    vocabulary = Vocabulary.load(split / "train" / "vocab.json")
    text = parts["train"].texts[0]
    assert vocabulary.decode(vocabulary.encode(text)) == text
    assert vocabulary.decode(vocabulary.encode("\u4e2d")) == "\ufffd"  # unknown: one token


def load_rejected(folder):
    import pandas as pd

    return pd.read_csv(folder / "rejected.csv", keep_default_na=False).to_dict("records")
