//! Model update over the link (`tools deploy --serial`): send a packed bundle
//! ([`bundle::transfer`]) with `DeployBegin` / `DeployChunk` / `DeployCommit`, resuming
//! what the device already holds; and `Rollback`.

use std::time::{Duration, Instant};

use bundle::transfer::Archive;
use protocol::{Chunk, ErrorCode, Request, Response, MAX_CHUNK};

use super::{Link, LinkError, Result};

/// Attempts per chunk (each a fresh id) before the transfer gives up.
pub const CHUNK_ATTEMPTS: u32 = 6;
/// How long the device may take to unpack, verify, self-test and switch.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(180);

/// What a deploy or rollback did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeployOutcome {
    /// The model the device serves now.
    pub model_name: String,
    /// sha256 of its model.onnx, hex.
    pub model_sha256: String,
    /// Archive size.
    pub total_bytes: u64,
    /// Bytes the device already held (resumed from).
    pub resumed_from: u64,
    /// Archive bytes sent in chunks by this run (incl. resent ones).
    pub bytes_sent: u64,
    /// Chunks re-sent after a timeout.
    pub chunk_retries: u64,
    /// Seconds of the chunk transfer.
    pub transfer_s: f64,
    /// Seconds the commit took on the device.
    pub commit_s: f64,
}

fn done(r: Response, what: &'static str) -> Result<(String, String)> {
    match r {
        Response::DeployDone {
            model_name,
            model_sha256,
            ..
        } => Ok((model_name.to_string(), hex::encode(model_sha256))),
        other => Err(LinkError::Unexpected {
            request: what,
            got: format!("{other:?}"),
        }),
    }
}

fn device_error(r: Response) -> Result<Response> {
    match r {
        Response::Error { id, code, detail } => Err(LinkError::Device {
            id,
            code,
            detail: detail.to_string(),
        }),
        r => Ok(r),
    }
}

/// Sends `archive` and commits it. `progress(offset)` is called after every
/// acknowledged chunk (and once with the resume offset).
pub fn deploy(
    link: &Link,
    archive: &Archive,
    mut progress: impl FnMut(u64),
) -> Result<DeployOutcome> {
    let total = u32::try_from(archive.bytes.len()).map_err(|_| LinkError::Unexpected {
        request: "DeployBegin",
        got: "archive larger than 4 GiB".into(),
    })?;
    let begin = link.request(|id| Request::DeployBegin {
        id,
        archive_sha256: archive.archive_sha256,
        total_bytes: total,
        file_count: archive.file_count,
    })?;
    let have = match begin.response {
        Response::DeployStatus { have, .. } => have.min(total),
        other => {
            return Err(LinkError::Unexpected {
                request: "DeployBegin",
                got: format!("{other:?}"),
            })
        }
    };
    progress(u64::from(have));
    let start = Instant::now();
    let (mut offset, mut sent, mut retries) = (have, 0u64, 0u64);
    while offset < total {
        let end = (offset as usize + MAX_CHUNK).min(total as usize);
        let data = Chunk::from_slice(&archive.bytes[offset as usize..end])
            .expect("at most MAX_CHUNK bytes");
        let mut attempt = 0;
        let next = loop {
            attempt += 1;
            sent += data.len() as u64;
            let outcome = link
                .send(|id| Request::DeployChunk {
                    id,
                    offset,
                    data: data.clone(),
                })
                .and_then(|p| p.wait(link.options().timeout))
                .and_then(|a| device_error(a.response));
            match outcome {
                Ok(Response::DeployAck { next, .. }) => break next,
                Ok(other) => {
                    return Err(LinkError::Unexpected {
                        request: "DeployChunk",
                        got: format!("{other:?}"),
                    })
                }
                Err(LinkError::Timeout { .. })
                | Err(LinkError::Device {
                    code: ErrorCode::Busy,
                    ..
                }) if attempt < CHUNK_ATTEMPTS => {
                    retries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        if next > total {
            return Err(LinkError::Unexpected {
                request: "DeployChunk",
                got: format!("next offset {next} past the end {total}"),
            });
        }
        offset = next;
        progress(u64::from(offset));
    }
    let transfer_s = start.elapsed().as_secs_f64();
    let t = Instant::now();
    let commit = link
        .send(|id| Request::DeployCommit { id })?
        .wait(COMMIT_TIMEOUT)
        .and_then(|a| device_error(a.response))?;
    let (model_name, model_sha256) = done(commit, "DeployCommit")?;
    if let Some(sent) = &archive.model_sha256 {
        if !sent.eq_ignore_ascii_case(&model_sha256) {
            return Err(LinkError::Unexpected {
                request: "DeployCommit",
                got: format!(
                    "the device serves model {model_name:?} (model.onnx sha256 {model_sha256}), \
                     not the one sent ({sent})"
                ),
            });
        }
    }
    Ok(DeployOutcome {
        model_name,
        model_sha256,
        total_bytes: u64::from(total),
        resumed_from: u64::from(have),
        bytes_sent: sent,
        chunk_retries: retries,
        transfer_s,
        commit_s: t.elapsed().as_secs_f64(),
    })
}

/// Asks the device to make its previous model current again; returns (name, sha256 hex)
/// of the model it serves now.
pub fn rollback(link: &Link) -> Result<(String, String)> {
    let r = link
        .send(|id| Request::Rollback { id })?
        .wait(COMMIT_TIMEOUT)
        .and_then(|a| device_error(a.response))?;
    done(r, "Rollback")
}
