#!/usr/bin/env python3
"""A text's hashed n-gram ids, the model's `ngram_ids` input: the recipe of
`device/src/ngrams.rs` in Python, for running a bundle under onnxruntime.

    from ngram_ids import ngram_ids, padded
    ngram_ids("Turn ON the lights!", 4096, 64)      # [ids...], distinct, in 1..4096
    padded(["a text", "another"], 4096, 64)           # numpy int64 [2, 64], 0 pads
    padded([[5, 9], [7]], None, 64)                   # id lists padded as they are

    tools/scripts/ngram_ids.py --buckets B --max M < texts.txt   # one JSON list per line
    tools/scripts/ngram_ids.py --unicode-table                    # the character tables (tests)

`buckets` and `max` are the manifest's `"ngrams": {"buckets": B, "max": M}`. The recipe:

1. Words are the maximal runs of alphanumeric characters (Rust `char::is_alphanumeric`),
   each character lowercased on its own (Rust `char::to_lowercase`).
2. Features, in order: `W` + every word, `B` + every adjacent pair joined by a space, then
   word by word the character n-grams, n = 2..5, of `<` + the word's first 32 characters
   + `>`, each as `C` + n-gram.
3. id = 1 + FNV-1a-32(UTF-8 bytes of the feature) % (max(buckets, 2) - 1); 0 is padding.
   Repeated ids are kept once, in order of first appearance; the first `max` are the ids.

Where Python's string methods differ from Rust's `char` methods, and what this file does:

* Rust's `is_alphanumeric` is Unicode Alphabetic or Numeric (Nd, Nl, No). Python's
  `str.isalnum` is the letters (L*) and everything with a numeric value, which is the
  general categories L* and N* (so '²', '½', 'Ⅻ', '一' are word characters in both). It
  misses the Alphabetic characters outside L*: the vowel signs and other combining marks of
  Indic, Thai, Arabic, Hebrew... (Other_Alphabetic, Mn/Mc: Python would cut "हिंदी" into
  pieces), U+0345, and circled or squared letters ('Ⓐ', 'ⓐ', '🄰', So). `_EXTRA_ALNUM` lists
  them, and the letters and digits assigned after Python 3.11's Unicode 14.0 up to
  Unicode 17.0 (Rust 1.95): such a character is unassigned for Python, so not alphanumeric.
* `str.lower()` applies the final-sigma rule ('ΟΔΟΣ' ends in 'ς'); `char::to_lowercase`
  has no context ('σ'). So each character is lowercased alone. 'İ' (U+0130) becomes two
  characters, 'i' + U+0307, in both, and the word's 32-character cut counts both.
  `_LOWER_AFTER_14` holds the lowercase of the letters added after Unicode 14.0.
* Combining accents (U+0301 in a decomposed 'é') are not alphanumeric in either: a
  decomposed word splits there, as the device splits it. Nothing is normalised (NFC/NFKC)
  on either side: fullwidth 'Ｈｅｌｌｏ' stays fullwidth (lowercased to 'ｈｅｌｌｏ').

Known differences: none with Python >= 3.11 and Rust 1.95 (Unicode 17.0), every code point
compared by tests/tests/ngram_reference.rs, which also compares the ids of the demo texts
and of tricky strings. When Rust moves to a newer Unicode that test fails and prints the new
tables. With a Python older than 3.11 the letters and digits added in Unicode 14.0 (e.g.
Vithkuqi, Toto, Tangsa) and their lowercase would differ.
"""
import argparse
import bisect
import json
import sys
import unicodedata

CHAR_NGRAMS = range(2, 6)
MAX_WORD_CHARS = 32

# (first, last) code points that Rust's `char::is_alphanumeric` accepts and Python 3.11's
# `str.isalnum` does not (see the module's docstring).
_EXTRA_ALNUM = (
    (0x0345, 0x0345), (0x0363, 0x036F), (0x05B0, 0x05BD), (0x05BF, 0x05BF),
    (0x05C1, 0x05C2), (0x05C4, 0x05C5), (0x05C7, 0x05C7), (0x0610, 0x061A),
    (0x064B, 0x0657), (0x0659, 0x065F), (0x0670, 0x0670), (0x06D6, 0x06DC),
    (0x06E1, 0x06E4), (0x06E7, 0x06E8), (0x06ED, 0x06ED), (0x0711, 0x0711),
    (0x0730, 0x073F), (0x07A6, 0x07B0), (0x0816, 0x0817), (0x081B, 0x0823),
    (0x0825, 0x0827), (0x0829, 0x082C), (0x088F, 0x088F), (0x0897, 0x0897),
    (0x08D4, 0x08DF), (0x08E3, 0x08E9), (0x08F0, 0x0903), (0x093A, 0x093B),
    (0x093E, 0x094C), (0x094E, 0x094F), (0x0955, 0x0957), (0x0962, 0x0963),
    (0x0981, 0x0983), (0x09BE, 0x09C4), (0x09C7, 0x09C8), (0x09CB, 0x09CC),
    (0x09D7, 0x09D7), (0x09E2, 0x09E3), (0x0A01, 0x0A03), (0x0A3E, 0x0A42),
    (0x0A47, 0x0A48), (0x0A4B, 0x0A4C), (0x0A51, 0x0A51), (0x0A70, 0x0A71),
    (0x0A75, 0x0A75), (0x0A81, 0x0A83), (0x0ABE, 0x0AC5), (0x0AC7, 0x0AC9),
    (0x0ACB, 0x0ACC), (0x0AE2, 0x0AE3), (0x0AFA, 0x0AFC), (0x0B01, 0x0B03),
    (0x0B3E, 0x0B44), (0x0B47, 0x0B48), (0x0B4B, 0x0B4C), (0x0B56, 0x0B57),
    (0x0B62, 0x0B63), (0x0B82, 0x0B82), (0x0BBE, 0x0BC2), (0x0BC6, 0x0BC8),
    (0x0BCA, 0x0BCC), (0x0BD7, 0x0BD7), (0x0C00, 0x0C04), (0x0C3E, 0x0C44),
    (0x0C46, 0x0C48), (0x0C4A, 0x0C4C), (0x0C55, 0x0C56), (0x0C5C, 0x0C5C),
    (0x0C62, 0x0C63), (0x0C81, 0x0C83), (0x0CBE, 0x0CC4), (0x0CC6, 0x0CC8),
    (0x0CCA, 0x0CCC), (0x0CD5, 0x0CD6), (0x0CDC, 0x0CDC), (0x0CE2, 0x0CE3),
    (0x0CF3, 0x0CF3), (0x0D00, 0x0D03), (0x0D3E, 0x0D44), (0x0D46, 0x0D48),
    (0x0D4A, 0x0D4C), (0x0D57, 0x0D57), (0x0D62, 0x0D63), (0x0D81, 0x0D83),
    (0x0DCF, 0x0DD4), (0x0DD6, 0x0DD6), (0x0DD8, 0x0DDF), (0x0DF2, 0x0DF3),
    (0x0E31, 0x0E31), (0x0E34, 0x0E3A), (0x0E4D, 0x0E4D), (0x0EB1, 0x0EB1),
    (0x0EB4, 0x0EB9), (0x0EBB, 0x0EBC), (0x0ECD, 0x0ECD), (0x0F71, 0x0F83),
    (0x0F8D, 0x0F97), (0x0F99, 0x0FBC), (0x102B, 0x1036), (0x1038, 0x1038),
    (0x103B, 0x103E), (0x1056, 0x1059), (0x105E, 0x1060), (0x1062, 0x1064),
    (0x1067, 0x106D), (0x1071, 0x1074), (0x1082, 0x108D), (0x108F, 0x108F),
    (0x109A, 0x109D), (0x1712, 0x1713), (0x1732, 0x1733), (0x1752, 0x1753),
    (0x1772, 0x1773), (0x17B6, 0x17C8), (0x1885, 0x1886), (0x18A9, 0x18A9),
    (0x1920, 0x192B), (0x1930, 0x1938), (0x1A17, 0x1A1B), (0x1A55, 0x1A5E),
    (0x1A61, 0x1A74), (0x1ABF, 0x1AC0), (0x1ACC, 0x1ACE), (0x1B00, 0x1B04),
    (0x1B35, 0x1B43), (0x1B80, 0x1B82), (0x1BA1, 0x1BA9), (0x1BAC, 0x1BAD),
    (0x1BE7, 0x1BF1), (0x1C24, 0x1C36), (0x1C89, 0x1C8A), (0x1DD3, 0x1DF4),
    (0x24B6, 0x24E9), (0x2DE0, 0x2DFF), (0xA674, 0xA67B), (0xA69E, 0xA69F),
    (0xA7CB, 0xA7CF), (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4), (0xA7DA, 0xA7DC),
    (0xA7F1, 0xA7F1), (0xA802, 0xA802), (0xA80B, 0xA80B), (0xA823, 0xA827),
    (0xA880, 0xA881), (0xA8B4, 0xA8C3), (0xA8C5, 0xA8C5), (0xA8FF, 0xA8FF),
    (0xA926, 0xA92A), (0xA947, 0xA952), (0xA980, 0xA983), (0xA9B4, 0xA9BF),
    (0xA9E5, 0xA9E5), (0xAA29, 0xAA36), (0xAA43, 0xAA43), (0xAA4C, 0xAA4D),
    (0xAA7B, 0xAA7D), (0xAAB0, 0xAAB0), (0xAAB2, 0xAAB4), (0xAAB7, 0xAAB8),
    (0xAABE, 0xAABE), (0xAAEB, 0xAAEF), (0xAAF5, 0xAAF5), (0xABE3, 0xABEA),
    (0xFB1E, 0xFB1E), (0x10376, 0x1037A), (0x105C0, 0x105F3), (0x10940, 0x10959),
    (0x10A01, 0x10A03), (0x10A05, 0x10A06), (0x10A0C, 0x10A0F), (0x10D24, 0x10D27),
    (0x10D40, 0x10D65), (0x10D69, 0x10D69), (0x10D6F, 0x10D85), (0x10EAB, 0x10EAC),
    (0x10EC2, 0x10EC7), (0x10EFA, 0x10EFC), (0x11000, 0x11002), (0x11038, 0x11045),
    (0x11073, 0x11074), (0x11080, 0x11082), (0x110B0, 0x110B8), (0x110C2, 0x110C2),
    (0x11100, 0x11102), (0x11127, 0x11132), (0x11145, 0x11146), (0x11180, 0x11182),
    (0x111B3, 0x111BF), (0x111CE, 0x111CF), (0x1122C, 0x11234), (0x11237, 0x11237),
    (0x1123E, 0x11241), (0x112DF, 0x112E8), (0x11300, 0x11303), (0x1133E, 0x11344),
    (0x11347, 0x11348), (0x1134B, 0x1134C), (0x11357, 0x11357), (0x11362, 0x11363),
    (0x11380, 0x11389), (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5),
    (0x113B7, 0x113C0), (0x113C2, 0x113C2), (0x113C5, 0x113C5), (0x113C7, 0x113CA),
    (0x113CC, 0x113CD), (0x113D1, 0x113D1), (0x113D3, 0x113D3), (0x11435, 0x11441),
    (0x11443, 0x11445), (0x114B0, 0x114C1), (0x115AF, 0x115B5), (0x115B8, 0x115BE),
    (0x115DC, 0x115DD), (0x11630, 0x1163E), (0x11640, 0x11640), (0x116AB, 0x116B5),
    (0x116D0, 0x116E3), (0x1171D, 0x1172A), (0x1182C, 0x11838), (0x11930, 0x11935),
    (0x11937, 0x11938), (0x1193B, 0x1193C), (0x11940, 0x11940), (0x11942, 0x11942),
    (0x119D1, 0x119D7), (0x119DA, 0x119DF), (0x119E4, 0x119E4), (0x11A01, 0x11A0A),
    (0x11A35, 0x11A39), (0x11A3B, 0x11A3E), (0x11A51, 0x11A5B), (0x11A8A, 0x11A97),
    (0x11B60, 0x11B67), (0x11BC0, 0x11BE0), (0x11BF0, 0x11BF9), (0x11C2F, 0x11C36),
    (0x11C38, 0x11C3E), (0x11C92, 0x11CA7), (0x11CA9, 0x11CB6), (0x11D31, 0x11D36),
    (0x11D3A, 0x11D3A), (0x11D3C, 0x11D3D), (0x11D3F, 0x11D41), (0x11D43, 0x11D43),
    (0x11D47, 0x11D47), (0x11D8A, 0x11D8E), (0x11D90, 0x11D91), (0x11D93, 0x11D96),
    (0x11DB0, 0x11DDB), (0x11DE0, 0x11DE9), (0x11EF3, 0x11EF6), (0x11F00, 0x11F10),
    (0x11F12, 0x11F3A), (0x11F3E, 0x11F40), (0x11F50, 0x11F59), (0x1342F, 0x1342F),
    (0x13441, 0x13446), (0x13460, 0x143FA), (0x16100, 0x1612E), (0x16130, 0x16139),
    (0x16D40, 0x16D6C), (0x16D70, 0x16D79), (0x16EA0, 0x16EB8), (0x16EBB, 0x16ED3),
    (0x16F4F, 0x16F4F), (0x16F51, 0x16F87), (0x16F8F, 0x16F92), (0x16FF0, 0x16FF6),
    (0x187F8, 0x187FF), (0x18CFF, 0x18CFF), (0x18D09, 0x18D1E), (0x18D80, 0x18DF2),
    (0x1B132, 0x1B132), (0x1B155, 0x1B155), (0x1BC9E, 0x1BC9E), (0x1CCF0, 0x1CCF9),
    (0x1D2C0, 0x1D2D3), (0x1DF25, 0x1DF2A), (0x1E000, 0x1E006), (0x1E008, 0x1E018),
    (0x1E01B, 0x1E021), (0x1E023, 0x1E024), (0x1E026, 0x1E02A), (0x1E030, 0x1E06D),
    (0x1E08F, 0x1E08F), (0x1E4D0, 0x1E4EB), (0x1E4F0, 0x1E4F9), (0x1E5D0, 0x1E5ED),
    (0x1E5F0, 0x1E5FA), (0x1E6C0, 0x1E6DE), (0x1E6E0, 0x1E6F5), (0x1E6FE, 0x1E6FF),
    (0x1E947, 0x1E947), (0x1F130, 0x1F149), (0x1F150, 0x1F169), (0x1F170, 0x1F189),
    (0x2B739, 0x2B73F), (0x2CEA2, 0x2CEAD), (0x2EBF0, 0x2EE5D), (0x31350, 0x33479),
)
_EXTRA_FIRST = [r[0] for r in _EXTRA_ALNUM]

# (first, last, offset): Rust's lowercase of these letters (added after Unicode 14.0) is the
# code point + offset; Python 3.11 leaves them as they are.
_LOWER_AFTER_14 = (
    (0x1C89, 0x1C89, +1), (0xA7CB, 0xA7CB, -42343), (0xA7CC, 0xA7CC, +1), (0xA7CE, 0xA7CE, +1),
    (0xA7D2, 0xA7D2, +1), (0xA7D4, 0xA7D4, +1), (0xA7DA, 0xA7DA, +1), (0xA7DC, 0xA7DC, -42561),
    (0x10D50, 0x10D65, +32), (0x16EA0, 0x16EB8, +27),
)


def is_alphanumeric(c):
    """Rust's `char::is_alphanumeric` for the character `c`."""
    if c.isalnum():
        return True
    if c < "\x80":
        return False
    u = ord(c)
    i = bisect.bisect_right(_EXTRA_FIRST, u) - 1
    return i >= 0 and u <= _EXTRA_ALNUM[i][1]


def to_lowercase(c):
    """Rust's `char::to_lowercase` for the character `c`, as a string (one or more chars)."""
    if c >= "\u1c89":
        u = ord(c)
        for first, last, offset in _LOWER_AFTER_14:
            if first <= u <= last:
                return chr(u + offset)
    return c.lower()


def words(text):
    """The lowercased words of `text` (step 1)."""
    out, word = [], []
    for c in text:
        if is_alphanumeric(c):
            word.append(to_lowercase(c))
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    return out


def features(text):
    """The features of `text` before hashing, in the recipe's order (with repeats)."""
    ws = words(text)
    out = ["W" + w for w in ws]
    out += ["B" + a + " " + b for a, b in zip(ws, ws[1:])]
    for w in ws:
        chars = "<" + w[:MAX_WORD_CHARS] + ">"
        for n in CHAR_NGRAMS:
            out += ["C" + chars[i:i + n] for i in range(len(chars) - n + 1)]
    return out


def fnv1a32(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def feature_id(feature, buckets):
    """The id of one feature string in a table of `buckets` rows (1..buckets)."""
    return 1 + fnv1a32(feature.encode("utf-8")) % (max(int(buckets), 2) - 1)


def ngram_ids(text, buckets, max):
    """`text`'s n-gram ids: at most `max` distinct ids in 1..buckets, unpadded."""
    seen, out = set(), []
    for f in features(text):
        if len(out) >= max:
            break
        i = feature_id(f, buckets)
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def padded(rows, buckets, max):
    """numpy int64 [len(rows), max]: each row's ids, cut to `max` and padded with 0. A row is
    a text (hashed with `buckets`) or a list of ids (`buckets` unused, may be None)."""
    import numpy as np

    out = np.zeros((len(rows), max), dtype=np.int64)
    for r, row in enumerate(rows):
        ids = ngram_ids(row, buckets, max) if isinstance(row, str) else list(row)[:max]
        out[r, :len(ids)] = ids
    return out


def _ranges(flags):
    """[[first, last], ...] of the code points whose flag is true."""
    out = []
    for u, f in enumerate(flags):
        if f:
            if out and out[-1][1] == u - 1:
                out[-1][1] = u
            else:
                out.append([u, u])
    return out


def unicode_table():
    """Both character functions over every code point (surrogates excluded), and Python's
    own `str.isalnum`/`str.lower` for comparison: what the Rust test checks and, when they
    disagree, rebuilds this file's tables from."""
    chars = [chr(u) if not 0xD800 <= u <= 0xDFFF else None for u in range(0x110000)]
    alnum = _ranges(c is not None and is_alphanumeric(c) for c in chars)
    isalnum = _ranges(c is not None and c.isalnum() for c in chars)
    lower = {u: to_lowercase(c) for u, c in enumerate(chars) if c is not None and to_lowercase(c) != c}
    str_lower = {u: c.lower() for u, c in enumerate(chars) if c is not None and c.lower() != c}
    return {"unicode": unicodedata.unidata_version, "alnum": alnum, "isalnum": isalnum,
            "lower": [[u, s] for u, s in lower.items()],
            "str_lower": [[u, s] for u, s in str_lower.items()]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--buckets", type=int, help="the manifest's ngrams.buckets")
    p.add_argument("--max", type=int, help="the manifest's ngrams.max")
    p.add_argument("--padded", action="store_true", help="print rows padded with 0 to --max")
    p.add_argument("--unicode-table", action="store_true", help="print the character tables as JSON")
    a = p.parse_args()
    if a.unicode_table:
        json.dump(unicode_table(), sys.stdout, ensure_ascii=False)
        print()
        return
    if a.buckets is None or a.max is None:
        p.error("--buckets and --max are needed")
    # Lines split at "\n" only (str.splitlines would also split at U+2028, U+0085, ...).
    text = sys.stdin.buffer.read().decode("utf-8")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    out = sys.stdout
    for line in lines:
        ids = ngram_ids(line, a.buckets, a.max)
        if a.padded:
            ids = ids + [0] * (a.max - len(ids))
        out.write(json.dumps(ids) + "\n")


if __name__ == "__main__":
    main()
