//! The byte pumps between a client's upgraded connection and an agent's session stream: a
//! shell (framed, with resize and the transcript), a port forward's control connection, and
//! each forwarded TCP connection (raw bytes).
//!
//! Back-pressure: each pump reads from one side only what it has passed on to the other (one
//! read or one frame in hand at a time; the agent's queue is `platform::streams::OUTBOUND_QUEUE`
//! frames), so memory per stream is bounded and a slow reader holds back its own stream only.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use flotilla_api::sessions::frame;
use flotilla_proto::v1::{SessionClosed, SessionFrame, WindowSize, session_frame};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::transcript::{Header, Transcript};
use super::{Live, finish, record_connection};
use crate::app::AppState;
use crate::platform::now_ms;
use crate::platform::streams::AgentStream;

/// Largest read passed on at once.
const CHUNK: usize = 64 * 1024;

const AGENT_GONE: &str = "the node's agent disconnected";
const CLIENT_GONE: &str = "the client disconnected";

fn data(bytes: Vec<u8>) -> Result<SessionFrame, tonic::Status> {
    Ok(SessionFrame { body: Some(session_frame::Body::Data(bytes)) })
}

fn close(reason: &str) -> Result<SessionFrame, tonic::Status> {
    Ok(SessionFrame {
        body: Some(session_frame::Body::Closed(SessionClosed {
            reason: reason.to_owned(),
            exit_code: -1,
            failed: false,
        })),
    })
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&frame::header(kind, payload.len())).await?;
    w.write_all(payload).await?;
    w.flush().await
}

enum ClientFrame {
    Data(Vec<u8>),
    Resize(u16, u16),
}

/// Reads the client's frames into `tx` (bounded: it stops reading while the queue is full);
/// ends at end of stream, an error or a malformed frame.
async fn read_client<R: AsyncRead + Unpin>(mut r: R, tx: mpsc::Sender<ClientFrame>) {
    loop {
        let mut head = [0u8; frame::HEADER_LEN];
        if r.read_exact(&mut head).await.is_err() {
            return;
        }
        let Ok((kind, len)) = frame::parse_header(head) else { return };
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).await.is_err() {
            return;
        }
        let frame = match kind {
            frame::DATA => ClientFrame::Data(payload),
            frame::RESIZE => match frame::parse_resize(&payload) {
                Some((rows, cols)) => ClientFrame::Resize(rows, cols),
                None => return,
            },
            _ => continue,
        };
        if tx.send(frame).await.is_err() {
            return;
        }
    }
}

/// The terminal a shell starts with, for the transcript's header.
pub struct Terminal {
    pub rows: u16,
    pub cols: u16,
    pub term: String,
    pub title: String,
}

/// A shell: terminal bytes both ways, resizes to the agent, everything into the transcript.
pub async fn shell(state: Arc<AppState>, live: Arc<Live>, stream: AgentStream, upgrade: OnUpgrade, terminal: Terminal) {
    let Terminal { rows, cols, term, title } = terminal;
    let AgentStream { mut inbound, outbound } = stream;
    let prefix = super::transcript::prefix(&live.id);
    let mut transcript = Transcript::new(
        state.artifacts.clone(),
        prefix,
        Header { cols, rows, started_at_ms: live.started_at, term: &term, title },
    );
    transcript.flush_if_due().await;
    let io = match upgrade.await {
        Ok(io) => TokioIo::new(io),
        Err(e) => {
            tracing::info!(session = %live.id, "the client left before the session started: {e}");
            let _ = outbound.send(close(CLIENT_GONE)).await;
            transcript.finish().await;
            finish(&state, &live, CLIENT_GONE).await;
            return;
        }
    };
    let (rd, mut wr) = tokio::io::split(io);
    let (ctx, mut crx) = mpsc::channel(4);
    let reader = tokio::spawn(read_client(rd, ctx));
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut exit_code = -1;
    let mut pending: Option<SessionFrame> = None;
    loop {
        tokio::select! {
            () = live.end.cancelled() => {
                let _ = outbound.send(close(&live.reason_or("ended"))).await;
                break;
            }
            message = inbound.message() => match message {
                Ok(Some(SessionFrame { body: Some(session_frame::Body::Data(bytes)) })) => {
                    live.count_out(bytes.len());
                    transcript.output(&bytes).await;
                    if write_frame(&mut wr, frame::DATA, &bytes).await.is_err() {
                        live.end_with(CLIENT_GONE);
                    }
                }
                Ok(Some(SessionFrame { body: Some(session_frame::Body::Closed(closed)) })) => {
                    exit_code = closed.exit_code;
                    let reason = if closed.reason.is_empty() { format!("shell exited (status {})", closed.exit_code) } else { closed.reason };
                    live.end_with(&reason);
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    live.end_with(AGENT_GONE);
                    break;
                }
            },
            // Input waits for room towards the agent without stopping the output above.
            permit = outbound.reserve(), if pending.is_some() => match (permit, pending.take()) {
                (Ok(permit), Some(frame)) => permit.send(Ok(frame)),
                _ => {
                    live.end_with(AGENT_GONE);
                    break;
                }
            },
            message = crx.recv(), if pending.is_none() => match message {
                Some(ClientFrame::Data(bytes)) => {
                    live.count_in(bytes.len());
                    transcript.input(&bytes).await;
                    pending = Some(SessionFrame { body: Some(session_frame::Body::Data(bytes)) });
                }
                Some(ClientFrame::Resize(rows, cols)) => {
                    transcript.resize(rows, cols);
                    let size = WindowSize { rows: u32::from(rows), cols: u32::from(cols) };
                    pending = Some(SessionFrame { body: Some(session_frame::Body::Resize(size)) });
                }
                None => {
                    live.end_with(CLIENT_GONE);
                    let _ = outbound.send(close(CLIENT_GONE)).await;
                    break;
                }
            },
            _ = tick.tick() => transcript.flush_if_due().await,
        }
    }
    reader.abort();
    drop(outbound);
    transcript.finish().await;
    let reason = finish(&state, &live, "ended").await;
    let _ = write_frame(&mut wr, frame::CLOSED, &frame::closed(exit_code, &reason)).await;
    let _ = wr.shutdown().await;
}

/// A port forward's control connection: the session lasts while it is open; its end (or the
/// session's: terminated, timed out) closes every forwarded connection.
pub async fn forward_control(state: Arc<AppState>, live: Arc<Live>, upgrade: OnUpgrade) {
    let io = match upgrade.await {
        Ok(io) => TokioIo::new(io),
        Err(_) => {
            finish(&state, &live, CLIENT_GONE).await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf = [0u8; 256];
    tokio::select! {
        () = live.end.cancelled() => {}
        () = async {
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        } => live.end_with(CLIENT_GONE),
    }
    let reason = finish(&state, &live, "ended").await;
    let _ = write_frame(&mut wr, frame::CLOSED, &frame::closed(-1, &reason)).await;
    let _ = wr.shutdown().await;
}

/// One forwarded TCP connection: raw bytes both ways; the client's end of stream is passed on
/// as a half-close, the node side's close ends it. Recorded as it ends.
pub async fn connection(state: Arc<AppState>, live: Arc<Live>, seq: i64, stream: AgentStream, upgrade: OnUpgrade) {
    let opened_at = now_ms();
    let AgentStream { mut inbound, outbound } = stream;
    let io = match upgrade.await {
        Ok(io) => TokioIo::new(io),
        Err(_) => {
            let _ = outbound.send(close(CLIENT_GONE)).await;
            record_connection(&state, &live, seq, opened_at, 0, 0, CLIENT_GONE).await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let bytes_in = AtomicI64::new(0);
    let bytes_out = AtomicI64::new(0);
    let reason = {
        // Both directions side by side: a blocked write one way never stops reads the other.
        let up = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => {
                        // The agent half-closes its connection and keeps reading the node side.
                        if outbound.send(close("")).await.is_err() {
                            return AGENT_GONE.to_owned();
                        }
                        return std::future::pending().await;
                    }
                    Ok(n) => {
                        bytes_in.fetch_add(i64::try_from(n).unwrap_or(0), Ordering::Relaxed);
                        live.count_in(n);
                        if outbound.send(data(buf[..n].to_vec())).await.is_err() {
                            return AGENT_GONE.to_owned();
                        }
                    }
                    Err(_) => return CLIENT_GONE.to_owned(),
                }
            }
        };
        let down = async {
            loop {
                match inbound.message().await {
                    Ok(Some(SessionFrame { body: Some(session_frame::Body::Data(bytes)) })) => {
                        bytes_out.fetch_add(i64::try_from(bytes.len()).unwrap_or(0), Ordering::Relaxed);
                        live.count_out(bytes.len());
                        if wr.write_all(&bytes).await.is_err() {
                            return CLIENT_GONE.to_owned();
                        }
                    }
                    Ok(Some(SessionFrame { body: Some(session_frame::Body::Closed(closed)) })) => {
                        let _ = wr.flush().await;
                        return if closed.reason.is_empty() { "closed".to_owned() } else { closed.reason };
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return AGENT_GONE.to_owned(),
                }
            }
        };
        tokio::select! {
            () = live.end.cancelled() => format!("session ended ({})", live.reason_or("ended")),
            reason = up => reason,
            reason = down => reason,
        }
    };
    // Ends the agent's side unless it ended itself (then this finds the stream closed).
    let _ = outbound.send(close(&reason)).await;
    let (bytes_in, bytes_out) = (bytes_in.load(Ordering::Relaxed), bytes_out.load(Ordering::Relaxed));
    let _ = wr.shutdown().await;
    record_connection(&state, &live, seq, opened_at, bytes_in, bytes_out, &reason).await;
}
