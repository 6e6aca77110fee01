"""The text ruler on tiny separable text sets: the evaluator learns them and re-runs bit for bit,
the Fréchet distance is the image ruler's (and agrees with scipy's formula), label accuracy,
copies flagged, the evaluate-text stage end to end from every input form, bad inputs and params
stopped with one clear line before heavy work, markup and unicode kept as data."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from conftest import write_params

from aigc import metrics, text_ruler
from aigc.text_features import (
    cached_text_features,
    extract_text_features,
    load_text_evaluator,
    read_text_samples,
)
from aigc.text_ruler import TextEvaluateParams, score_texts
from aigc.text_sets import TextSet, Vocabulary, load_text_set, save_text_set
from stages.evaluate_text import main as evaluate_main
from stages.text_evaluator import main as evaluator_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OVERRIDES = {
    "text_evaluator": {"epochs": 8, "patience": 8, "batch_size": 16, "learning_rate": 0.01,
                       "character_dim": 8, "channels": 16, "widths": [3, 5],
                       "embedding_dim": 16, "max_chars": 200},
    "text_evaluate": {"batch_size": 32, "fid_bootstrap_rounds": 5, "self_bleu_limit": 20,
                      "copy_span": 30},
}  # fmt: skip
CLASSES = ["sea", "forest", "city"]
WORDS = {
    "sea": ["wave", "tide", "shell", "coral", "salt", "boat", "harbour", "gull"],
    "forest": ["pine", "moss", "fern", "owl", "bark", "leaf", "acorn", "badger"],
    "city": ["tram", "brick", "neon", "tower", "street", "cafe", "subway", "taxi"],
}
HOSTILE = [
    "<script>alert('pwned')</script> said the \"fortune\", with commas, quotes & tags",
    "Ünïcödé — 中文 🎉 \u202ereversed\u202c, \u200bzero width; a tab\there",
    "Two lines:\nthe second one, <b>bold</b> and\\backslashed",
]


def texts_of(label: int, count: int, start: int, generator) -> list[str]:
    words = WORDS[CLASSES[label]]
    return [
        f"The {a} and the {b} by the {c}, then a {d} meets {e} near {f} number {start + i}."
        for i in range(count)
        for a, b, c, d, e, f in [generator.choice(words, size=6)]
    ]


def text_set(per_class: int, start: int, seed: int, labelled: bool = True) -> TextSet:
    generator = np.random.default_rng(seed)
    texts, labels = [], []
    for label in range(len(CLASSES)):
        texts += texts_of(label, per_class, start, generator)
        labels += [label] * per_class
    count = len(texts)
    table = pd.DataFrame({"id": range(count), "origin": [f"toy#{i}" for i in range(count)],
                          "label": labels if labelled else [-1] * count,
                          "class": [CLASSES[i] if labelled else "" for i in labels],
                          "text": texts})  # fmt: skip
    return TextSet(table, CLASSES if labelled else [])


def make_splits(root, labelled: bool = True) -> dict:
    """data/text/split/{train,val,test} (40, 15, 15 texts a class) with vocab.json; paths."""
    paths = {}
    for name, per_class, start, seed in (("train", 40, 0, 1), ("val", 15, 1000, 2),
                                         ("test", 15, 2000, 3)):  # fmt: skip
        paths[name] = root / "data/text/split" / name
        save_text_set(paths[name], text_set(per_class, start, seed, labelled))
    Vocabulary.from_texts(load_text_set(paths["train"]).texts).save(paths["train"] / "vocab.json")
    return paths


def train_stage(root, paths, params, out="models/text/evaluator.pt") -> None:
    evaluator_main(["--train", str(paths["train"]), "--val", str(paths["val"]),
                    "--test", str(paths["test"]), "--out", str(root / out),
                    "--metrics", str(root / "metrics/text/evaluator.json"),
                    "--params", str(params)])  # fmt: skip


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Tiny labelled splits, params and a text evaluator trained on them by the stage."""
    root = tmp_path_factory.mktemp("text")
    paths = make_splits(root)
    params = write_params(root, OVERRIDES)
    train_stage(root, paths, params)
    evaluator, checkpoint = load_text_evaluator(root / "models/text/evaluator.pt")
    sets = {name: load_text_set(path) for name, path in paths.items()}
    ruler = TextEvaluateParams(**OVERRIDES["text_evaluate"], precision_k=3, density_k=5,
                               inception_splits=2, class_threshold=0.2, seed=0)  # fmt: skip
    return {"root": root, "paths": paths, "params": params, "evaluator": evaluator,
            "checkpoint": checkpoint, "sets": sets, "ruler": ruler}  # fmt: skip


def evaluate(toy, samples, out, *extra: str) -> dict:
    paths = toy["paths"]
    evaluate_main(["--samples", str(samples), "--evaluator",
                   str(toy["root"] / "models/text/evaluator.pt"),
                   "--reference", str(paths["test"]), "--heldout", str(paths["val"]),
                   "--train", str(paths["train"]), "--out", str(out),
                   "--params", str(toy["params"]), *extra])  # fmt: skip
    return json.loads(out.read_text())


def shuffled_characters(texts: list[str], seed: int = 0) -> list[str]:
    generator = np.random.default_rng(seed)
    return ["".join(generator.permutation(list(text))) for text in texts]


# ---------------------------------------------------------------- the evaluator


def test_evaluator_learns_the_classes_caches_its_splits_and_reruns_bit_for_bit(toy):
    summary = json.loads((toy["root"] / "metrics/text/evaluator.json").read_text())
    assert summary["kind"] == "classifier" and summary["classes"] == 3
    assert summary["chance"] == pytest.approx(1 / 3)  # 15 test texts a class
    assert summary["test_accuracy"] >= 0.9 and summary["val_accuracy"] >= 0.9
    assert "seconds" in summary and "seconds" not in toy["checkpoint"]["meta"]

    evaluator, test = toy["evaluator"], toy["sets"]["test"]
    vocabulary = Vocabulary.load(toy["paths"]["train"] / "vocab.json")
    assert list(evaluator.config.tokens) == vocabulary.tokens  # the vocabulary travels inside
    cached, hit = cached_text_features(evaluator, toy["checkpoint"], test.texts)
    fresh = extract_text_features(evaluator, test.texts, batch_size=7)  # other batches, same rows
    assert hit and cached.embeddings.shape == (45, 16) and cached.embeddings.dtype == np.float32
    np.testing.assert_allclose(fresh.embeddings, cached.embeddings, atol=1e-5)
    np.testing.assert_allclose(fresh.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert not cached_text_features(evaluator, toy["checkpoint"], test.texts[:-1])[1]

    train_stage(toy["root"], toy["paths"], toy["params"], out="models/text/again.pt")
    first = (toy["root"] / "models/text/evaluator.pt").read_bytes()
    assert (toy["root"] / "models/text/again.pt").read_bytes() == first


def test_an_unlabelled_source_trains_the_pretext_task_and_has_no_class_metrics(tmp_path, toy):
    paths = make_splits(tmp_path, labelled=False)
    train_stage(tmp_path, paths, toy["params"])
    summary = json.loads((tmp_path / "metrics/text/evaluator.json").read_text())
    assert summary["kind"] == "pretext" and summary["chance"] == pytest.approx(1 / 3)
    assert summary["test_accuracy"] >= 0.6  # real vs words shuffled vs characters shuffled
    evaluator, _ = load_text_evaluator(tmp_path / "models/text/evaluator.pt")
    found = extract_text_features(evaluator, load_text_set(paths["test"]).texts)
    assert found.probabilities is None


# ---------------------------------------------------------------- the ruler


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance written independently: scipy's matrix square root."""
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    covariance_a, covariance_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(covariance_a @ covariance_b).real
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(covariance_a + covariance_b - 2 * root))


def test_frechet_distance_is_the_image_rulers_zero_on_itself_large_on_garbage(toy):
    assert text_ruler.frechet_distance is metrics.frechet_distance  # one Fréchet distance
    evaluator, sets, ruler = toy["evaluator"], toy["sets"], toy["ruler"]
    test = extract_text_features(evaluator, sets["test"].texts)
    val = extract_text_features(evaluator, sets["val"].texts)
    garbage_texts = shuffled_characters(sets["val"].texts)
    garbage = extract_text_features(evaluator, garbage_texts)

    itself = score_texts(sets["test"].texts, test, test, sets["train"].texts, ruler)
    real = score_texts(sets["val"].texts, val, test, sets["train"].texts, ruler)
    bad = score_texts(garbage_texts, garbage, test, sets["train"].texts, ruler)
    assert itself["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    assert itself["precision"] == itself["recall"] == itself["coverage"] == 1.0
    assert bad["frechet_distance"] > 10 * real["frechet_distance"]

    mean, scale = metrics.reference_scale(test.embeddings)  # FD in the reference-scaled space
    expected = scipy_frechet((val.embeddings - mean) / scale, (test.embeddings - mean) / scale)
    assert real["frechet_distance"] == pytest.approx(expected, rel=1e-4)


def test_label_accuracy_of_right_and_wrong_labels_beside_its_chance(toy):
    evaluator, sets, ruler = toy["evaluator"], toy["sets"], toy["ruler"]
    test = sets["test"]
    found = extract_text_features(evaluator, test.texts)

    def score(labels):
        return score_texts(test.texts, found, found, sets["train"].texts, ruler, CLASSES, labels)

    right, wrong = score(test.labels), score((test.labels + 1) % 3)
    assert right["label_accuracy"] >= 0.9 and wrong["label_accuracy"] <= 0.1
    assert right["label_samples"] == 45
    assert right["label_chance"] == pytest.approx(1 / 3, abs=0.05)  # balanced asks, predictions
    unconditional = score(None)
    assert unconditional["label_accuracy"] is None and unconditional["label_chance"] is None
    assert unconditional["classes_covered"] == 3 and unconditional["class_kl"] < 0.05


def test_copies_of_training_texts_are_flagged_verbatim_or_by_span(toy):
    evaluator, sets, ruler = toy["evaluator"], toy["sets"], toy["ruler"]
    train = sets["train"].texts
    generator = np.random.default_rng(5)
    fresh_words = ["quantum", "lemons", "juggle", "violet", "umbrellas", "gently", "ten", "kiwis"]
    fresh = [" ".join(generator.choice(fresh_words, size=9)).capitalize() + "!" for _ in range(10)]
    framed = [f"I once read that {text} And I laughed." for text in train[10:20]]
    samples = train[:10] + framed + fresh
    found = extract_text_features(evaluator, samples)
    reference = extract_text_features(evaluator, sets["test"].texts)
    scored = score_texts(samples, found, reference, train, ruler)
    assert scored["verbatim_share"] == pytest.approx(10 / 30)
    assert scored["copy_span_share"] == pytest.approx(20 / 30)
    assert scored["copy_span"] == 30


# ---------------------------------------------------------------- the stage end to end

EXPECTED = {
    "num_samples", "frechet_distance", "frechet_distance_se", "precision", "recall", "density",
    "coverage", "real_n", "frechet_distance_at_real_n", "recall_at_real_n", "classes_covered",
    "class_kl", "label_accuracy", "label_chance", "distinct_1", "distinct_2", "distinct_3",
    "self_bleu", "verbatim_share", "copy_span_share", "mean_characters",
    "unigram_bits_per_character", "evaluator_test_accuracy",
}  # fmt: skip


def assert_flat_numbers(scored: dict) -> None:
    assert EXPECTED <= set(scored)
    for key, value in scored.items():
        assert value is None or (isinstance(value, (int, float)) and math.isfinite(value)), key


def test_the_stage_scores_a_txt_file_of_unconditional_samples(toy, tmp_path, capsys):
    texts = toy["sets"]["val"].texts[:20] + shuffled_characters(toy["sets"]["val"].texts[20:30])
    samples = tmp_path / "other tool.txt"
    samples.write_text("\n%\n".join(texts) + "\n%\n")
    scored = evaluate(toy, samples, tmp_path / "metrics.json")
    assert_flat_numbers(scored)
    assert scored["num_samples"] == 30 and scored["real_n"] == 30  # fewer than the 45 held out
    assert scored["label_accuracy"] is None and scored["classes_covered"] == 3
    assert scored["mean_characters"] == pytest.approx(np.mean([len(text) for text in texts]))
    assert scored["verbatim_share"] == 0.0 and 0.0 < scored["distinct_1"] < 1.0
    assert 2.0 < scored["unigram_bits_per_character"] < math.log2(60)
    assert (
        capsys.readouterr()
        .out.strip()
        .splitlines()[-1]
        .startswith("evaluate-text other tool: 30 texts, FD ")
    )


def test_the_stage_scores_a_text_set_folder_of_conditional_samples(toy, tmp_path):
    folder = tmp_path / "samples"
    save_text_set(folder, toy["sets"]["test"])
    (folder / "info.json").write_text('{"family": "toy", "num_samples": 45, "conditional": true}')
    scored = evaluate(toy, folder, tmp_path / "conditional.json")
    assert_flat_numbers(scored)
    assert scored["label_accuracy"] >= 0.9 and scored["label_samples"] == 45
    assert scored["frechet_distance"] == pytest.approx(0.0, abs=1e-6)  # the reference itself
    (folder / "info.json").write_text('{"family": "toy", "num_samples": 45, "conditional": false}')
    assert evaluate(toy, folder, tmp_path / "unconditional.json")["label_accuracy"] is None


def test_bad_samples_stop_with_one_clear_line_before_the_evaluator_loads(toy, tmp_path, capsys):
    csv = tmp_path / "words.csv"
    csv.write_text("words,count\nhello,1\n")
    (tmp_path / "notes.json").write_text("[]")
    info = tmp_path / "short"
    save_text_set(info, toy["sets"]["test"])
    (info / "info.json").write_text('{"family": "toy", "num_samples": 50, "conditional": true}')
    cases = {
        tmp_path / "missing.txt": "missing.txt: no such file or folder; allowed: a text set folder",
        tmp_path / "notes.json": "notes.json: not a text set folder (texts.csv, classes.json), a "
        ".txt or a .csv",
        csv: "words.csv: no `text` column (columns: words, count)",
        info: "info.json: says 50 samples, texts.csv holds 45",
    }  # fmt: skip
    for samples, message in cases.items():
        with pytest.raises(SystemExit) as stopped:  # the evaluator path is bad too: never reached
            evaluate_main(["--samples", str(samples), "--evaluator", str(tmp_path / "none.pt"),
                           "--params", str(toy["params"])])  # fmt: skip
        assert stopped.value.code == 1
        error = capsys.readouterr().err
        assert error.startswith("error: ") and message in error and error.count("\n") == 1


def test_bad_params_stop_both_stages_with_one_line_naming_the_key(toy, tmp_path, capsys):
    params = write_params(tmp_path, {**OVERRIDES, "text_evaluate": {"copy_span": 0}})
    with pytest.raises(SystemExit) as stopped:
        evaluate_main(["--samples", str(tmp_path / "missing.txt"), "--params", str(params)])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "error: params.yaml: text_evaluate.copy_span = 0 is out of range; allowed: an integer "
        ">= 1\n"
    )
    params = write_params(tmp_path, {"text_evaluator": {"widths": []}})
    with pytest.raises(SystemExit) as stopped:
        train_stage(tmp_path, toy["paths"], params)
    assert stopped.value.code == 2
    assert "text_evaluator.widths = [] is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()  # stopped before training


def test_markup_and_unicode_are_data_in_every_input_form(toy, tmp_path):
    texts = HOSTILE + toy["sets"]["val"].texts[:5]
    (tmp_path / "hostile.txt").write_text("\n%\n".join(texts), encoding="utf-8")
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "hostile.csv", index=False)
    one_per_line = [text for text in texts if "\n" not in text]
    (tmp_path / "lines.txt").write_text("\n".join(one_per_line) + "\n\n", encoding="utf-8")
    assert read_text_samples(tmp_path / "hostile.txt").texts == texts
    assert read_text_samples(tmp_path / "hostile.csv").texts == texts
    assert read_text_samples(tmp_path / "lines.txt").texts == one_per_line

    scored = evaluate(toy, tmp_path / "hostile.csv", tmp_path / "hostile.json")
    assert_flat_numbers(scored)  # unknown characters (中, 🎉) are <unk>, features stay finite
    assert scored["num_samples"] == 8 and scored["verbatim_share"] == 0.0
