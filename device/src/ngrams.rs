//! Text -> hashed n-gram ids, the model's `ngram_ids` input (bundles with
//! [`bundle::NgramSpec`]).
//!
//! The token ids carry WordPiece pieces; a word the vocabulary never saw breaks into
//! pieces whose vectors say little. The n-gram ids carry what a linear TF-IDF baseline
//! reads: the whole words, adjacent word pairs and the character 2-5-grams of every word
//! with its boundaries (`<word>`), so an unseen word ("attic", "douse", a new city) still
//! shares most of its n-grams with words seen in training. The model averages one learnt
//! vector per id and adds it to the attention-pooled text vector (`docs/model.md`).
//!
//! The recipe, defined once here for training (the host calls it) and for the board:
//!
//! 1. Lowercase the text (Unicode `to_lowercase`); words are maximal runs of alphanumeric
//!    characters (`char::is_alphanumeric`: letters, digits, CJK ideographs; a run of
//!    Chinese without spaces is one word).
//! 2. Features in this order: every word (`W` + word), every adjacent pair (`B` + word +
//!    space + word), then every character n-gram, n = 2..=5, of `<` + word + `>` (`C` +
//!    n-gram), word by word; a word's n-grams stop at [`MAX_WORD_CHARS`] characters.
//! 3. Each feature's UTF-8 bytes (kind letter first) hash with 32-bit FNV-1a to
//!    `1 + h % (buckets - 1)`; 0 is the padding id. Repeated ids are kept once, in order
//!    of first appearance, and the first `max` are the text's ids.
//!
//! `tools/scripts/ngram_ids.py` is the same recipe in Python (for onnxruntime); a test
//! compares the two on the demo texts.

use bundle::NgramSpec;

use crate::tokenize::fnv1a32;

/// Smallest and largest character n-gram.
pub const CHAR_NGRAMS: std::ops::RangeInclusive<usize> = 2..=5;
/// Characters of a word that give character n-grams (a long run of CJK text is one word).
pub const MAX_WORD_CHARS: usize = 32;

/// The words of a text, lowercased (step 1 of the module's recipe).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The features of a text before hashing, in the recipe's order (with repeats).
pub fn features(text: &str) -> Vec<String> {
    let words = words(text);
    let mut out: Vec<String> = words.iter().map(|w| format!("W{w}")).collect();
    out.extend(words.windows(2).map(|p| format!("B{} {}", p[0], p[1])));
    for w in &words {
        let chars: Vec<char> = std::iter::once('<')
            .chain(w.chars().take(MAX_WORD_CHARS))
            .chain(std::iter::once('>'))
            .collect();
        for n in CHAR_NGRAMS {
            for g in chars.windows(n) {
                let mut f = String::with_capacity(1 + 4 * n);
                f.push('C');
                f.extend(g);
                out.push(f);
            }
        }
    }
    out
}

/// The id of one feature string in a table of `buckets` rows (`1..buckets`).
pub fn feature_id(feature: &str, buckets: u32) -> i64 {
    1 + i64::from(fnv1a32(feature.as_bytes()) % (buckets.max(2) - 1))
}

/// A text's `ngram_ids`: at most `spec.max` distinct ids in `1..spec.buckets`, unpadded.
///
/// The same ids as hashing each string of [`features`] with [`feature_id`], computed
/// without building the strings (this runs on every query on the board).
pub fn ngram_ids(text: &str, spec: &NgramSpec) -> Vec<i64> {
    let words = words(text);
    let mut ids = IdSet::new(spec);
    // Words, then adjacent pairs: `W` + word, `B` + word + ' ' + word.
    for w in &words {
        ids.push(fnv_extend(fnv1a32(b"W"), w.as_bytes()));
    }
    for p in words.windows(2) {
        let h = fnv_extend(fnv1a32(b"B"), p[0].as_bytes());
        ids.push(fnv_extend(fnv_extend(h, b" "), p[1].as_bytes()));
    }
    // Character n-grams of `<word>`: each character's UTF-8 bytes, hashed window by window.
    let mut chars: Vec<([u8; 4], usize)> = Vec::new();
    for w in &words {
        chars.clear();
        let mut put = |c: char| {
            let mut b = [0u8; 4];
            let n = c.encode_utf8(&mut b).len();
            chars.push((b, n));
        };
        put('<');
        w.chars().take(MAX_WORD_CHARS).for_each(&mut put);
        put('>');
        for n in CHAR_NGRAMS {
            for g in chars.windows(n) {
                let h = g
                    .iter()
                    .fold(fnv1a32(b"C"), |h, (b, len)| fnv_extend(h, &b[..*len]));
                ids.push(h);
            }
        }
    }
    ids.into_vec()
}

/// FNV-1a continued over `bytes` from the state `h`.
fn fnv_extend(mut h: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The distinct ids of one text in order of first appearance, at most `max`.
struct IdSet {
    out: Vec<i64>,
    max: usize,
    buckets: u32,
    /// One bit per id for tables up to 2^16 rows (8 kB), else a hash set.
    bits: Vec<u64>,
    set: std::collections::HashSet<i64>,
}

impl IdSet {
    const BITSET_ROWS: u32 = 1 << 16;

    fn new(spec: &NgramSpec) -> IdSet {
        let bits = if spec.buckets <= Self::BITSET_ROWS {
            vec![0u64; (spec.buckets as usize).div_ceil(64)]
        } else {
            Vec::new()
        };
        IdSet {
            out: Vec::with_capacity(spec.max.min(512)),
            max: spec.max,
            buckets: spec.buckets.max(2),
            bits,
            set: std::collections::HashSet::new(),
        }
    }

    /// Adds the id of a feature hash, unless it is there already or the set is full.
    fn push(&mut self, hash: u32) {
        if self.out.len() == self.max {
            return;
        }
        let id = 1 + i64::from(hash % (self.buckets - 1));
        let new = if self.bits.is_empty() {
            self.set.insert(id)
        } else {
            let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
            let new = self.bits[word] & bit == 0;
            self.bits[word] |= bit;
            new
        };
        if new {
            self.out.push(id);
        }
    }

    fn into_vec(self) -> Vec<i64> {
        self.out
    }
}

/// Rows of `ngram_ids` padded with 0 to `spec.max`, row-major `[rows, spec.max]`.
pub fn padded<R: AsRef<[i64]>>(rows: &[R], spec: &NgramSpec) -> Vec<i64> {
    let mut out = Vec::with_capacity(rows.len() * spec.max);
    for r in rows {
        let r = r.as_ref();
        let r = &r[..r.len().min(spec.max)];
        out.extend_from_slice(r);
        out.extend(std::iter::repeat_n(0, spec.max - r.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: NgramSpec = NgramSpec {
        buckets: 4096,
        max: 256,
    };

    #[test]
    fn words_are_lowercased_alphanumeric_runs() {
        assert_eq!(
            words("Turn ON the lights!"),
            ["turn", "on", "the", "lights"]
        );
        assert_eq!(words("what's 6:30"), ["what", "s", "6", "30"]);
        assert_eq!(words("打开客厅的灯，谢谢"), ["打开客厅的灯", "谢谢"]);
        assert!(words("  ?! ").is_empty());
    }

    #[test]
    fn features_follow_the_recipe() {
        let f = features("Hi yo");
        assert_eq!(&f[..3], ["Whi", "Wyo", "Bhi yo"]);
        // "<hi>": 3 bigrams, 2 trigrams, 1 four-gram, no five-gram; then "<yo>" the same.
        assert_eq!(&f[3..9], ["C<h", "Chi", "Ci>", "C<hi", "Chi>", "C<hi>"]);
        assert_eq!(f.len(), 3 + 2 * 6);
    }

    #[test]
    fn ids_are_distinct_in_range_and_capped() {
        let ids = ngram_ids("the the the kitchen lights in the kitchen", &SPEC);
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        assert!(ids.iter().all(|&i| (1..4096).contains(&i)));
        let small = NgramSpec { buckets: 2, max: 3 };
        assert_eq!(ngram_ids("anything at all", &small), [1]);
        let capped = NgramSpec {
            buckets: 1 << 20,
            max: 5,
        };
        assert_eq!(ngram_ids("a much longer text than five", &capped).len(), 5);
        assert!(ngram_ids("", &SPEC).is_empty());
    }

    #[test]
    fn an_unseen_word_shares_most_ngrams_with_a_seen_one() {
        let a: std::collections::HashSet<_> = ngram_ids("lamps", &SPEC).into_iter().collect();
        let b: std::collections::HashSet<_> = ngram_ids("lamp", &SPEC).into_iter().collect();
        assert!(a.intersection(&b).count() >= 6, "{a:?} {b:?}");
    }

    #[test]
    fn padding_fills_rows_with_zero() {
        let spec = NgramSpec {
            buckets: 10,
            max: 3,
        };
        assert_eq!(
            padded(&[vec![4, 5], vec![1, 2, 3, 9]], &spec),
            [4, 5, 0, 1, 2, 3]
        );
    }

    #[test]
    fn ids_are_the_hashed_feature_strings() {
        for spec in [
            SPEC,
            NgramSpec {
                buckets: 1 << 20,
                max: 4096,
            },
            NgramSpec { buckets: 7, max: 5 },
        ] {
            for text in [
                "Turn ON the kitchen lights, please!",
                "打开客厅的灯，谢谢 and the 2nd lamp",
                "Ünïcödé ßtraße İstanbul ΟΔΟΣ 🙂",
                "a b",
                "",
            ] {
                let mut want = Vec::new();
                for f in features(text) {
                    let id = feature_id(&f, spec.buckets);
                    if want.len() < spec.max && !want.contains(&id) {
                        want.push(id);
                    }
                }
                assert_eq!(ngram_ids(text, &spec), want, "{text:?} {spec:?}");
            }
        }
    }

    #[test]
    fn ids_are_stable() {
        // Golden values (computed independently, in Python): the board, the host and
        // tools/scripts/ngram_ids.py must hash identically.
        assert_eq!(feature_id("Whi", 1 << 20), 23234);
        assert_eq!(feature_id("C打开", 4096), 424);
    }
}
