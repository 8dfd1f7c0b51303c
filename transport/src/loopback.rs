//! In-process transport (`loopback:name=N`): the same Session / serve API over channels, for
//! fast unit tests and (later) a deterministic simulation. Names live in a per-process registry;
//! serving a name twice is an error.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use parking_lot::Mutex;

use crate::error::{Error, LinkError, Result};
use crate::limits::DISPATCH_MAX_BLOCK;
use crate::locator::Locator;
use crate::poll::PollMode;
use crate::server::{
    run_rpc, DispatchConfig, Handler, Outcome, ReplySink, Responder, Route, ServerHandle,
    ServerShared,
};
use crate::session::{ClientChannel, ClientConfig, Delivery, Session};
use crate::wire::{Header, Status};

enum ToServer {
    Rpc {
        header: Header,
        payload: Vec<u8>,
        reply: Sender<ToClient>,
    },
    Stop,
}

enum ToClient {
    Reply(u64, Status, Vec<u8>),
    Shutdown,
}

struct Entry {
    tx: Sender<ToServer>,
    clients: Mutex<Vec<Sender<ToClient>>>,
}

static REGISTRY: LazyLock<Mutex<HashMap<String, Arc<Entry>>>> = LazyLock::new(Default::default);

struct LoopSink {
    tx: Sender<ToClient>,
}

impl ReplySink for LoopSink {
    fn deliver(&self, _route: Route, header: Header, payload: Vec<u8>) {
        let _ = self.tx.send(ToClient::Reply(
            header.request_id,
            Status(header.status),
            payload,
        ));
    }
}

pub(crate) fn serve(
    loc: &Locator,
    handler: Arc<dyn Handler>,
    cfg: &DispatchConfig,
) -> Result<ServerHandle> {
    let name = loc.get("name").unwrap_or_default().to_string();
    let (tx, rx) = unbounded();
    let entry = Arc::new(Entry {
        tx: tx.clone(),
        clients: Mutex::new(Vec::new()),
    });
    {
        let mut reg = REGISTRY.lock();
        if reg.contains_key(&name) {
            return Err(Error::Bind {
                locator: loc.to_string(),
                reason: "name already served in this process".into(),
            });
        }
        reg.insert(name.clone(), entry.clone());
    }
    let shared = Arc::new(ServerShared::default());
    let cores = cfg.cores.max(1);
    let mut threads = Vec::new();
    for i in 0..cores {
        let (rx, handler, shared, cfg) = (rx.clone(), handler.clone(), shared.clone(), cfg.clone());
        let t = std::thread::Builder::new()
            .name(format!("loopback-dispatch-{i}"))
            .spawn(move || {
                shared.enter_dispatch_thread(&cfg, i);
                dispatch_loop(&rx, &*handler, cfg.poll);
            })
            .map_err(|e| Error::Bind {
                locator: loc.to_string(),
                reason: e.to_string(),
            })?;
        threads.push(t);
    }
    let wake = {
        let entry = entry.clone();
        move || {
            REGISTRY.lock().remove(&name);
            for _ in 0..cores {
                let _ = entry.tx.send(ToServer::Stop);
            }
            for c in entry.clients.lock().drain(..) {
                let _ = c.send(ToClient::Shutdown);
            }
        }
    };
    Ok(ServerHandle {
        local: loc.clone(),
        shared,
        threads,
        wake: Box::new(wake),
        poll: cfg.poll,
    })
}

fn dispatch_loop(rx: &Receiver<ToServer>, handler: &dyn Handler, poll: PollMode) {
    let mut out = Vec::new();
    let mut last_work = Instant::now();
    loop {
        let spinning = still_spinning(poll.spin_budget(), last_work.elapsed());
        let msg = if spinning {
            match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    std::hint::spin_loop();
                    continue;
                }
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match rx.recv_timeout(DISPATCH_MAX_BLOCK) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        last_work = Instant::now();
        let ToServer::Rpc {
            header,
            payload,
            reply,
        } = msg
        else {
            return;
        };
        let mut defer = || {
            let sink: Arc<dyn ReplySink> = Arc::new(LoopSink { tx: reply.clone() });
            Responder::new(sink, Route::Direct, header.opcode, header.request_id)
        };
        let r = match run_rpc(handler, &header, &payload, &mut out, &mut defer) {
            Outcome::Reply(s) => ToClient::Reply(header.request_id, s, std::mem::take(&mut out)),
            Outcome::Echo => ToClient::Reply(header.request_id, Status::OK, payload),
            Outcome::Deferred => continue,
        };
        let _ = reply.send(r);
    }
}

/// Within the spin budget (`None` spins forever)?
fn still_spinning(budget: Option<Duration>, elapsed: Duration) -> bool {
    match budget {
        None => true,
        Some(b) => elapsed < b,
    }
}

struct LoopClient {
    tx: Sender<ToServer>,
    reply_tx: Sender<ToClient>,
    rx: Receiver<ToClient>,
}

pub(crate) fn connect(loc: &Locator, cfg: &ClientConfig) -> Result<Session> {
    let name = loc.get("name").unwrap_or_default();
    let entry = REGISTRY
        .lock()
        .get(name)
        .cloned()
        .ok_or_else(|| Error::Connect {
            locator: loc.to_string(),
            reason: "no loopback server with that name in this process".into(),
        })?;
    let (reply_tx, rx) = unbounded();
    entry.clients.lock().push(reply_tx.clone());
    let chan = LoopClient {
        tx: entry.tx.clone(),
        reply_tx,
        rx,
    };
    Ok(Session::new(Box::new(chan), loc.clone(), cfg.poll))
}

impl ClientChannel for LoopClient {
    fn send_request(
        &self,
        header: &Header,
        payload: &[u8],
        _stalled: &mut dyn FnMut(),
    ) -> std::result::Result<(), LinkError> {
        self.tx
            .send(ToServer::Rpc {
                header: *header,
                payload: payload.to_vec(),
                reply: self.reply_tx.clone(),
            })
            .map_err(|_| LinkError::Closed("loopback server is gone"))
    }

    fn progress(
        &self,
        wait: Option<Duration>,
        out: &mut Vec<Delivery>,
    ) -> std::result::Result<(), LinkError> {
        let mut first = match self.rx.try_recv() {
            Ok(m) => Some(m),
            Err(_) => match wait {
                Some(w) if !w.is_zero() => self.rx.recv_timeout(w).ok(),
                _ => None,
            },
        };
        while let Some(m) = first.take().or_else(|| self.rx.try_recv().ok()) {
            match m {
                ToClient::Reply(id, s, d) => out.push((id, s, d)),
                ToClient::Shutdown => return Err(LinkError::Closed("server shut down")),
            }
        }
        Ok(())
    }
}
