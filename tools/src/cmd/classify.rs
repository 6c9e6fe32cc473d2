//! `tools classify`: one text to the board, one answer back.

use anyhow::{Context, Result};
use serde_json::json;

use super::serial::SerialArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    serial: SerialArgs,
    /// Extra attempts (each with a fresh request id) when the answer is lost or the
    /// device answers Busy.
    #[arg(long, value_name = "N", default_value_t = 2)]
    retries: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The text to classify (at most 256 UTF-8 bytes).
    #[arg(value_name = "TEXT")]
    text: String,
}

pub fn run(a: Args) -> Result<()> {
    let (link, info) = a.serial.connect(a.retries)?;
    let c = link
        .classify(&a.text)
        .with_context(|| format!("classifying over {}", a.serial.serial))?;
    let name = |i: u16| {
        info.labels
            .get(usize::from(i))
            .cloned()
            .unwrap_or_else(|| format!("#{i}"))
    };
    // A rejected answer whose index names no label has no best guess: the text was
    // empty (docs/protocol.md, `Result.rejected`).
    let no_guess = c.rejected && usize::from(c.label_index) >= info.labels.len();
    if a.json {
        let v = json!({
            "text": a.text,
            "label": if no_guess { "unknown".to_string() } else { name(c.label_index) },
            "reason": if no_guess { Some("empty") } else if c.rejected { Some("rule") } else { None },
            "label_index": c.label_index,
            "confidence": c.confidence,
            "rejected": c.rejected,
            "top_k": c.top_k.iter().map(|&(i, p)| json!({"label": name(i), "p": p})).collect::<Vec<_>>(),
            "top_tokens": c.top_tokens.iter().map(|(t, w)| json!({"token": t, "weight": w})).collect::<Vec<_>>(),
            "inference_us": c.inference_us,
            "rtt_us": c.rtt_us,
            "model": info.model_name,
        });
        println!("{v}");
    } else {
        if no_guess {
            println!("unknown (empty text)");
        } else if c.rejected {
            println!(
                "unknown (best guess: {} {:.2})",
                name(c.label_index),
                c.confidence
            );
        } else {
            println!("{} ({:.3})", name(c.label_index), c.confidence);
        }
        for &(i, p) in c.top_k.iter().skip(1) {
            println!("  also {} ({p:.3})", name(i));
        }
        if !c.top_tokens.is_empty() {
            let toks: Vec<String> = c
                .top_tokens
                .iter()
                .map(|(t, w)| format!("{t} {w:.2}"))
                .collect();
            println!("  top tokens: {}", toks.join(", "));
        }
        println!(
            "  device {} µs, round trip {:.2} ms ({} + {} frame bytes at {} baud)",
            c.inference_us,
            c.rtt_us as f64 / 1000.0,
            c.request_bytes,
            c.response_bytes,
            a.serial.baud
        );
    }
    Ok(())
}
