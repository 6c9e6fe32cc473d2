//! WordPiece tokenizer training (BERT style) with the `tokenizers` crate.
//!
//! The JSON produced here is saved once in the checkpoint and copied byte for byte into the
//! bundle: the board encodes with exactly the file that trained the model. Training is
//! deterministic (the same texts give the same file), so runs that differ only in their
//! recipe share one vocabulary and can be compared or averaged ([`crate::soup`]).

use std::collections::HashSet;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainerBuilder};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer, TokenizerImpl};

use crate::error::{HostError, Result};

/// The special tokens, in id order 0..=4.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Reserved CJK fallback ids added when the training texts contain CJK ideographs: an
/// ideograph the vocabulary lacks is read as one of these (hashed), not as `[UNK]`
/// (`device::tokenize`, "CJK fallback"). At most this many, and at most a tenth of the
/// requested vocabulary size.
pub const CJK_FALLBACK_BUCKETS: usize = 64;

/// Trains a WordPiece vocabulary of at most `vocab_size` tokens on `texts` and returns the
/// tokenizer as `tokenizer.json` bytes (lower-casing, accent stripping, one token per CJK
/// character, `[CLS] … [SEP]` template). Every character of the texts is in the
/// vocabulary; when they contain CJK ideographs, the last [`CJK_FALLBACK_BUCKETS`] ids are
/// the reserved `[CJK000]`… tokens (see [`CJK_FALLBACK_BUCKETS`]) for ideographs the
/// texts did not contain. (Every
/// character of the texts is kept even when that exceeds `vocab_size`.)
pub fn train_wordpiece(texts: &[&str], vocab_size: usize) -> Result<Vec<u8>> {
    if vocab_size < SPECIAL_TOKENS.len() + 10 {
        return Err(HostError::Invalid(format!(
            "vocabulary size {vocab_size} is too small (minimum 15)"
        )));
    }
    let has_cjk = texts
        .iter()
        .any(|t| t.chars().any(device::tokenize::is_cjk_ideograph));
    let reserved = if has_cjk {
        CJK_FALLBACK_BUCKETS.min(vocab_size / 10)
    } else {
        0
    };
    let vocab_size = vocab_size
        .saturating_sub(reserved)
        .max(SPECIAL_TOKENS.len() + 10);
    let normalizer = BertNormalizer::new(true, true, Some(true), true);
    // Every character of the normalised corpus is in the alphabet, so none becomes [UNK];
    // `continuing` holds those that occur inside a word (after its first character).
    let mut alphabet = HashSet::new();
    let mut continuing = std::collections::BTreeSet::new();
    for t in texts {
        let mut n = tokenizers::NormalizedString::from(*t);
        tokenizers::Normalizer::normalize(&normalizer, &mut n).map_err(tok_err)?;
        alphabet.extend(n.get().chars().filter(|c| !c.is_whitespace()));
        let mut words = tokenizers::PreTokenizedString::from(n.get());
        tokenizers::PreTokenizer::pre_tokenize(&BertPreTokenizer, &mut words).map_err(tok_err)?;
        for (word, _, _) in words.get_splits(
            tokenizers::OffsetReferential::Original,
            tokenizers::OffsetType::Char,
        ) {
            continuing.extend(word.chars().skip(1));
        }
    }
    // The `tokenizers` trainer numbers word-continuation pieces (`##c`) in the order it
    // meets them in a hash map, which changes from run to run, and breaks ties between
    // equally frequent merges by those numbers: two trainings on the same texts gave
    // different vocabularies. Registering the same `##c` pieces it would create (one per
    // character seen inside a word) up front, in character order, as trainer-side special
    // tokens fixes their numbers and so the whole result; they are plain vocabulary
    // entries in the written file (see below).
    let continuations: Vec<String> = continuing.iter().map(|c| format!("##{c}")).collect();
    let mut trainer = WordPieceTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .chain(
                    continuations
                        .iter()
                        .map(|t| AddedToken::from(t.as_str(), true)),
                )
                .collect(),
        )
        .initial_alphabet(alphabet)
        .build();
    let mut tokenizer: TokenizerImpl<
        WordPiece,
        BertNormalizer,
        BertPreTokenizer,
        BertProcessing,
        WordPieceDecoder,
    > = TokenizerImpl::new(WordPiece::default());
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(tok_err)?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), 3),
        ("[CLS]".into(), 2),
    )));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    tokenizer
        .train(&mut trainer, texts.iter().copied())
        .map_err(tok_err)?;
    let tokenizer = Tokenizer::from(tokenizer);
    for (id, tok) in SPECIAL_TOKENS.iter().enumerate() {
        if tokenizer.token_to_id(tok) != Some(id as u32) {
            return Err(HostError::Tokenizer(format!(
                "special token {tok} did not get id {id}"
            )));
        }
    }
    let json = tokenizer.to_string(true).map_err(tok_err)?;
    // Only the real special tokens stay "added" (matched before splitting, never split):
    // the `##c` pieces are ordinary vocabulary entries.
    let mut value: serde_json::Value = serde_json::from_str(&json).map_err(tok_err)?;
    if let Some(added) = value.get_mut("added_tokens").and_then(|a| a.as_array_mut()) {
        added.retain(|t| {
            t.get("content")
                .and_then(|c| c.as_str())
                .is_some_and(|c| SPECIAL_TOKENS.contains(&c))
        });
    }
    if reserved > 0 {
        let vocab = value
            .pointer_mut("/model/vocab")
            .and_then(|v| v.as_object_mut())
            .ok_or_else(|| HostError::Tokenizer("tokenizer.json has no model.vocab".into()))?;
        let next = vocab.values().filter_map(|v| v.as_u64()).max().unwrap_or(0) + 1;
        for b in 0..reserved {
            vocab.insert(
                device::tokenize::cjk_fallback_token(b),
                serde_json::Value::from(next + b as u64),
            );
        }
    }
    let tokenizer = Tokenizer::from_bytes(value.to_string().as_bytes()).map_err(tok_err)?;
    let json = tokenizer.to_string(true).map_err(tok_err)?;
    Ok(json.into_bytes())
}

/// Vocabulary size of a `tokenizer.json`.
pub fn vocab_size(json: &[u8]) -> Result<usize> {
    let t = Tokenizer::from_bytes(json).map_err(tok_err)?;
    Ok(t.get_vocab_size(true))
}

/// A BERT tokenizer (`tokenizer.json` bytes) from a pretrained checkpoint's `vocab.txt`:
/// the same normaliser, pre-tokenizer and `[CLS] … [SEP]` template as [`train_wordpiece`],
/// with the vocabulary's own ids.
pub fn bert_from_vocab(vocab: &std::path::Path, lowercase: bool) -> Result<Vec<u8>> {
    let path = vocab
        .to_str()
        .ok_or_else(|| HostError::Invalid(format!("{}: path is not UTF-8", vocab.display())))?;
    let model = WordPiece::from_file(path)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| HostError::Tokenizer(format!("{}: {e}", vocab.display())))?;
    let id = |tok: &str| {
        tokenizers::Model::token_to_id(&model, tok)
            .ok_or_else(|| HostError::Tokenizer(format!("{}: no {tok} token", vocab.display())))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let mut tokenizer: TokenizerImpl<
        WordPiece,
        BertNormalizer,
        BertPreTokenizer,
        BertProcessing,
        WordPieceDecoder,
    > = TokenizerImpl::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
        .map_err(tok_err)?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    let tokenizer = Tokenizer::from(tokenizer);
    Ok(tokenizer.to_string(true).map_err(tok_err)?.into_bytes())
}

fn tok_err(e: impl std::fmt::Display) -> HostError {
    HostError::Tokenizer(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let words = [
            "play",
            "playing",
            "played",
            "music",
            "musical",
            "set",
            "setting",
            "alarm",
            "alarms",
            "weather",
            "whether",
            "turn",
            "turning",
            "light",
            "lights",
            "lighting",
            "zoo",
            "#5",
            "打开灯",
        ];
        (0..200)
            .map(|i| {
                format!(
                    "{} the {} {}",
                    words[i % words.len()],
                    words[(i * 7 + 3) % words.len()],
                    words[(i * 11 + 5) % words.len()]
                )
            })
            .collect()
    }

    #[test]
    fn training_is_deterministic() {
        let texts = corpus();
        let t: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let first = train_wordpiece(&t, 80).unwrap();
        for _ in 0..3 {
            assert!(
                train_wordpiece(&t, 80).unwrap() == first,
                "two trainings on the same texts gave different tokenizers"
            );
        }
    }

    #[test]
    fn cjk_texts_reserve_fallback_ids_and_no_ideograph_is_unk() {
        let texts = corpus();
        let t: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let json = train_wordpiece(&t, 1000).unwrap();
        assert!(train_wordpiece(&t, 1000).unwrap() == json, "deterministic");
        let enc = device::tokenize::TextEncoder::from_bytes(&json, 32).unwrap();
        let fb = enc
            .cjk_fallback()
            .expect("the corpus has CJK: fallback reserved");
        assert_eq!(fb.buckets as usize, CJK_FALLBACK_BUCKETS);
        assert_eq!(
            (fb.base + fb.buckets) as usize,
            enc.vocab_size(),
            "the reserved ids come last"
        );
        assert!(enc.vocab_size() <= 1000, "{}", enc.vocab_size());
        let e = enc.encode("打开客厅的灯").unwrap();
        assert_eq!(
            e.tokens,
            ["[CLS]", "打", "开", "客", "厅", "的", "灯", "[SEP]"]
        );
        assert!(!e.ids.contains(&i64::from(fb.unk)));
        // seen characters keep their own ids, unseen ones take reserved ids
        let seen = |i: usize| e.ids[i] < i64::from(fb.base);
        assert!(seen(1) && seen(2) && seen(6), "{:?}", e.ids);
        assert!(!seen(3) && !seen(4) && !seen(5), "{:?}", e.ids);
        // No CJK in the texts: nothing reserved, the vocabulary is as before.
        let latin: Vec<String> = texts.iter().map(|s| s.replace("打开灯", "")).collect();
        let latin: Vec<&str> = latin.iter().map(|s| s.as_str()).collect();
        let enc =
            device::tokenize::TextEncoder::from_bytes(&train_wordpiece(&latin, 80).unwrap(), 32)
                .unwrap();
        assert!(enc.cjk_fallback().is_none());
    }

    #[test]
    fn only_the_special_tokens_are_added_tokens() {
        let texts = corpus();
        let t: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let json = train_wordpiece(&t, 80).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let added: Vec<&str> = v["added_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["content"].as_str().unwrap())
            .collect();
        assert_eq!(added, SPECIAL_TOKENS);
        let tok = Tokenizer::from_bytes(&json).unwrap();
        for (id, s) in SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(tok.token_to_id(s), Some(id as u32));
        }
        // `##a` is a vocabulary piece, not matched in raw text (where "#" is punctuation).
        assert!(tok.token_to_id("##a").is_some());
        let enc = tok.encode("set##a", false).unwrap();
        assert_eq!(enc.get_tokens(), ["set", "#", "#", "a"]);
        // Continuation pieces only for characters seen inside a word: none for CJK
        // characters (each is a word of its own), so the requested size holds.
        assert!(tok.token_to_id("##灯").is_none());
        assert!(tok.token_to_id("灯").is_some(), "{:?}", tok.get_vocab(true));
        assert!(
            tok.get_vocab_size(true) <= 80,
            "{}",
            tok.get_vocab_size(true)
        );
    }
}
