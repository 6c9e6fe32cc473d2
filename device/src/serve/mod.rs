//! `device serve`: answer the serial protocol (`protocol` crate, `docs/protocol.md`)
//! on a serial port, and push results for local input lines.
//!
//! Threads:
//! * **reader** (the caller's thread): opens the port, feeds bytes to the
//!   [`FrameDecoder`](protocol::FrameDecoder), hands each frame to [`dispatch::Core`]. On a
//!   read error (adapter unplugged, pty closed) it closes the port and reopens the same
//!   path with exponential backoff (100 ms … 2 s); the model stays loaded.
//! * **writer**: encodes answers from the bounded outbox and writes them to whichever
//!   port is currently open; while none is, frames are dropped (and counted).
//! * **workers** (`--workers`, default 1): classify jobs from a bounded queue
//!   (`--queue`); a `Classify` that finds it full is answered `Busy` at once.
//! * **input** (optional): local lines, queued with back-pressure.
//!
//! Bad input never stops the service: every bad frame is counted in `Stats` and
//! answered with an `Error` (carrying the request id when it could be recovered) while
//! the outbox has room, and the decoder resynchronises at the next `0x00`. Memory is
//! bounded whatever arrives: frames at `MAX_FRAME`, the inference queue at `--queue`,
//! the outbox at [`dispatch::OUTBOX_CAPACITY`] answers.

pub mod deploy;
pub mod dispatch;
pub mod input;
pub mod stats;

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use protocol::{RequestDecoder, Response, MAX_FRAME};
use serialport::SerialPort;

use self::dispatch::{Core, ModelInfo};
pub use self::input::InputSource;
pub use self::stats::Stats;
use crate::classify::ClassifyOptions;
use bundle::VerifiedBundle;

/// Everything `device serve` is told on its command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub port: String,
    pub baud: u32,
    pub input: Option<InputSource>,
    /// Capacity of the inference queue.
    pub queue: usize,
    /// Inference threads.
    pub workers: usize,
    pub options: ClassifyOptions,
    /// How the engine is built (also for a model installed over the link).
    pub engine: crate::engine::EngineOptions,
    /// Model variant (`--variant`); `None`: the one `device tune` recorded, else the
    /// manifest's default.
    pub variant: Option<String>,
    /// Keep retrying when the port cannot be opened at start (else: fail at once).
    pub wait_for_port: bool,
    /// With `--state`: the state directory and trust policy model updates over the link
    /// are installed with (`None`: deploy requests are answered `NotReady`).
    pub deploy: Option<(PathBuf, bundle::signature::TrustPolicy)>,
}

/// Why the service could not start. Once it runs it does not stop on its own.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Bundle(#[from] crate::error::DeviceError),
    #[error(transparent)]
    State(#[from] crate::install::InstallError),
    // Causes are part of the messages, not error sources: `{:#}` would print them twice.
    #[error("cannot open serial port {port}: {cause}")]
    Open {
        port: String,
        cause: serialport::Error,
    },
    #[error("invalid baud rate {0}: must be between 50 and 4000000")]
    Baud(u32),
    #[error("local input {path}: {cause}")]
    Input { path: PathBuf, cause: io::Error },
    #[error("cannot start thread: {0}")]
    Thread(io::Error),
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Read timeout: how quickly the reader notices the writer found the port broken.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// A write blocked this long (nobody draining the other end) drops the frame.
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

/// The port the writer writes to, swapped by the reader on reconnect.
struct PortSlot {
    port: Mutex<Option<Box<dyn SerialPort>>>,
    broken: AtomicBool,
}

/// Makes every plan a single text can run on before the service answers, so the first
/// query of each length costs what the others do ([`crate::Engine::prepare`]). A failure
/// is reported, not fatal: the plans are then made at first use, as they would be anyway.
pub(crate) fn prepare_plans(classifier: &crate::Classifier) {
    let started = std::time::Instant::now();
    match classifier.engine().prepare() {
        Ok(routes) => eprintln!(
            "device serve: plans ready in {:.0} ms ({})",
            started.elapsed().as_secs_f64() * 1e3,
            describe_routes(&routes)
        ),
        Err(e) => eprintln!("device serve: {e}; plans will be made at first use"),
    }
}

/// `8 fixed, 16 fixed, 32 symbolic, 64 fixed from 40` for a start-up line.
pub fn describe_routes(routes: &[(usize, usize)]) -> String {
    if routes.is_empty() {
        return "symbolic plan only".into();
    }
    let one = |&(len, from): &(usize, usize)| match from {
        f if f > len => format!("{len} symbolic"),
        f if f <= 2 || routes.iter().any(|&(l, _)| l + 1 == f) => format!("{len} fixed"),
        f => format!("{len} fixed from {f}"),
    };
    let parts: Vec<String> = routes.iter().map(one).collect();
    format!("token buckets: {}", parts.join(", "))
}

/// Loads the (already verified) bundle, opens the port and serves until the process is
/// killed. Where the bundle comes from and which signatures it needs is the caller's
/// choice (`--bundle` / `--state`, `--trust`).
pub fn serve(cfg: ServeConfig, verified: VerifiedBundle) -> Result<(), ServeError> {
    if !(50..=4_000_000).contains(&cfg.baud) {
        return Err(ServeError::Baud(cfg.baud));
    }
    if let Some(InputSource::Path(p)) = &cfg.input {
        std::fs::metadata(p).map_err(|cause| ServeError::Input {
            path: p.clone(),
            cause,
        })?;
    }
    let info = Arc::new(ModelInfo::from_bundle(&verified));
    let classifier = Arc::new(RwLock::new(Arc::new(
        crate::variant::load_with(
            &verified,
            &crate::variant::preferred(&verified, cfg.variant.as_deref())?,
            &cfg.engine,
        )?
        .with_options(cfg.options),
    )));
    drop(verified);
    prepare_plans(&self::deploy::current(&classifier));
    let state = match &cfg.deploy {
        Some((dir, policy)) => Some((crate::install::StateDir::open(dir)?, policy.clone())),
        None => None,
    };
    let stats = Arc::new(Stats::new());

    let first = match open(&cfg) {
        Ok(p) => Some(p),
        Err(e) if !cfg.wait_for_port => return Err(e),
        Err(e) => {
            eprintln!("device serve: {e}; waiting for it");
            None
        }
    };

    let (jobs_tx, jobs_rx) = self::dispatch::queue(cfg.queue);
    let (out_tx, out_rx) = self::dispatch::outbox();
    self::dispatch::spawn_workers(
        cfg.workers,
        Arc::clone(&classifier),
        jobs_rx,
        out_tx.clone(),
        Arc::clone(&stats),
    )
    .map_err(ServeError::Thread)?;
    let slot = Arc::new(PortSlot {
        port: Mutex::new(None),
        broken: AtomicBool::new(false),
    });
    {
        let (slot, stats) = (Arc::clone(&slot), Arc::clone(&stats));
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer(out_rx, &slot, &stats))
            .map_err(ServeError::Thread)?;
    }
    if let Some(src) = cfg.input.clone() {
        let jobs = jobs_tx.clone();
        std::thread::Builder::new()
            .name("input".into())
            .spawn(move || input::run(src, jobs))
            .map_err(ServeError::Thread)?;
    }
    let mut core = Core::new(Arc::clone(&info), Arc::clone(&stats), jobs_tx, out_tx);
    if let Some((state, policy)) = state {
        let info_slot = core.info_slot();
        core.set_deployer(self::deploy::Deployer::new(
            state,
            policy,
            cfg.options,
            cfg.engine.clone(),
            cfg.variant.clone(),
            info_slot,
            Arc::clone(&classifier),
        ));
    }
    eprintln!(
        "device serve: model {} ({} labels) on {} at {} baud, queue {}, {} worker(s)",
        info.name,
        info.labels.len(),
        cfg.port,
        cfg.baud,
        cfg.queue,
        cfg.workers.max(1)
    );
    reader(&cfg, first, &core, &slot);
    Ok(())
}

fn open(cfg: &ServeConfig) -> Result<Box<dyn SerialPort>, ServeError> {
    serialport::new(&cfg.port, cfg.baud)
        .timeout(READ_TIMEOUT)
        .open()
        .map_err(|cause| ServeError::Open {
            port: cfg.port.clone(),
            cause,
        })
}

/// The reconnect loop. Never returns.
fn reader(cfg: &ServeConfig, mut port: Option<Box<dyn SerialPort>>, core: &Core, slot: &PortSlot) {
    let mut decoder = RequestDecoder::new();
    let mut buf = [0u8; MAX_FRAME];
    let mut backoff = BACKOFF_MIN;
    let mut last_error = String::new();
    loop {
        let mut p = match port.take() {
            Some(p) => p,
            None => match open(cfg) {
                Ok(p) => {
                    eprintln!("device serve: port {} open again", cfg.port);
                    p
                }
                Err(e) => {
                    let msg = e.to_string();
                    if msg != last_error {
                        eprintln!("device serve: {msg}; retrying");
                        last_error = msg;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        last_error.clear();
        backoff = BACKOFF_MIN;
        decoder.reset();
        match p.try_clone() {
            Ok(mut w) => {
                let _ = w.set_timeout(WRITE_TIMEOUT);
                // A lone delimiter flushes whatever the host's decoder holds.
                let _ = w.write_all(&[0]);
                *lock(&slot.port) = Some(w);
                slot.broken.store(false, Ordering::SeqCst);
            }
            Err(e) => {
                eprintln!("device serve: cannot clone port handle: {e}");
                std::thread::sleep(backoff);
                continue;
            }
        }
        let why = loop {
            if slot.broken.load(Ordering::SeqCst) {
                break "write failed".to_string();
            }
            match p.read(&mut buf) {
                Ok(0) => break "end of stream".to_string(),
                Ok(n) => {
                    for frame in decoder.feed(&buf[..n]) {
                        core.handle(frame);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => break e.to_string(),
            }
        };
        *lock(&slot.port) = None;
        drop(p);
        eprintln!("device serve: port {} lost ({why}); reopening", cfg.port);
        std::thread::sleep(BACKOFF_MIN);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn writer(outbox: Receiver<Response>, slot: &PortSlot, stats: &Stats) {
    let mut buf = [0u8; MAX_FRAME];
    for msg in outbox {
        let frame = match protocol::encode(&msg, &mut buf) {
            Ok(f) => f,
            Err(e) => {
                // Cannot happen for well-formed responses (all bounded); never panic.
                eprintln!("device serve: cannot encode {msg:?}: {e}");
                continue;
            }
        };
        let mut guard = lock(&slot.port);
        let Some(port) = guard.as_mut() else {
            stats.frame_dropped();
            continue;
        };
        match port.write_all(frame) {
            Ok(()) => stats.frame_out(),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                // The other end is not reading; drop this frame, keep the port.
                stats.frame_dropped();
            }
            Err(e) => {
                stats.frame_dropped();
                eprintln!("device serve: write failed: {e}");
                *guard = None;
                slot.broken.store(true, Ordering::SeqCst);
            }
        }
    }
}
