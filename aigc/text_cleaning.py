"""Cleaning untrusted text: strict decoding, normalisation, PII scrubbing, filters, deduplication.

Every item ends up kept or rejected with a reason (`clean_texts`); the checks run in order:

    (an error from collect: unsafe_path, symlink, special_file, unreadable, too_large)
    bad_label      a class not in `text.classes`
    empty          zero bytes, or nothing left after normalisation
    too_large      more bytes than `max_bytes`, judged before decoding (a 50 MB single line)
    binary         NUL bytes: a binary file, whatever its name says
    invalid_utf8   bytes that do not decode as strict UTF-8 (or as UTF-16 after its BOM)
    too_short      fewer characters than `min_chars` after normalisation
    too_long       more characters than `max_chars` after normalisation
    garbage        a share of letters, digits, punctuation, spaces and ASCII symbols under
                   `min_allowed_share` (box drawing, emoji runs, unassigned code points)
    duplicate      the same text as a kept item, compared case- and whitespace-folded
    near_duplicate a kept item's character shingles overlap it above `near_duplicate_threshold`
                   (Jaccard similarity, estimated by MinHash with LSH banding)

Decoding honours a byte-order mark (UTF-8, UTF-16 LE/BE); anything else must be strict UTF-8.
Normalisation (`normalise`): Unicode NFC; ANSI escape sequences, bidirectional overrides and
isolates, zero-width characters and other control characters removed (each counted); CR LF and
CR to LF, tabs to spaces, runs of spaces to one, trailing spaces and blank runs trimmed.
PII (`scrub_pii`): e-mail addresses, URLs, IP addresses and phone numbers become `<EMAIL>`,
`<URL>`, `<IP>` and `<PHONE>`, counted per kind, before the length and duplicate checks, so
generated text cannot leak them. Texts stay text: whoever renders them escapes them.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from aigc.errors import Rejected
from aigc.params import spec

REASONS = ("bad_label", "empty", "too_large", "binary", "invalid_utf8", "too_short", "too_long",
           "garbage", "duplicate", "near_duplicate")  # fmt: skip

ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
PII_PATTERNS = {  # order matters: a URL may hold an e-mail address or an IP
    "url": re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']+", re.IGNORECASE),
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "ip": re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    # digit groups split by spaces or dashes, "(555) 123-4567" or "+44 20 7946 0958": three
    # groups or a leading +, 7-15 digits (`_phone`), so years, ranges and decimals stay
    "phone": re.compile(r"(?<![\w+.-])\+?\(?\d{1,4}\)?(?:[ -]\(?\d{1,4}\)?){1,5}(?![\w.-]\d)"),
}
PLACEHOLDERS = {"url": "<URL>", "email": "<EMAIL>", "ip": "<IP>", "phone": "<PHONE>"}


@dataclass(frozen=True)
class TextCleanParams:
    """params.yaml `text_clean`."""

    max_bytes: int = spec(ge=1, doc="items larger than this are rejected before decoding")
    min_chars: int = spec(ge=1, doc="shortest text kept, after normalisation")
    max_chars: int = spec(ge=1, doc="longest text kept, after normalisation")
    min_allowed_share: float = spec(ge=0.0, le=1.0, doc="share of ordinary characters required")
    near_duplicate_threshold: float = spec(
        gt=0.0, le=1.01, doc="shingle Jaccard above which a text is a near duplicate (>1 = off)"
    )
    shingle_size: int = spec(ge=1, le=32, doc="characters per shingle of the near-duplicate test")
    seed: int = spec(ge=0, doc="seed of the MinHash permutations")


def decode_text(data: bytes, max_bytes: int) -> tuple[str, str]:
    """The text in `data` and the encoding it was read as; Rejected when it is not text."""
    if not data:
        raise Rejected("empty", "zero bytes")
    if len(data) > max_bytes:
        raise Rejected("too_large", f"{len(data):,} bytes, over max_bytes = {max_bytes:,}")
    for bom, encoding in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"),
                          (b"\xfe\xff", "utf-16-be")):  # fmt: skip
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding), encoding
            except UnicodeDecodeError as error:
                raise Rejected("invalid_utf8", f"{encoding} after its BOM: {error.reason} "
                               f"at byte {error.start + len(bom)}") from None  # fmt: skip
    if b"\x00" in data:
        raise Rejected("binary", f"NUL byte at offset {data.index(0)}: not a text file")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as error:
        raise Rejected("invalid_utf8", f"{error.reason} at byte {error.start}") from None


def normalise(text: str) -> tuple[str, Counter]:
    """`text` normalised (module docstring) and what was removed, per kind."""
    removed = Counter()
    text = unicodedata.normalize("NFC", text)
    text, count = ANSI_ESCAPE.subn("", text)
    removed["ansi_escape"] += count
    kept = []
    for character in text.replace("\r\n", "\n").replace("\r", "\n"):
        if character in BIDI_CONTROLS:
            removed["bidi_control"] += 1
        elif character in ZERO_WIDTH:
            removed["zero_width"] += 1
        elif character == "\t":
            kept.append(" ")
        elif character != "\n" and unicodedata.category(character) in ("Cc", "Cf", "Co", "Cs"):
            removed["control"] += 1
        else:
            kept.append(character)
    lines = [re.sub(r" {2,}", " ", line).rstrip() for line in "".join(kept).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n ")
    return text, removed


def _phone(match: re.Match) -> bool:
    number = match.group()
    digits = sum(c.isdigit() for c in number)
    groups = re.findall(r"\d+", number)
    if " " in number and all(len(group) == 3 for group in groups[1:]):
        return False  # 10 000 000: a number with thousands separators
    return 7 <= digits <= 15 and (len(groups) >= 3 or number.startswith("+"))


def scrub_pii(text: str) -> tuple[str, Counter]:
    """`text` with e-mail addresses, URLs, IPs and phone numbers replaced, and their counts."""
    found = Counter()
    for kind, pattern in PII_PATTERNS.items():

        def replace(match: re.Match, kind=kind) -> str:
            if kind == "phone" and not _phone(match):
                return match.group()
            found[kind] += 1
            return PLACEHOLDERS[kind]

        text = pattern.sub(replace, text)
    return text, found


def allowed_share(text: str) -> float:
    """Share of the characters that are letters, marks, digits, punctuation, spaces or ASCII
    symbols (so box drawing, emoji runs and unassigned code points count against a text)."""
    if not text:
        return 0.0
    ordinary = sum(1 for c in text
                   if c.isascii() or unicodedata.category(c)[0] in "LMNPZ")  # fmt: skip
    return ordinary / len(text)


def fold(text: str) -> str:
    """The form exact duplicates are compared in: case-folded, whitespace collapsed."""
    return " ".join(text.casefold().split())


class MinHash:
    """MinHash signatures of character shingles with LSH banding (Broder 1997; Leskovec et al.,
    Mining of Massive Datasets, ch. 3). With 16 bands of 4 rows, two texts whose shingle sets
    have Jaccard similarity s share a band with probability 1 - (1 - s^4)^16: 0.98 at s = 0.6,
    so pairs near any threshold from 0.6 up are found; each candidate is then checked exactly."""

    PRIME = (1 << 31) - 1  # hashes, a and b below it: (a * h + b) fits in uint64
    BANDS, ROWS = 16, 4

    def __init__(self, shingle_size: int, threshold: float, seed: int) -> None:
        self.size = shingle_size
        self.threshold = threshold
        generator = np.random.default_rng(seed)
        count = self.BANDS * self.ROWS
        self.a = generator.integers(1, self.PRIME, size=(count, 1), dtype=np.uint64)
        self.b = generator.integers(0, self.PRIME, size=(count, 1), dtype=np.uint64)
        self.buckets: dict[tuple[int, bytes], list[int]] = {}
        self.shingles: list[set[str]] = []

    def shingle(self, text: str) -> set[str]:
        folded = fold(text)
        if len(folded) <= self.size:
            return {folded}
        return {folded[i : i + self.size] for i in range(len(folded) - self.size + 1)}

    def signature(self, shingles: set[str]) -> np.ndarray:
        """uint64 (BANDS * ROWS,): the minimum of each hash permutation over the shingles."""
        hashes = np.array([zlib.crc32(s.encode()) & self.PRIME for s in shingles], np.uint64)
        return ((self.a * hashes[None, :] + self.b) % self.PRIME).min(axis=1)

    def add(self, text: str) -> tuple[int, float] | None:
        """Register `text` as kept, or return (index, similarity) of the kept text it nearly
        duplicates (and do not register it)."""
        shingles = self.shingle(text)
        signature = self.signature(shingles)
        keys = [(band, signature[band * self.ROWS : (band + 1) * self.ROWS].tobytes())
                for band in range(self.BANDS)]  # fmt: skip
        best = None
        for index in sorted({index for key in keys for index in self.buckets.get(key, [])}):
            other = self.shingles[index]
            similarity = len(shingles & other) / len(shingles | other)
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (index, similarity)
        if best:
            return best
        for key in keys:
            self.buckets.setdefault(key, []).append(len(self.shingles))
        self.shingles.append(shingles)
        return None


@dataclass
class TextCleanResult:
    kept: list[dict] = field(default_factory=list)  # id, origin, label, class, text
    rejected: list[dict] = field(default_factory=list)  # id, origin, reason, detail
    removed: Counter = field(default_factory=Counter)  # characters removed from kept texts
    pii: Counter = field(default_factory=Counter)  # PII replaced in kept texts, per kind
    encodings: Counter = field(default_factory=Counter)
    collected: int = 0

    def metrics(self, classes: list[str]) -> dict:
        reasons = Counter(row["reason"] for row in self.rejected)
        per_class = Counter(row["class"] or "unlabelled" for row in self.kept)
        return {
            "collected": self.collected,
            "kept": len(self.kept),
            "rejected": len(self.rejected),
            "rejected_by_reason": {reason: reasons.get(reason, 0) for reason in REASONS}
            | dict(reasons),
            "texts_per_class": {name: per_class.get(name, 0) for name in classes} | dict(per_class),
            "characters_removed": dict(sorted(self.removed.items())),
            "pii_replaced": {kind: self.pii.get(kind, 0) for kind in PII_PATTERNS},
            "encodings": dict(sorted(self.encodings.items())),
        }


def clean_texts(
    items, classes: list[str], params: TextCleanParams, label_map: dict | None = None
) -> TextCleanResult:
    """Clean `items` ((id, origin, source label, data bytes, collect error or "", the codec
    collect decoded it from or "text")), in order.
    `label_map` ({source label: kept label}, aigc.sources.class_mapping) rejects the items of
    classes not kept as bad_label; `classes` are the kept classes' names."""
    result = TextCleanResult()
    seen: dict[str, int] = {}  # folded text -> id of the kept item
    near = MinHash(params.shingle_size, params.near_duplicate_threshold, params.seed)
    for item_id, origin, label, data, error, codec in items:
        result.collected += 1
        try:
            if error:
                raise Rejected(error, "could not be collected")
            if label_map is not None and label >= 0:
                if label not in label_map:
                    raise Rejected("bad_label", "its class is not in text.classes")
                label = label_map[label]
            text, encoding, removed, pii = _checked(data, params, codec)
            key = fold(text)
            if key in seen:
                raise Rejected("duplicate", f"same text as item {seen[key]}, which is kept")
            if params.near_duplicate_threshold <= 1.0:
                match = near.add(text)
                if match:
                    kept = result.kept[match[0]]["id"]
                    raise Rejected("near_duplicate", f"shingle Jaccard {match[1]:.2f} with item "
                                   f"{kept}, which is kept")  # fmt: skip
        except Rejected as rejection:
            result.rejected.append({"id": item_id, "origin": origin, "reason": rejection.reason,
                                    "detail": rejection.detail})  # fmt: skip
            continue
        seen[key] = item_id
        result.removed.update(removed)  # counted for the kept texts only
        result.pii.update(pii)
        result.encodings[encoding] += 1
        name = classes[label] if 0 <= label < len(classes) else ""
        result.kept.append({"id": item_id, "origin": origin, "label": label, "class": name,
                            "text": text})  # fmt: skip
    if len(result.kept) + len(result.rejected) != result.collected:
        raise AssertionError("a text was neither kept nor rejected")
    return result


def _checked(data: bytes, params: TextCleanParams, codec: str) -> tuple[str, str, Counter, Counter]:
    """The decoded, normalised, scrubbed text, the encoding it was read as, and the characters
    removed and PII replaced in it; or Rejected by the per-item checks."""
    text, encoding = decode_text(data, params.max_bytes)
    encoding = encoding if codec == "text" else codec  # collect decoded a UTF-16 file already
    text, removed = normalise(text)
    text, pii = scrub_pii(text)
    if not text:
        raise Rejected("empty", "nothing left after normalisation")
    if len(text) < params.min_chars:
        raise Rejected("too_short", f"{len(text)} characters, under min_chars = {params.min_chars}")
    if len(text) > params.max_chars:
        raise Rejected("too_long", f"{len(text)} characters, over max_chars = {params.max_chars}")
    share = allowed_share(text)
    if share < params.min_allowed_share:
        raise Rejected("garbage", f"{share:.0%} ordinary characters, under "
                       f"min_allowed_share = {params.min_allowed_share:.0%}")  # fmt: skip
    return text, encoding, removed, pii
