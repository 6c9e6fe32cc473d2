//! Flags of `device serve` (kept beside `main.rs` so the shared file only gains a variant).

use anyhow::{Context, Result};

use device::serve::{serve, InputSource, ServeConfig};
use device::{ClassifyOptions, EngineOptions};

use crate::trust::{SourceArgs, TrustArgs};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where the model comes from: `--bundle DIR`, or `--state DIR` (the `current` bundle
    /// of a state directory written by `tools deploy`). Verified (sha256, and the signature
    /// under --trust) and loaded once, before the port is opened.
    #[command(flatten)]
    source: SourceArgs,

    #[command(flatten)]
    trust: TrustArgs,

    /// Serial port to answer on, e.g. /dev/serial0, /dev/ttyUSB0, /dev/ttyGS0 (USB gadget)
    /// or a /dev/pts/N pseudo-terminal. If it disappears later (USB adapter unplugged) the
    /// service reopens the same path with backoff and keeps the model loaded.
    #[arg(long, value_name = "PORT")]
    serial: String,

    /// Baud rate (50..=4000000); 8 data bits, no parity, 1 stop bit, no flow control.
    #[arg(long, value_name = "N", default_value_t = 115_200)]
    baud: u32,

    /// Local text to classify as well, one text per line: `-` for stdin, a regular file
    /// (followed as it grows, like tail -F), or a FIFO (reopened when its writer closes).
    /// Each line is pushed to the host as an unsolicited Result frame (Source::Local{seq}).
    #[arg(long, value_name = "PATH|-")]
    input: Option<String>,

    /// Capacity of the inference queue; a Classify request that finds it full is answered
    /// with an Error{Busy} at once (counted as a queue drop in Stats).
    /// 1 to 4096.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    queue: u16,

    /// Inference threads taking jobs from the queue, 1 to 64.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    workers: u8,

    /// Labels (with probabilities) per Result frame, at most 5.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    top_k: u8,

    /// Highest-attention tokens per Result frame, at most 5.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u8).range(0..=5))]
    top_tokens: u8,

    /// Model variant to run: `float`, `weights-int8`, `int8-compute` (or `NAME+f16`,
    /// `weights-int8+int8-act`: its dense layers in int8, the activations quantised per token).
    /// Default: the choice recorded by `device tune`, else the manifest's default variant
    /// (serve does not time the variants itself: only the chosen one is loaded).
    #[arg(long, value_name = "NAME")]
    variant: Option<String>,

    /// When the port cannot be opened at start, keep retrying instead of exiting with an
    /// error (useful when the service starts before the USB adapter is plugged in).
    #[arg(long)]
    wait_for_port: bool,
}

pub fn run(a: ServeArgs, engine: EngineOptions) -> Result<()> {
    let what = match (&a.source.bundle, &a.source.state) {
        (Some(b), _) => format!("bundle {}", b.display()),
        (None, Some(s)) => format!("state {}", s.display()),
        (None, None) => "no bundle".to_string(),
    };
    let verified = crate::trust::open(&a.source, &a.trust, |v| Ok(v.clone()))?;
    // Model updates over the link install into the state directory, under the same
    // trust policy the service started with.
    let deploy = match (&a.source.state, a.trust.policy_quiet()?) {
        (Some(dir), Some(policy)) => Some((dir.clone(), policy)),
        _ => None,
    };
    let cfg = ServeConfig {
        port: a.serial,
        baud: a.baud,
        input: a.input.as_deref().map(InputSource::parse),
        queue: usize::from(a.queue),
        workers: usize::from(a.workers),
        options: ClassifyOptions {
            top_k: usize::from(a.top_k),
            top_tokens: usize::from(a.top_tokens),
        },
        engine,
        variant: a.variant,
        wait_for_port: a.wait_for_port,
        deploy,
    };
    serve(cfg, verified).with_context(|| format!("device serve ({what})"))
}
