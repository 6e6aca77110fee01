"""Cleaning hostile text (aigc/text_cleaning.py): every item kept correctly normalised or rejected
with its reason, PII replaced and counted, duplicates and near duplicates found, nothing lost."""

from __future__ import annotations

import numpy as np
import pytest

from aigc.errors import Rejected
from aigc.text_cleaning import (
    MinHash,
    TextCleanParams,
    allowed_share,
    clean_texts,
    decode_text,
    normalise,
    scrub_pii,
)

PARAMS = TextCleanParams(max_bytes=1_000_000, min_chars=5, max_chars=2000,
                         min_allowed_share=0.9, near_duplicate_threshold=0.8, shingle_size=5,
                         seed=0)  # fmt: skip
CLASSES = ["art", "science"]


def run(*texts: bytes, params: TextCleanParams = PARAMS):
    items = [(i, f"file#{i}", i % 2, data, "", "text") for i, data in enumerate(texts)]
    return clean_texts(items, CLASSES, params)


def reason(data: bytes) -> str:
    result = run(data)
    assert len(result.kept) + len(result.rejected) == 1
    return result.rejected[0]["reason"] if result.rejected else "kept"


HOSTILE = {
    "invalid UTF-8": (b"caf\xe9 au lait is fine", "invalid_utf8"),
    "NUL bytes": (b"a text\x00with a NUL inside", "binary"),
    "binary file named .txt": (np.random.default_rng(0).bytes(4096) + b"\x00", "binary"),
    "empty file": (b"", "empty"),
    "only controls": (b"\x1b[31m\x1b[0m\x07\x08", "empty"),
    "a 50 MB single line": (b"x" * 50_000_000, "too_large"),
    "too short": (b"hi", "too_short"),
    "a private-use glyph and a DEL": (("\ue000" * 3 + "ok" + "\x7f").encode(), "too_short"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_items_are_rejected_with_their_reason(name):
    data, expected = HOSTILE[name]
    assert reason(data) == expected


def test_utf16_with_a_bom_and_utf8_with_a_bom_are_read_as_what_they_are():
    text = "Ünïcödé fortune, read right."
    for data, encoding in ((b"\xff\xfe" + text.encode("utf-16-le"), "utf-16-le"),
                           (b"\xfe\xff" + text.encode("utf-16-be"), "utf-16-be"),
                           (b"\xef\xbb\xbf" + text.encode(), "utf-8")):  # fmt: skip
        assert decode_text(data, 1000) == (text, encoding)
        assert run(data).kept[0]["text"] == text
    with pytest.raises(Rejected, match="utf-16-le after its BOM"):
        decode_text(b"\xff\xfe\x00\xd8", 1000)  # a lone surrogate


def test_escapes_bidi_overrides_and_zero_width_characters_are_removed_and_counted():
    hostile = "\x1b[1;31mRed\x1b[0m alert:\u202e evil\u202c and\u200b zero\u2060width\r\n\tdone  "
    text, removed = normalise(hostile)
    assert text == "Red alert: evil and zerowidth\n done"
    assert removed == {"ansi_escape": 2, "bidi_control": 2, "zero_width": 2}
    composed, _ = normalise("cafe\u0301")  # NFC: e + combining acute -> é
    assert composed == "caf\u00e9"


def test_script_tags_stay_text_for_the_renderer_to_escape():
    result = run(b"<script>alert('x')</script> is a fortune too")
    assert result.kept[0]["text"] == "<script>alert('x')</script> is a fortune too"


def test_pii_is_replaced_by_placeholders_and_counted_per_kind():
    text, found = scrub_pii(
        "Mail jane.doe+fortunes@example.org or see https://example.org/a?b=c, "
        "call +44 20 7946 0958 or 555-123-4567, server 192.168.10.254."
    )
    assert text == "Mail <EMAIL> or see <URL> call <PHONE> or <PHONE>, server <IP>."
    assert found == {"email": 1, "url": 1, "phone": 2, "ip": 1}
    kept = "In 1939-1945, pi was 3.14159265 and 10 000 000 people, room 12 3 said."
    assert scrub_pii(kept) == (kept, {})
    result = run(b"write to me at someone@example.com today")
    assert result.kept[0]["text"] == "write to me at <EMAIL> today"
    assert result.metrics(CLASSES)["pii_replaced"] == {"url": 0, "email": 1, "ip": 0, "phone": 0}


def test_exact_and_near_duplicates_are_rejected_and_the_first_is_kept():
    base = b"A journey of a thousand miles begins with a single step, they say."
    near = b"A journey of a thousand miles begins with a single step, they said."
    other = b"Time flies like an arrow; fruit flies like a banana."
    result = run(base, b"  a JOURNEY of a thousand miles begins with a single step, they say.",
                 near, other)  # fmt: skip
    assert [row["id"] for row in result.kept] == [0, 3]
    reasons = {row["id"]: (row["reason"], row["detail"]) for row in result.rejected}
    assert reasons[1] == ("duplicate", "same text as item 0, which is kept")
    assert reasons[2][0] == "near_duplicate" and "with item 0" in reasons[2][1]


def test_minhash_finds_pairs_above_the_threshold_and_not_below():
    index = MinHash(shingle_size=5, threshold=0.7, seed=1)
    assert index.add("the quick brown fox jumps over the lazy dog again and again") is None
    match = index.add("the quick brown fox jumps over the lazy dog again and again!")
    assert match is not None and match[0] == 0 and match[1] > 0.9
    assert index.add("completely different words that share almost nothing at all") is None


def test_garbage_share_and_length_bounds():
    assert allowed_share("plain words.") == 1.0
    assert reason(("\u2500" * 20 + " words").encode()) == "garbage"  # box drawing
    assert reason(("words, " * 5 + "\U0001f600" * 2).encode()) == "kept"  # a little emoji
    assert reason(b"y" * 3000) == "too_long"


def test_metrics_account_for_every_item():
    result = run(b"", b"caf\xe9", b"a good fortune here", b"a good fortune here")
    metrics = result.metrics(CLASSES)
    assert metrics["collected"] == 4 == metrics["kept"] + metrics["rejected"]
    assert metrics["rejected_by_reason"]["empty"] == 1
    assert metrics["rejected_by_reason"]["invalid_utf8"] == 1
    assert metrics["rejected_by_reason"]["duplicate"] == 1
    assert metrics["texts_per_class"] == {"art": 1, "science": 0}
