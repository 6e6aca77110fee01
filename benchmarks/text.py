"""Text families: training and sampling speed at the default params, in characters per second.

Training runs `train_step` on batches of the real text split when it exists
(data/text/split/train), else on the templated texts the tests use; sampling draws
`--samples` texts at the default temperature. Characters per second count each text's
characters and its end, as the loop's rate does. The models are fresh (untrained), so a sample
runs until `<eos>` comes by chance: sampling figures are for texts of the length shown.

    python -m benchmarks.text [--steps 20] [--samples 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from aigc.models import MODELS, build_model
from aigc.text_sets import TokenSet, Vocabulary, load_token_set
from aigc.training import read_train_params

SPLIT = Path("data/text/split/train")


def text_data() -> tuple[TokenSet, str]:
    if (SPLIT / "vocab.json").is_file():
        return load_token_set(SPLIT), str(SPLIT)
    words = ["the", "cat", "dreams", "of", "seven", "apples", "and", "a", "quiet", "lake"]
    generator = np.random.default_rng(0)
    texts = [" ".join(generator.choice(words, generator.integers(8, 40))) for _ in range(512)]
    vocabulary = Vocabulary.from_texts(texts)
    return TokenSet(
        vocabulary.rows(texts), np.zeros(512, np.int64), ["all"], vocabulary
    ), "templated"


def measure(family: str, data: TokenSet, steps: int, samples: int) -> dict:
    common, loop, config, _ = read_train_params("params.yaml", family, data)
    torch.manual_seed(0)
    model = build_model(family, config).train()
    model.plan(steps)
    rows, labels = torch.from_numpy(data.tokens), torch.from_numpy(data.labels)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, len(data), (loop.batch_size,), generator=generator)
               for _ in range(steps + 2)]  # fmt: skip
    for batch in batches[:2]:  # warm-up
        model.train_step(rows[batch], labels[batch])
    started, characters = time.perf_counter(), 0
    for batch in batches[2:]:
        model.train_step(rows[batch], labels[batch])
        characters += data.units(rows[batch])
    train_rate = characters / (time.perf_counter() - started)
    model.eval()
    started = time.perf_counter()
    drawn = model.sample(samples, rng=torch.Generator().manual_seed(1))
    sample_rate = data.units(drawn) / (time.perf_counter() - started)
    return {"family": family, "params": sum(p.numel() for p in model.parameters()),
            "train": train_rate, "sample": sample_rate,
            "length": data.units(drawn) / samples}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per family")
    parser.add_argument("--samples", type=int, default=100, help="texts sampled per family")
    args, _ = parser.parse_known_args()
    data, source = text_data()
    print(f"text data: {source}, {len(data)} texts; {torch.get_num_threads()} threads")
    header = ("family", "params", "train chars/s", "sample chars/s", "chars/text")
    print("{:<8} {:>9} {:>14} {:>15} {:>10}".format(*header))
    families = [name for name in MODELS if MODELS[name].modality == "text"]
    for family in families:
        row = measure(family, data, args.steps, args.samples)
        print(f"{row['family']:<8} {row['params']:>9,} {row['train']:>14.0f} "
              f"{row['sample']:>15.0f} {row['length']:>10.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
