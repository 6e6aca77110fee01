"""The text ruler's measures against their definitions, on texts made by hand."""

from __future__ import annotations

import math

import pytest

from aigc.text_metrics import (
    bits_per_character,
    copy_span_share,
    distinct_n,
    self_bleu,
    verbatim_share,
)


def test_distinct_n_counts_distinct_word_ngrams_over_all():
    texts = ["the cat sat", "the cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran of 6 words
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # "the cat" twice, "cat sat", "cat ran"
    assert distinct_n(texts, 3) == 1.0
    assert distinct_n(["same same same same"], 1) == 0.25
    assert distinct_n(["one"], 2) == 0.0  # no bigram at all


def test_self_bleu_is_high_for_repeats_and_low_for_different_texts():
    repeats = ["the quick brown fox jumps over the lazy dog"] * 4
    varied = ["the quick brown fox jumps", "colourless green ideas sleep furiously",
              "a stitch in time saves nine", "to be or not to be"]  # fmt: skip
    assert self_bleu(repeats) == pytest.approx(100.0)
    assert self_bleu(varied) < 20.0
    assert self_bleu(["alone"]) == 0.0


def test_verbatim_share_compares_whitespace_folded_texts():
    train = ["A fortune  cookie\nsays hi.", "Another one."]
    samples = ["A fortune cookie says hi.", "A new one.", "Another one."]
    assert verbatim_share(samples, train) == pytest.approx(2 / 3)


def test_copy_span_share_finds_a_memorised_run_inside_a_new_text():
    train = ["It was the best of times, it was the worst of times, it was the age of wisdom."]
    inside = "Said he: it was the best of times, it was the worst of times! and laughed"
    short = "It was the best of days, or so they say, in the age of wisdom."
    assert copy_span_share([inside, short], train, span=40) == 0.5
    assert copy_span_share([inside], train, span=60) == 0.0  # the shared run is about 50
    assert copy_span_share([short], train, span=12) == 1.0  # "the age of wisdom." is 18


def test_bits_per_character_converts_nats():
    assert bits_per_character(100 * math.log(2), 50) == pytest.approx(2.0)
    assert math.isnan(bits_per_character(1.0, 0))
