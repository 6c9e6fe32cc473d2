//! `tools monitor`: print what the board pushes (local classification results, errors),
//! with label names; survives the port going away and coming back.

use std::time::{Duration, Instant};

use anyhow::Result;
use host::link::protocol::{Response, Source};
use host::link::{DeviceInfo, Event};
use serde_json::json;

use super::serial::SerialArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    serial: SerialArgs,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Exit after this many Result frames (default: run until interrupted).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Exit after this many seconds (default: run until interrupted).
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    duration: Option<Duration>,
}

/// A `--duration`: a finite, non-negative number of seconds.
fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?}: expected a finite number of seconds, 0 or more"))
}

pub fn run(a: Args) -> Result<()> {
    let deadline = a
        .duration
        // Past what the clock can hold: no deadline.
        .and_then(|d| Instant::now().checked_add(d));
    let mut results = 0u64;
    let mut first = true;
    loop {
        let (link, info) = match a.serial.connect(3) {
            Ok(x) => x,
            // The first connection must work; later ones are retried (board replugged).
            Err(e) if first => return Err(e),
            Err(e) => {
                eprintln!("monitor: {e:#}; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        first = false;
        print_info(&info, &a);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
            let Some(ev) = link.next_event(Duration::from_millis(200)) else {
                continue;
            };
            match ev {
                Event::Frame(r) => {
                    if matches!(r, Response::Result { .. }) {
                        results += 1;
                    }
                    print_frame(&r, &info, &a);
                    if a.count.is_some_and(|c| results >= c) {
                        return Ok(());
                    }
                }
                Event::BadFrame(e) => {
                    if a.json {
                        println!(
                            "{}",
                            json!({"kind": "bad_frame", "error": e.to_string(), "code": e.code().name()})
                        );
                    } else {
                        println!("bad frame: {e}");
                    }
                }
                Event::Disconnected(why) => {
                    eprintln!("monitor: port lost ({why}); reconnecting");
                    break;
                }
            }
        }
        drop(link);
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn print_info(info: &DeviceInfo, a: &Args) {
    if a.json {
        println!(
            "{}",
            json!({"kind": "info", "model": info.model_name, "model_sha256": info.model_sha256,
                   "software_version": info.software_version, "protocol_version": info.protocol_version,
                   "labels": info.labels, "max_text_len": info.max_text_len})
        );
    } else {
        println!(
            "connected to {}: model {} ({} labels, sha256 {}…), device software {}",
            a.serial.serial,
            info.model_name,
            info.labels.len(),
            &info.model_sha256[..12.min(info.model_sha256.len())],
            info.software_version
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

fn print_frame(r: &Response, info: &DeviceInfo, a: &Args) {
    let name = |i: u16| {
        info.labels
            .get(usize::from(i))
            .cloned()
            .unwrap_or_else(|| format!("#{i}"))
    };
    match r {
        Response::Result {
            id,
            source,
            label_index,
            confidence,
            top_k,
            top_tokens,
            inference_us,
            rejected,
        } => {
            let (src, seq) = match source {
                Source::Local { seq } => ("local", Some(*seq)),
                Source::Request => ("request", None),
            };
            if a.json {
                println!(
                    "{}",
                    json!({"kind": "result", "source": src, "seq": seq, "id": id,
                           "label": name(*label_index), "label_index": label_index,
                           "confidence": confidence, "rejected": rejected,
                           "top_k": top_k.iter().map(|&(i, p)| json!({"label": name(i), "p": p})).collect::<Vec<_>>(),
                           "top_tokens": top_tokens.iter().map(|(t, w)| json!({"token": t.as_str(), "weight": w})).collect::<Vec<_>>(),
                           "inference_us": inference_us})
                );
            } else {
                let toks: Vec<&str> = top_tokens.iter().map(|(t, _)| t.as_str()).collect();
                let what = match seq {
                    Some(s) => format!("local #{s}"),
                    None => format!("late answer to {id}"),
                };
                let no_guess = *rejected && usize::from(*label_index) >= info.labels.len();
                let answer = if no_guess {
                    "unknown (empty text)".to_string()
                } else if *rejected {
                    format!(
                        "unknown (best guess: {} {confidence:.2})",
                        name(*label_index)
                    )
                } else {
                    format!("{} ({confidence:.3})", name(*label_index))
                };
                println!("{what}: {answer} [{}] {inference_us} µs", toks.join(" "));
            }
        }
        Response::Error { id, code, detail } => {
            if a.json {
                println!(
                    "{}",
                    json!({"kind": "error", "id": id, "code": code.name(), "detail": detail.as_str()})
                );
            } else {
                println!("device error {code} (request {id:?}): {detail}");
            }
        }
        other => {
            if a.json {
                println!(
                    "{}",
                    json!({"kind": "other", "frame": format!("{other:?}")})
                );
            } else {
                println!("unsolicited frame: {other:?}");
            }
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}
