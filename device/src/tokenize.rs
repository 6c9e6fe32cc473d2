//! Text -> token ids, identically on the host (training data) and on the board.
//!
//! [`TextEncoder`] wraps the bundle's exact `tokenizer.json` (WordPiece training is not
//! deterministic, so the board must use the very file training used) and overrides the
//! length handling the json may carry: truncation to the model's `max_len` is set here,
//! in code, keeping `[CLS] … [SEP]`, and padding is switched off (pretrained tokenizer
//! files often fix both at 128). Batches are padded by [`TextEncoder::batch`] instead,
//! to the longest text of the batch, with mask 0 on the pads.
//!
//! A bundle with [`NgramSpec`] (format 3) also feeds the model the text's hashed n-grams
//! ([`crate::ngrams`]); the encoder carries the spec so that every text it encodes gets
//! them, computed from the original text (not the tokens).
//!
//! **CJK fallback.** A vocabulary that ends in the reserved tokens `[CJK000]`, `[CJK001]`,
//! … (K of them, consecutive ids; `host::tokenizer` adds them when the training texts
//! contain CJK ideographs) turns on a fallback for CJK ideographs the vocabulary lacks:
//! instead of `[UNK]`, such a character gets the id of `[CJK{b:03}]` with
//! `b = fnv1a32(UTF-8 bytes of the character) % K`, and its token string is the character
//! itself (so `top_tokens` shows it). Only a `[UNK]` whose text is exactly one CJK
//! ideograph (the ranges BERT's normaliser isolates) is replaced; everything else is as
//! the `tokenizers` library encodes it. Tokenizers without these tokens are unaffected.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{DeviceError, Result};
use bundle::{NgramSpec, VerifiedBundle, MAX_MAX_LEN, MIN_MAX_LEN};

/// Token names treated as special besides what the post-processor marks.
const SPECIAL_TOKENS: [&str; 3] = ["[CLS]", "[SEP]", "[PAD]"];
/// Padding token name; its id fills padded positions.
const PAD_TOKEN: &str = "[PAD]";

/// One encoded text, at most `max_len` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, as the model's `input_ids` take them.
    pub ids: Vec<i64>,
    /// Token strings (WordPiece continuations keep their `##`).
    pub tokens: Vec<String>,
    /// True for `[CLS]`, `[SEP]`, `[PAD]` and anything the post-processor added.
    pub special: Vec<bool>,
    /// The text's `ngram_ids`, unpadded (empty when the encoder has no [`NgramSpec`]).
    pub ngrams: Vec<i64>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The bundle's tokenizer with the model's length limit applied.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    max_len: usize,
    pad_id: i64,
    special_ids: BTreeSet<u32>,
    /// The ASCII fast path, when the tokenizer is the plain BERT WordPiece pipeline and the
    /// fast path reproduced the library on every probe text at load.
    fast: Option<Arc<FastWordPiece>>,
    /// The CJK fallback, when the vocabulary reserves `[CJK000]`… (see the module docs).
    cjk: Option<CjkFallback>,
    /// The model's `ngram_ids` input, when it has one.
    ngrams: Option<NgramSpec>,
}

/// Name of the first reserved CJK fallback token; the others count up (`[CJK001]`, …).
pub fn cjk_fallback_token(bucket: usize) -> String {
    format!("[CJK{bucket:03}]")
}

/// The CJK fallback of a tokenizer: `[UNK]`'s id and the reserved ids `base..base + buckets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CjkFallback {
    pub unk: u32,
    pub base: u32,
    pub buckets: u32,
}

impl CjkFallback {
    /// Reads the reserved tokens of a tokenizer: `[CJK000]` and the consecutive ids after
    /// it; none (no fallback) without `[CJK000]` or `[UNK]`.
    pub fn of(tokenizer: &Tokenizer) -> Option<CjkFallback> {
        let unk = tokenizer.token_to_id("[UNK]")?;
        let base = tokenizer.token_to_id(&cjk_fallback_token(0))?;
        let mut buckets = 1u32;
        while tokenizer.token_to_id(&cjk_fallback_token(buckets as usize)) == Some(base + buckets) {
            buckets += 1;
        }
        Some(CjkFallback { unk, base, buckets })
    }

    /// The fallback id of a CJK ideograph (any character: callers check [`is_cjk_ideograph`]).
    pub fn id_of(&self, c: char) -> u32 {
        let mut buf = [0u8; 4];
        self.base + fnv1a32(c.encode_utf8(&mut buf).as_bytes()) % self.buckets
    }
}

/// 32-bit FNV-1a.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The CJK ideograph ranges BERT's normaliser puts spaces around (one token each).
pub fn is_cjk_ideograph(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

impl TextEncoder {
    /// Loads the tokenizer of a verified bundle with the manifest's `max_len` and n-gram
    /// spec (checked when the manifest was read).
    pub fn from_bundle(bundle: &VerifiedBundle) -> Result<TextEncoder> {
        let manifest = bundle.manifest();
        Ok(Self::load(
            bundle.tokenizer_bytes(),
            manifest.max_len,
            bundle.origin(bundle::TOKENIZER_FILE),
        )?
        .with_ngrams(manifest.ngrams))
    }

    /// Loads a tokenizer from `tokenizer.json` bytes (the host's path: training data and
    /// export use this with the file that goes into the bundle).
    pub fn from_bytes(json: &[u8], max_len: usize) -> Result<TextEncoder> {
        Self::load(json, max_len, "tokenizer.json bytes".into())
    }

    fn load(json: &[u8], max_len: usize, origin: String) -> Result<TextEncoder> {
        let err = |problem: String| DeviceError::Tokenizer {
            origin: origin.clone(),
            problem,
        };
        if !(MIN_MAX_LEN..=MAX_MAX_LEN).contains(&max_len) {
            return Err(err(format!(
                "max_len {max_len} is outside {MIN_MAX_LEN}..={MAX_MAX_LEN}"
            )));
        }
        let mut tokenizer =
            Tokenizer::from_bytes(json).map_err(|e| err(format!("invalid tokenizer.json: {e}")))?;
        let added = tokenizer.get_post_processor().map_or(0, |p| {
            use tokenizers::PostProcessor;
            p.added_tokens(false)
        });
        if added >= max_len {
            return Err(err(format!(
                "max_len {max_len} leaves no room next to the {added} tokens the post-processor adds"
            )));
        }
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| err(format!("setting truncation: {e}")))?;
        tokenizer.with_padding(None);

        let mut special_ids: BTreeSet<u32> = SPECIAL_TOKENS
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        special_ids.extend(
            tokenizer
                .get_added_tokens_decoder()
                .iter()
                .filter(|(_, t)| SPECIAL_TOKENS.contains(&t.content.as_str()))
                .map(|(id, _)| *id),
        );
        let pad_id = tokenizer.token_to_id(PAD_TOKEN).unwrap_or(0) as i64;
        let cjk = CjkFallback::of(&tokenizer);
        let mut encoder = TextEncoder {
            tokenizer,
            max_len,
            pad_id,
            special_ids,
            fast: None,
            cjk,
            ngrams: None,
        };
        encoder.fast = FastWordPiece::new(json, &encoder).map(Arc::new);
        // A tokenizer that turns "" into nothing would feed the model an empty sequence.
        let empty = encoder.encode("").map_err(|e| err(e.to_string()))?;
        if empty.is_empty() {
            return Err(err(
                "encodes empty text to zero tokens: it needs a post-processor adding [CLS]/[SEP]"
                    .into(),
            ));
        }
        Ok(encoder)
    }

    /// Maximum tokens per text, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Id used on padded positions (`[PAD]`, or 0 if the vocabulary has none).
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The underlying tokenizer, configured (truncation on, padding off).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The CJK fallback, when the vocabulary has one.
    pub fn cjk_fallback(&self) -> Option<CjkFallback> {
        self.cjk
    }

    /// The same encoder giving every text its `ngram_ids` under `spec` (None: none). The
    /// host builds encoders from bytes and sets the spec it trains the model with.
    pub fn with_ngrams(mut self, spec: Option<NgramSpec>) -> TextEncoder {
        self.ngrams = spec;
        self
    }

    /// The n-gram spec texts are encoded with, if the model takes `ngram_ids`.
    pub fn ngram_spec(&self) -> Option<NgramSpec> {
        self.ngrams
    }

    /// The model's inputs for `encoded`: tokens right-padded to the longest with the pad
    /// id and mask 0 ([`Batch::from_encoded`]), and with an [`NgramSpec`] the n-gram rows
    /// padded with 0 to its width.
    pub fn batch(&self, encoded: &[Encoded]) -> Batch {
        let mut batch = Batch::from_encoded(encoded, self.pad_id);
        if let Some(spec) = &self.ngrams {
            let rows: Vec<&[i64]> = encoded.iter().map(|e| e.ngrams.as_slice()).collect();
            batch.ngram_ids = crate::ngrams::padded(&rows, spec);
            batch.ngram_width = spec.max;
        }
        batch
    }

    /// `text`'s n-gram ids (none without a spec).
    fn ngrams_of(&self, text: &str) -> Vec<i64> {
        self.ngrams
            .as_ref()
            .map_or_else(Vec::new, |spec| crate::ngrams::ngram_ids(text, spec))
    }

    /// The same encoder without the ASCII fast path (every text through `tokenizers`;
    /// for comparisons).
    pub fn without_fast_path(mut self) -> TextEncoder {
        self.fast = None;
        self
    }

    /// True when plain-ASCII texts take the fast path (see [`FastWordPiece`]).
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Encodes one text with special tokens, truncated to `max_len` (`[CLS]`/`[SEP]` kept).
    /// Empty text gives `[CLS] [SEP]`; control characters are removed by the normalizer.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let fast = self
            .fast
            .as_ref()
            .and_then(|f| f.encode(text, self.max_len, &self.special_ids));
        let mut e = match fast {
            Some(e) => e,
            None => self.tokens_slow(text)?,
        };
        e.ngrams = self.ngrams_of(text);
        Ok(e)
    }

    /// [`encode`](Self::encode) through the `tokenizers` library only (no fast path).
    pub fn encode_slow(&self, text: &str) -> Result<Encoded> {
        let mut e = self.tokens_slow(text)?;
        e.ngrams = self.ngrams_of(text);
        Ok(e)
    }

    /// The tokens of `text` through the `tokenizers` library (no n-grams).
    fn tokens_slow(&self, text: &str) -> Result<Encoded> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| DeviceError::Encode(e.to_string()))?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        let special = enc
            .get_ids()
            .iter()
            .zip(enc.get_special_tokens_mask())
            .map(|(id, &m)| m == 1 || self.special_ids.contains(id))
            .collect();
        let mut tokens = enc.get_tokens().to_vec();
        if let Some(cjk) = &self.cjk {
            for (i, &(start, end)) in enc.get_offsets().iter().enumerate() {
                if ids[i] != i64::from(cjk.unk) {
                    continue;
                }
                let mut chars = text.get(start..end).unwrap_or("").chars();
                if let (Some(c), None) = (chars.next(), chars.next()) {
                    if is_cjk_ideograph(c) {
                        ids[i] = i64::from(cjk.id_of(c));
                        tokens[i] = c.to_string();
                    }
                }
            }
        }
        if ids.len() > self.max_len {
            return Err(DeviceError::Encode(format!(
                "{} tokens after truncation to {}",
                ids.len(),
                self.max_len
            )));
        }
        Ok(Encoded {
            ids,
            tokens,
            special,
            ngrams: Vec::new(),
        })
    }

    /// Encodes texts one by one (sequentially: no thread pool on a small board), unpadded.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        texts.iter().map(|t| self.encode(t)).collect()
    }
}

/// The BERT WordPiece pipeline for plain-ASCII text, without the `tokenizers` machinery
/// (added-token matching, alignment tracking, per-piece allocation): 5-10x faster on a
/// short query. Used only when `tokenizer.json` is exactly BertNormalizer (clean_text,
/// lowercase) + BertPreTokenizer + WordPiece (`##`) + a `[CLS] … [SEP]` post-processor
/// with bracketed added tokens, and only for texts of printable ASCII and whitespace
/// without `[` (so no added token can match); anything else goes to the library. For
/// such text the normaliser only drops control characters, maps whitespace to spaces and
/// lowercases (NFD and accent stripping are identities on ASCII, there are no CJK
/// characters), the pre-tokeniser splits on spaces and isolates ASCII punctuation, and
/// WordPiece is greedy longest-match with `##` continuations. At load the fast path must
/// reproduce the library on a set of probe texts, or it is not used.
#[derive(Debug)]
struct FastWordPiece {
    vocab: HashMap<String, u32>,
    unk: (u32, String),
    cls: (u32, String),
    sep: (u32, String),
    max_chars: usize,
}

/// Texts the fast path must reproduce exactly before it is trusted.
const FAST_PATH_PROBES: [&str; 16] = [
    "",
    "  ",
    "The cat sat on the mat!",
    "Hello, World... it's 5:30pm; (ok?) #tag @me $5 100% a+b=c ~x^y `q` {z} |w| <v> \\ /",
    "UPPERCASE lower MiXeD 123 4.56 7,890",
    "tab\tsep\nnew line\r\nend",
    "ctrl\u{1}chars\u{7f}inside wo\u{0}rd",
    "##hash ##tags and under_scores and dash-es",
    "playing played plays unknownwordxyz qqqq zzzz",
    "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!???...,,,",
    "what's the weather like in new york tomorrow morning",
    "play the song by the beatles on spotify please",
    "set an alarm for 7 am",
    "x",
];

impl FastWordPiece {
    fn new(json: &[u8], enc: &TextEncoder) -> Option<FastWordPiece> {
        let j: serde_json::Value = serde_json::from_slice(json).ok()?;
        let norm = &j["normalizer"];
        let plain = norm["type"] == "BertNormalizer"
            && norm["clean_text"] == true
            && norm["lowercase"] == true
            && j["pre_tokenizer"]["type"] == "BertPreTokenizer"
            && j["model"]["type"] == "WordPiece"
            && j["model"]["continuing_subword_prefix"] == "##"
            && matches!(
                j["post_processor"]["type"].as_str(),
                Some("BertProcessing" | "TemplateProcessing")
            );
        let added_bracketed = j["added_tokens"].as_array().is_none_or(|a| {
            a.iter()
                .all(|t| t["content"].as_str().is_some_and(|c| c.starts_with('[')))
        });
        if !plain || !added_bracketed {
            return None;
        }
        let vocab: HashMap<String, u32> = j["model"]["vocab"]
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.clone(), u32::try_from(v.as_u64()?).ok()?)))
            .collect::<Option<_>>()?;
        let unk_token = j["model"]["unk_token"].as_str()?.to_string();
        let unk = (*vocab.get(&unk_token)?, unk_token);
        let max_chars = usize::try_from(j["model"]["max_input_chars_per_word"].as_u64()?).ok()?;
        let empty = enc.encode_slow("").ok()?;
        if empty.len() != 2 {
            return None;
        }
        let cls = (u32::try_from(empty.ids[0]).ok()?, empty.tokens[0].clone());
        let sep = (u32::try_from(empty.ids[1]).ok()?, empty.tokens[1].clone());
        let fast = FastWordPiece {
            vocab,
            unk,
            cls,
            sep,
            max_chars,
        };
        let vocab_text = TINY_PROBE_WORDS.join(" ");
        let probes = FAST_PATH_PROBES
            .iter()
            .map(|p| unescape(p))
            .chain(std::iter::once(vocab_text));
        for p in probes {
            let want = enc.encode_slow(&p).ok()?;
            if fast.encode(&p, enc.max_len, &enc.special_ids).as_ref() != Some(&want) {
                return None;
            }
        }
        Some(fast)
    }

    /// None when the text is outside the fast path's domain.
    fn encode(&self, text: &str, max_len: usize, special: &BTreeSet<u32>) -> Option<Encoded> {
        let b = text.as_bytes();
        if !b
            .iter()
            .all(|&c| (c.is_ascii() && c != b'[') || c == b'\t' || c == b'\n' || c == b'\r')
        {
            return None;
        }
        let budget = max_len.checked_sub(2)?;
        let mut ids: Vec<u32> = Vec::with_capacity(16);
        let mut tokens: Vec<String> = Vec::with_capacity(16);
        ids.push(self.cls.0);
        tokens.push(self.cls.1.clone());
        let mut word = String::with_capacity(32);
        let mut scratch = String::with_capacity(40);
        for &c in b {
            if ids.len() > budget && word.is_empty() {
                break;
            }
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => {
                    self.word_pieces(&word, &mut scratch, &mut ids, &mut tokens);
                    word.clear();
                }
                0..=0x1f | 0x7f => {}
                c if c.is_ascii_punctuation() => {
                    self.word_pieces(&word, &mut scratch, &mut ids, &mut tokens);
                    word.clear();
                    word.push(c as char);
                    self.word_pieces(&word, &mut scratch, &mut ids, &mut tokens);
                    word.clear();
                }
                c => word.push(c.to_ascii_lowercase() as char),
            }
        }
        self.word_pieces(&word, &mut scratch, &mut ids, &mut tokens);
        ids.truncate(budget + 1);
        tokens.truncate(budget + 1);
        ids.push(self.sep.0);
        tokens.push(self.sep.1.clone());
        let last = ids.len() - 1;
        let special = ids
            .iter()
            .enumerate()
            .map(|(i, id)| i == 0 || i == last || special.contains(id))
            .collect();
        Some(Encoded {
            ids: ids.into_iter().map(i64::from).collect(),
            tokens,
            special,
            ngrams: Vec::new(),
        })
    }

    /// Greedy longest-match WordPiece of one (ASCII, lowercased) word; `[UNK]` for a word
    /// longer than `max_chars` or with a piece not in the vocabulary.
    fn word_pieces(
        &self,
        word: &str,
        scratch: &mut String,
        ids: &mut Vec<u32>,
        tokens: &mut Vec<String>,
    ) {
        if word.is_empty() {
            return;
        }
        let mark = ids.len();
        if word.len() <= self.max_chars {
            let mut start = 0;
            while start < word.len() {
                let mut end = word.len();
                let mut found = None;
                while start < end {
                    let piece = if start > 0 {
                        scratch.clear();
                        scratch.push_str("##");
                        scratch.push_str(&word[start..end]);
                        scratch.as_str()
                    } else {
                        &word[start..end]
                    };
                    if let Some((k, &id)) = self.vocab.get_key_value(piece) {
                        found = Some((id, k));
                        break;
                    }
                    end -= 1;
                }
                match found {
                    Some((id, k)) => {
                        ids.push(id);
                        tokens.push(k.clone());
                        start = end;
                    }
                    None => {
                        ids.truncate(mark);
                        tokens.truncate(mark);
                        break;
                    }
                }
            }
            if ids.len() > mark {
                return;
            }
        }
        ids.push(self.unk.0);
        tokens.push(self.unk.1.clone());
    }
}

/// Common words (and pieces) for the probe: they exercise the vocabulary, not edge cases.
const TINY_PROBE_WORDS: [&str; 12] = [
    "book",
    "restaurant",
    "weather",
    "playlist",
    "rating",
    "movie",
    "schedule",
    "turn",
    "lights",
    "kitchen",
    "temperature",
    "alarm",
];

/// `\t`, `\n`, `\r` and `\u{..}` escapes of the probe texts.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('u') => {
                let hex: String = it.by_ref().skip(1).take_while(|&c| c != '}').collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The model's inputs for encoded texts: tokens padded to the batch's longest, row-major
/// `[batch, seq]`, and the n-gram ids, row-major `[batch, ngram_width]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub ids: Vec<i64>,
    /// 1 on real tokens, 0 on padding.
    pub mask: Vec<i64>,
    pub batch: usize,
    pub seq: usize,
    /// The `ngram_ids` input, 0 on padding; empty when `ngram_width` is 0.
    pub ngram_ids: Vec<i64>,
    /// Ids per row of `ngram_ids` (the model's fixed width); 0: the model has no such input.
    pub ngram_width: usize,
}

impl Batch {
    /// The token inputs alone: every row right-padded to the longest with `pad_id` and
    /// mask 0, no n-grams ([`TextEncoder::batch`] adds them for a model that takes them).
    pub fn from_encoded(encoded: &[Encoded], pad_id: i64) -> Batch {
        let batch = encoded.len();
        let seq = encoded.iter().map(Encoded::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch * seq);
        let mut mask = Vec::with_capacity(batch * seq);
        for e in encoded {
            ids.extend_from_slice(&e.ids);
            ids.extend(std::iter::repeat_n(pad_id, seq - e.len()));
            mask.extend(std::iter::repeat_n(1, e.len()));
            mask.extend(std::iter::repeat_n(0, seq - e.len()));
        }
        Batch {
            ids,
            mask,
            batch,
            seq,
            ngram_ids: Vec::new(),
            ngram_width: 0,
        }
    }
}

/// A tiny BERT-style WordPiece tokenizer built in code, for tests here and in the host.
#[doc(hidden)]
pub mod testing {
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::normalizers::BertNormalizer;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::processors::bert::BertProcessing;
    use tokenizers::{AddedToken, Tokenizer};

    /// Vocabulary of [`tiny_tokenizer_json`]: `[PAD]`=0 `[UNK]`=1 `[CLS]`=2 `[SEP]`=3
    /// `[MASK]`=4, then some words and pieces.
    pub const TINY_VOCAB: [&str; 24] = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog",
        "ran", "a", "fast", "slow", "play", "##ing", "##s", "##ed", "!", ",", ".", "cafe", "is",
    ];

    /// json of a tiny WordPiece tokenizer (BertNormalizer with everything on,
    /// BertPreTokenizer, BertProcessing), as the host's tokenizer training would save it.
    pub fn tiny_tokenizer_json() -> String {
        // `vocab` wants an `AHashMap`, which converts from an array of pairs.
        let vocab: [(String, u32); TINY_VOCAB.len()] =
            std::array::from_fn(|i| (TINY_VOCAB[i].to_string(), i as u32));
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .expect("tiny vocab is valid");
        let mut tok = Tokenizer::new(model);
        tok.with_normalizer(Some(BertNormalizer::new(true, true, Some(true), true)))
            .expect("normalizer");
        tok.with_pre_tokenizer(Some(BertPreTokenizer));
        tok.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), 3),
            ("[CLS]".into(), 2),
        )));
        tok.add_special_tokens(
            ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].map(|t| AddedToken::from(t, true)),
        )
        .expect("special tokens");
        tok.to_string(false).expect("serialise tokenizer")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::tiny_tokenizer_json;
    use super::*;

    fn encoder(max_len: usize) -> TextEncoder {
        TextEncoder::from_bytes(tiny_tokenizer_json().as_bytes(), max_len).unwrap()
    }

    #[test]
    fn encodes_with_cls_and_sep() {
        let e = encoder(16).encode("The cat sat on the mat!").unwrap();
        assert_eq!(
            e.tokens,
            ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "!", "[SEP]"]
        );
        assert_eq!(e.ids, [2, 5, 6, 7, 8, 5, 9, 19, 3]);
        assert!(e.special[0] && e.special[8]);
        assert!(e.special[1..8].iter().all(|s| !s));
    }

    #[test]
    fn empty_text_is_cls_sep() {
        let e = encoder(16).encode("").unwrap();
        assert_eq!(e.tokens, ["[CLS]", "[SEP]"]);
        assert_eq!(e.special, [true, true]);
        let e = encoder(16).encode("   \t\n ").unwrap();
        assert_eq!(e.tokens, ["[CLS]", "[SEP]"]);
    }

    #[test]
    fn truncation_keeps_cls_sep_and_max_len() {
        let enc = encoder(5);
        let e = enc.encode("the cat sat on the mat the dog ran").unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(e.tokens, ["[CLS]", "the", "cat", "sat", "[SEP]"]);
        for n in 0..40 {
            let text = "playing dogs ".repeat(n);
            let e = enc.encode(&text).unwrap();
            assert!(e.len() <= 5);
            assert_eq!(e.tokens.first().unwrap(), "[CLS]");
            assert_eq!(e.tokens.last().unwrap(), "[SEP]");
        }
    }

    #[test]
    fn json_padding_and_truncation_are_overridden() {
        let mut v: serde_json::Value = serde_json::from_str(&tiny_tokenizer_json()).unwrap();
        v["truncation"] = serde_json::json!({"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0});
        v["padding"] = serde_json::json!({"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"});
        let enc = TextEncoder::from_bytes(v.to_string().as_bytes(), 8).unwrap();
        assert_eq!(enc.encode("the cat").unwrap().len(), 4);
        assert_eq!(
            enc.encode("the cat sat on the mat the dog").unwrap().len(),
            8
        );
    }

    #[test]
    fn odd_input_never_panics() {
        let enc = encoder(8);
        for text in [
            "\u{0}\u{1}\u{7f}cat\u{200b}",
            "CAFÉ is playing",
            "🦀🦀 漢字 dog",
            "[CLS] [SEP] [PAD] cat",
            &"x".repeat(10_000),
        ] {
            let e = enc.encode(text).unwrap();
            assert!((2..=8).contains(&e.len()), "{text:?}: {:?}", e.tokens);
        }
        let e = enc.encode("\u{0}\u{1}cat\u{7}").unwrap();
        assert_eq!(e.tokens, ["[CLS]", "cat", "[SEP]"]);
        let e = enc.encode("CAFÉ is playing").unwrap();
        assert_eq!(e.tokens, ["[CLS]", "cafe", "is", "play", "##ing", "[SEP]"]);
        let e = enc.encode("[PAD] cat").unwrap();
        assert_eq!(e.special, [true, true, false, true]);
    }

    #[test]
    fn batch_pads_with_mask_zero() {
        let enc = encoder(16);
        let encs = enc
            .encode_batch(&["the cat", "", "a dog ran fast"])
            .unwrap();
        let b = Batch::from_encoded(&encs, enc.pad_id());
        assert_eq!((b.batch, b.seq), (3, 6));
        assert_eq!(&b.ids[6..12], &[2, 3, 0, 0, 0, 0]);
        assert_eq!(&b.mask[0..6], &[1, 1, 1, 1, 0, 0]);
        assert_eq!(&b.mask[12..18], &[1; 6]);
    }

    #[test]
    fn an_encoder_with_ngrams_gives_each_text_its_ngram_ids() {
        let spec = NgramSpec {
            buckets: 1000,
            max: 6,
        };
        let plain = encoder(16);
        assert!(plain.ngram_spec().is_none());
        assert!(plain.encode("the cat").unwrap().ngrams.is_empty());
        let enc = plain.with_ngrams(Some(spec));
        assert_eq!(enc.ngram_spec(), Some(spec));
        // From the original text: the fast path, the library, CJK text alike.
        for text in ["The cat sat", "CAFÉ is playing", "打开 the 灯", ""] {
            let e = enc.encode(text).unwrap();
            assert_eq!(e.ngrams, crate::ngrams::ngram_ids(text, &spec), "{text}");
            assert_eq!(e, enc.encode_slow(text).unwrap(), "{text}");
        }
        let encs = enc
            .encode_batch(&["the cat", "", "a dog ran fast"])
            .unwrap();
        let b = enc.batch(&encs);
        assert_eq!((b.batch, b.seq, b.ngram_width), (3, 6, 6));
        assert_eq!(b.ngram_ids.len(), 3 * 6);
        assert_eq!(
            &b.ngram_ids[..6],
            &crate::ngrams::padded(&[&encs[0].ngrams], &spec)[..]
        );
        assert_eq!(&b.ngram_ids[6..12], &[0; 6]);
        // The token inputs are those of a batch without n-grams.
        let tokens = Batch::from_encoded(&encs, enc.pad_id());
        assert_eq!((tokens.ngram_width, tokens.ngram_ids.len()), (0, 0));
        assert_eq!((&b.ids, &b.mask), (&tokens.ids, &tokens.mask));
        assert_eq!(encoder(16).batch(&encs), tokens);
    }

    #[test]
    fn fast_path_matches_the_library() {
        let enc = encoder(12);
        assert!(enc.has_fast_path());
        let words = [
            "the",
            "cat",
            "Sat",
            "ON",
            "mat",
            "dogs",
            "playing",
            "played",
            "cafe",
            "is",
            "xyz",
            "!",
            ",",
            ".",
            "?",
            "##s",
            "a-b",
            "qq",
            "\t",
            "\u{1}",
            "  ",
            "fast.slow",
        ];
        let mut seed = 7u64;
        for n in 0..400 {
            let mut text = String::new();
            for _ in 0..(n % 17) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(words[(seed >> 33) as usize % words.len()]);
                if seed & 1 == 0 {
                    text.push(' ');
                }
            }
            assert_eq!(
                enc.encode(&text).unwrap(),
                enc.encode_slow(&text).unwrap(),
                "{text:?}"
            );
        }
        // Outside the fast path's domain: same answers through the library.
        for text in ["[PAD] cat", "CAFÉ is playing", "🦀 dog"] {
            assert_eq!(enc.encode(text).unwrap(), enc.encode_slow(text).unwrap());
        }
    }

    /// The tiny tokenizer plus `灯` and four reserved CJK fallback tokens.
    fn cjk_encoder() -> TextEncoder {
        let mut v: serde_json::Value = serde_json::from_str(&tiny_tokenizer_json()).unwrap();
        let vocab = v["model"]["vocab"].as_object_mut().unwrap();
        let first = vocab.len() as u64;
        for (i, t) in ["灯".to_string()]
            .into_iter()
            .chain((0..4).map(cjk_fallback_token))
            .enumerate()
        {
            vocab.insert(t, (first + i as u64).into());
        }
        TextEncoder::from_bytes(v.to_string().as_bytes(), 32).unwrap()
    }

    #[test]
    fn unseen_cjk_characters_fall_back_to_hashed_reserved_ids() {
        let enc = cjk_encoder();
        let fb = enc.cjk_fallback().unwrap();
        assert_eq!((fb.unk, fb.base, fb.buckets), (1, 25, 4));
        let e = enc.encode("打开 the 灯, 🦀 cat 客厅").unwrap();
        assert_eq!(
            e.tokens,
            ["[CLS]", "打", "开", "the", "灯", ",", "[UNK]", "cat", "客", "厅", "[SEP]"]
        );
        let bucket = |c: char| {
            let mut b = [0u8; 4];
            25 + i64::from(fnv1a32(c.encode_utf8(&mut b).as_bytes()) % 4)
        };
        assert_eq!(
            e.ids,
            [
                2,
                bucket('打'),
                bucket('开'),
                5,
                24,
                20,
                1,
                6,
                bucket('客'),
                bucket('厅'),
                3
            ]
        );
        assert!(e.ids.iter().all(|&i| i <= 28));
        // Offsets are the original text's: accents and control characters before a CJK
        // character do not shift which character is hashed.
        let e = enc.encode("CAFÉ\u{1}打").unwrap();
        assert_eq!(e.tokens, ["[CLS]", "cafe", "打", "[SEP]"]);
        assert_eq!(e.ids[2], bucket('打'));
        // FNV-1a of "a" (a published test vector) pins the hash.
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        // Without the reserved tokens: `[UNK]`, as before.
        let plain = encoder(32);
        assert!(plain.cjk_fallback().is_none());
        assert_eq!(
            plain.encode("打").unwrap().tokens,
            ["[CLS]", "[UNK]", "[SEP]"]
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(TextEncoder::from_bytes(b"{not json", 8).is_err());
        assert!(TextEncoder::from_bytes(tiny_tokenizer_json().as_bytes(), 2).is_err());
    }
}
