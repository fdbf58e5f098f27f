//! The tasks of one connection: the read loop (parse and act), the writer (one write
//! per tick of everything queued) and the pinger.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::bus::{BACKLOG_HIGH, BACKLOG_LOW};
use glommio::net::TcpStream;

use super::{Client, Subscription};
use crate::bus::{Message, Origin};
use crate::net::writer::{
    flush, read_some, shutdown, write_all, write_pieces, write_vectored, Stream,
};
use crate::proto::encode;
use crate::proto::parser::{self, Limits, Op, Parsed, ProtoError};
use crate::shard::ShardCtx;
use crate::subject;

/// Bytes read per syscall at most; also the size of a fresh read buffer.
const READ_SIZE: usize = 64 * 1024;
/// The writer gives a buffer that grew past this back to the allocator after a flush.
const KEEP_OUT_CAPACITY: usize = 1 << 20;

/// What the read loop does after an op.
enum Next {
    Continue,
    /// The connection is closing: stop reading.
    Stop,
}

/// Serves one accepted connection until it closes; `websocket`: it came in on the
/// websocket listener and starts with the HTTP upgrade.
pub async fn serve(ctx: Rc<ShardCtx>, tcp: TcpStream, websocket: bool) {
    // IPv4 clients of the dual-stack listener arrive as `::ffff:a.b.c.d`; nats-server
    // shows them as plain IPv4 (INFO client_ip, /connz, logs).
    let peer = tcp
        .peer_addr()
        .ok()
        .map(|a| std::net::SocketAddr::new(a.ip().to_canonical(), a.port()));
    let _ = tcp.set_nodelay(true);
    let opts = ctx.opts();
    let _ = tcp.set_write_timeout(Some(opts.write_deadline));
    let cid = ctx.alloc_cid();
    let client = Rc::new(Client::new(cid, peer));
    client.websocket.set(websocket);
    let mut tcp = Some(tcp);
    let mut upgraded = None;
    if websocket {
        // The upgrade comes before INFO (and before counting the connection), as
        // nats-server's HTTP server answers it before a client exists.
        let Some(ws) = opts.websocket.clone() else {
            return;
        };
        let who = show(peer);
        let Some(raw) = tcp.take() else { return };
        let (inner, tls_state) = match crate::net::websocket::secure(&ws, raw, &who).await {
            Ok(s) => s,
            Err(_) => return,
        };
        match crate::net::websocket::upgrade(&ws, inner, ws.tls.is_some()).await {
            Ok(mut up) => {
                up.stream.set_who(format!("{who} - wid:{cid}"));
                *client.tls.borrow_mut() = tls_state.map(Rc::new);
                let cookie = |name: &Option<String>| {
                    let name = name.as_ref()?;
                    up.cookies
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                *client.ws_cookie_token.borrow_mut() = cookie(&ws.token_cookie);
                *client.ws_cookie_jwt.borrow_mut() = cookie(&ws.jwt_cookie);
                upgraded = Some(up);
            }
            Err(why) => {
                crate::log_error!("{who} - websocket handshake error: {why}");
                return;
            }
        }
    }

    // Auth (issue #5): auth_required and the nkey nonce.
    let info = super::auth::client_info(&ctx, &client);
    // With TLS, INFO goes out during negotiation (plaintext, or inside TLS with
    // handshake_first), except to a client refused for max_connections.
    let tls = if websocket { None } else { opts.tls.clone() };
    if tls.is_none() {
        client.queue(&info);
    }
    let admitted = ctx.server.admit_connection();
    if admitted {
        ctx.state.borrow_mut().clients.insert(cid, client.clone());
        crate::log_debug!("{} - cid:{} - Client connection created", show(peer), cid);
    } else {
        crate::log_error!("Maximum connections exceeded ({})", opts.max_connections);
        client.close(
            Some("maximum connections exceeded"),
            "Maximum Connections Exceeded",
        );
    }

    // ----- TLS negotiation (issue #5) -----
    let stream = match (upgraded, tcp) {
        (Some(up), _) => crate::net::stream::ConnStream::Ws(Box::new(up.stream)),
        (None, None) => return,
        (None, Some(tcp)) => match tls {
            None => crate::net::stream::ConnStream::Plain(tcp),
            Some(_) if !admitted => {
                client.queue(&info);
                crate::net::stream::ConnStream::Plain(tcp)
            }
            Some(tls) => {
                let who = format!("{} - cid:{}", show(peer), cid);
                match crate::net::stream::negotiate(&tls, opts.allow_non_tls, tcp, &info, &who)
                    .await
                {
                    Ok(n) => {
                        if !n.info_sent {
                            client.queue(&info);
                        }
                        *client.tls.borrow_mut() = n.tls.map(Rc::new);
                        n.stream
                    }
                    Err(reason) => {
                        client.kill(reason);
                        ctx.remove_client(&client);
                        ctx.server.release_connection();
                        crate::log_debug!("{who} - Client connection closed: {reason}");
                        return;
                    }
                }
            }
        },
    };
    let stream: Stream = Rc::new(RefCell::new(stream));
    let writer = glommio::spawn_local(write_loop(client.clone(), stream.clone()));
    let pinger = glommio::spawn_local(ping_loop(ctx.clone(), client.clone()));
    let _auth_timer = super::auth::start_timer(&ctx, &client); // Auth (issue #5)
    if admitted {
        read_loop(&ctx, &client, &stream).await;
    }
    client.close(None, "Client Closed");
    client.wake_writer();
    drop(pinger);
    ctx.remove_client(&client);
    crate::events::client_disconnect(&ctx, &client);
    writer.await;
    if client.auth.account_counted.get() {
        ctx.server.release_account_conn(client.account.get());
    }
    if admitted {
        ctx.server.release_connection();
        crate::log_debug!(
            "{} - cid:{} - Client connection closed: {}",
            show(peer),
            cid,
            client.close_reason.get()
        );
    }
}

fn show(peer: Option<std::net::SocketAddr>) -> String {
    peer.map(|p| p.to_string()).unwrap_or_default()
}

/// Reads, parses and acts until the connection closes. The read buffer is frozen into
/// a `Bytes` chunk before parsing so that messages for other shards can carry
/// zero-copy slices of it; a partial op at the end is carried into the next buffer.
async fn read_loop(ctx: &Rc<ShardCtx>, client: &Rc<Client>, stream: &Stream) {
    let opts = ctx.opts();
    let mut limits = Limits {
        max_control_line: opts.max_control_line,
        max_payload: opts.max_payload,
    };
    drop(opts);
    // Always fully initialised: `filled` bytes of data, the rest free space.
    let mut rbuf = BytesMut::zeroed(READ_SIZE);
    let mut filled = 0usize;
    loop {
        if rbuf.len() - filled < 512 {
            grow(&mut rbuf, filled, READ_SIZE);
        }
        let end = rbuf.len().min(filled + READ_SIZE);
        let n = match read_some(stream, &mut rbuf[filled..end]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if client.is_closed() {
            return;
        }
        filled += n;
        client.active.set(true);
        client.last_activity.set(std::time::SystemTime::now());

        // Nothing complete yet (e.g. a large payload still arriving): keep reading
        // into the same buffer rather than copying the partial op around.
        match parser::parse(&rbuf[..filled], &limits) {
            Ok(Parsed::Incomplete { need }) => {
                if need > rbuf.len() {
                    grow(&mut rbuf, filled, need);
                }
                continue;
            }
            Ok(Parsed::Op(..)) => {}
            Err(e) => {
                protocol_error(client, e);
                return;
            }
        }

        let chunk = rbuf.split_to(filled).freeze();
        let mut pos = 0;
        let mut need = 0;
        while pos < chunk.len() {
            match parser::parse(&chunk[pos..], &limits) {
                Ok(Parsed::Op(op, used)) => {
                    pos += used;
                    let connect = matches!(op, Op::Connect(_));
                    if let Next::Stop = handle_op(ctx, client, &chunk, op).await {
                        return;
                    }
                    if connect {
                        // A user JWT may carry its own (smaller) payload limit.
                        let server = ctx.opts().max_payload;
                        limits.max_payload = client
                            .auth
                            .max_payload
                            .get()
                            .map_or(server, |user| user.min(server));
                    }
                }
                Ok(Parsed::Incomplete { need: n }) => {
                    need = n;
                    break;
                }
                Err(e) => {
                    protocol_error(client, e);
                    return;
                }
            }
        }
        // Carry the partial op over.
        let rest = &chunk[pos..];
        filled = rest.len();
        if rbuf.len() < filled.max(need) + 512 {
            rbuf = BytesMut::zeroed(READ_SIZE.max(need + 512).max(filled + 512));
        }
        rbuf[..filled].copy_from_slice(rest);
        drop(chunk);

        // Queue members this client unsubscribed leave the table once no other shard
        // can still be choosing them.
        if !client.leaving.borrow().is_empty() {
            settle_interest(ctx, client).await;
        }

        // Fast producer, slow consumer: pause this publisher (bounded) while a consumer
        // it fed is past 75% of max_pending, as nats-server stalls fast producers.
        ctx.stall_for_slow_consumers().await;
        // Backpressure: stop reading while another shard's ring is far behind.
        for &peer in ctx.peers.iter().chain(ctx.cluster_core.iter()) {
            if ctx.mesh.backlog(peer) > BACKLOG_HIGH {
                ctx.mesh.wait_backlog(peer, BACKLOG_LOW).await;
            }
        }
        // Let writers and other connections run before the next read.
        futures_lite::future::yield_now().await;
    }
}

/// Makes room for at least `want` bytes in total, keeping the first `filled` bytes.
fn grow(rbuf: &mut BytesMut, filled: usize, want: usize) {
    let size = want.max(READ_SIZE).max(filled + 512);
    let mut fresh = BytesMut::zeroed(size);
    fresh[..filled].copy_from_slice(&rbuf[..filled]);
    *rbuf = fresh;
}

fn protocol_error(client: &Client, e: ProtoError) {
    let reason = match e {
        ProtoError::MaxControlLine => "Maximum Control Line Exceeded",
        ProtoError::MaxPayload => "Maximum Message Payload Exceeded",
        _ => "Protocol Violation",
    };
    crate::log_debug!("cid:{} - Client parser error: {:?}", client.cid, e);
    client.close(e.err_text(), reason);
}

async fn handle_op(ctx: &Rc<ShardCtx>, client: &Rc<Client>, chunk: &Bytes, op: Op<'_>) -> Next {
    if crate::logging::trace_enabled() {
        super::trace::op(client, &op, ctx.opts.borrow().max_traced_msg_len);
    }
    // Auth (issue #5): nothing but CONNECT before authentication, except that
    // no_auth_user lets a client start without one.
    if !client.auth.done.get() && !matches!(op, Op::Connect(_)) && ctx.auth_for(client).required() {
        match crate::auth::no_auth_identity(&ctx.auth_for(client)) {
            Some(id) => {
                super::auth::admit(ctx, client, id);
                client.connected.set(true);
            }
            None => {
                auth_violation(client, &crate::auth::Failure::Anonymous);
                return Next::Stop;
            }
        }
    }
    // Once a client sees any answer to an op sent after a SUB, that SUB must be in force
    // on every shard (a single nats-server gives that for free): before acting on
    // anything but more SUB/UNSUBs, wait for the other shards to apply it.
    if client.interest_dirty.get() && !matches!(op, Op::Sub { .. } | Op::Unsub { .. }) {
        settle_interest(ctx, client).await;
    }
    // A 503 answered right here must not overtake this client's earlier messages to
    // other shards (its publish, then its failed request, then a peer acting on it).
    if let Op::Pub {
        subject,
        reply: Some(_),
        ..
    } = op
    {
        if client.routed_dirty.get()
            && client.opts.borrow().no_responders
            && !ctx.has_interest(client.account.get(), subject)
        {
            client.routed_dirty.set(false);
            ctx.barrier().await;
        }
    }
    match op {
        Op::Pub {
            subject,
            reply,
            header_len,
            payload,
        } => on_pub(
            ctx,
            client,
            chunk,
            subject,
            reply.unwrap_or(b""),
            header_len,
            payload,
        ),
        Op::Sub {
            subject,
            queue,
            sid,
        } => {
            let added = on_sub(ctx, client, subject, queue, sid);
            // A verbose client may act on the +OK alone: it too means "in force".
            if added && client.opts.borrow().verbose {
                settle_interest(ctx, client).await;
                client.queue(encode::OK);
            }
            Next::Continue
        }
        Op::Unsub { sid, max } => on_unsub(ctx, client, sid, max),
        Op::Ping => on_ping(ctx, client).await,
        Op::Pong => {
            client.pings_out.set(0);
            if let Some(sent) = client.ping_sent.take() {
                client.rtt.set(Some(sent.elapsed()));
            }
            Next::Continue
        }
        Op::Connect(json) => on_connect(ctx, client, json).await,
        // A client's INFO must at least be JSON an object can be read from.
        Op::Info(json) => match serde_json::from_slice::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(_)) | Ok(serde_json::Value::Null) => Next::Continue,
            _ => {
                client.close(None, "Protocol Violation");
                Next::Stop
            }
        },
        Op::Ok => Next::Continue,
        Op::Err(_) => {
            client.close(None, "Parse Error");
            Next::Stop
        }
    }
}

/// Waits until every other shard applied this client's SUB/UNSUBs so far, then lets
/// its unsubscribed queue members leave the table.
async fn settle_interest(ctx: &ShardCtx, client: &Client) {
    client.interest_dirty.set(false);
    ctx.barrier().await;
    ctx.finish_leaving(client);
}

fn verbose_ok(client: &Client) {
    if client.opts.borrow().verbose {
        client.queue(encode::OK);
    }
}

/// `-ERR 'Authorization Violation'`, close, and nats-server's log line (which never
/// carries a password or token).
fn auth_violation(client: &Client, why: &crate::auth::Failure) {
    if let crate::auth::Failure::Jwt { reason, error, .. } = why {
        if *error {
            crate::log_error!("{} - cid:{} - {reason}", show(client.peer), client.cid);
        } else {
            crate::log_debug!("{} - cid:{} - {reason}", show(client.peer), client.cid);
        }
    }
    crate::log_error!(
        "{} - cid:{} - {}",
        show(client.peer),
        client.cid,
        why.log_text()
    );
    client.close(Some("Authorization Violation"), "Authentication Failure");
}

async fn on_connect(ctx: &ShardCtx, client: &Rc<Client>, json: &[u8]) -> Next {
    let mut opts = client.opts.borrow().clone();
    if opts.merge(json).is_err() {
        crate::log_debug!("cid:{} - Client parser error: bad CONNECT", client.cid);
        client.close(None, "Protocol Violation");
        return Next::Stop;
    }
    if opts.auth_token.as_deref().unwrap_or_default().is_empty() {
        if let Some(t) = client.ws_cookie_token.borrow().clone() {
            opts.auth_token = Some(t);
        }
    }
    if opts.jwt.as_deref().unwrap_or_default().is_empty() {
        if let Some(j) = client.ws_cookie_jwt.borrow().clone() {
            opts.jwt = Some(j);
        }
    }
    if opts.legacy_account {
        auth_violation(client, &crate::auth::Failure::Anonymous);
        return Next::Stop;
    }
    // Auth (issue #5): the read loop waits here (bcrypt runs off this thread), so no
    // op after CONNECT is processed before the client is authenticated.
    let auth = ctx.auth_for(client);
    let nonce = client.auth.nonce.borrow().clone();
    // TLS verify_and_map (issue #5): with users configured and no nkey in CONNECT,
    // the client certificate names the user.
    let tls_map = ctx.opts().tls.as_ref().is_some_and(|t| t.map)
        && !auth.users.is_empty()
        && opts.nkey.as_deref().unwrap_or_default().is_empty();
    let result = if tls_map {
        crate::tls::map_identity(&auth, client)
    } else {
        let origin = super::auth::origin(client);
        crate::auth::authenticate(&auth, &opts, nonce.as_deref(), &origin).await
    };
    match result {
        Ok(id) => {
            if id.fetched_account {
                // The URL resolver fetched its account: every shard's trust learns it
                // (this one at once, so its imports are in place before the client's
                // first message).
                ctx.apply_options(ctx.opts());
                for shard in (0..ctx.count).filter(|&s| s != ctx.index) {
                    ctx.server
                        .tell_shard(shard, crate::shard::control::ShardCommand::RefreshAuth);
                }
            }
            let conns = id.account_conns;
            if let Some(at) = id.expires {
                super::auth::close_at_expiry(client, at);
            }
            super::auth::admit(ctx, client, id);
            if let Some(limit) = conns {
                if !client.auth.account_counted.get() {
                    if !ctx.server.claim_account_conn(client.account.get(), limit) {
                        crate::log_error!(
                            "{} - cid:{} - maximum account active connections exceeded",
                            show(client.peer),
                            client.cid
                        );
                        client.close(
                            Some("maximum account active connections exceeded"),
                            "Maximum Account Connections Exceeded",
                        );
                        return Next::Stop;
                    }
                    client.auth.account_counted.set(true);
                }
            }
        }
        Err(why) => {
            // Kept for the auth error event: who tried, and the round trip so far.
            *client.opts.borrow_mut() = opts;
            estimate_rtt(client);
            auth_violation(client, &why);
            return Next::Stop;
        }
    }
    if client.is_closed() {
        return Next::Stop;
    }
    if !(0..=1).contains(&opts.protocol) {
        client.close(
            Some("invalid client protocol"),
            "Bad Client Protocol Version",
        );
        return Next::Stop;
    }
    if ctx.opts.borrow().no_header_support {
        opts.headers = false;
    }
    if opts.no_responders && !opts.headers {
        client.close(
            Some("no responders requires headers support"),
            "No Responders Requires Headers",
        );
        return Next::Stop;
    }
    // A repeated CONNECT starts over: nats-server drops the earlier subscriptions.
    if client.connected.get() && !client.subs.borrow().is_empty() {
        ctx.remove_all_subs(client);
        client.interest_dirty.set(true);
    }
    client.echo.set(opts.echo);
    client.headers.set(opts.headers);
    let verbose = opts.verbose;
    *client.opts.borrow_mut() = opts;
    let first_connect = !client.connected.replace(true);
    if first_connect {
        crate::events::client_connect(ctx, client);
    }
    estimate_rtt(client);
    if verbose {
        client.queue(encode::OK);
    }
    Next::Continue
}

/// nats-server's first RTT estimate, without a PING: the time from accepting the
/// connection to its CONNECT (INFO out, CONNECT back; TLS handshake included). The
/// PINGs of ping_loop refine it later.
fn estimate_rtt(client: &Client) {
    let since_accept = std::time::SystemTime::now()
        .duration_since(client.start)
        .unwrap_or_default();
    client
        .rtt
        .set(Some(since_accept.max(Duration::from_micros(1))));
}

async fn on_ping(ctx: &Rc<ShardCtx>, client: &Client) -> Next {
    // A PONG promises that earlier messages were delivered server-wide: wait for the
    // other shards to deliver what this client sent them.
    if client.routed_dirty.replace(false) {
        ctx.barrier().await;
    }
    client.queue(encode::PONG);
    let protocol = client.opts.borrow().protocol;
    if protocol >= 1 && client.connected.get() && !client.sent_connect_info.replace(true) {
        let info = ctx.server.connect_info(
            client.cid,
            client.peer,
            client.websocket.get(),
            &client.auth.account(),
        );
        client.queue(&info);
    }
    Next::Continue
}

/// Adds a subscription; true when one was added (the caller sends the verbose +OK).
fn on_sub(
    ctx: &ShardCtx,
    client: &Rc<Client>,
    subject: &[u8],
    queue: Option<&[u8]>,
    sid: &[u8],
) -> bool {
    if !subject::is_valid_subject(subject) {
        client.send_err("Invalid Subject");
        return false;
    }
    if queue == Some(b"_sys_") {
        client.send_err(&format!(
            "Permissions Violation for Subscription to \"{}\" using queue \"_sys_\"",
            String::from_utf8_lossy(subject)
        ));
        return false;
    }
    // Auth (issue #5): subscribe permissions.
    let denied = client
        .auth
        .perms
        .borrow()
        .as_ref()
        .is_some_and(|p| !p.can_subscribe(subject, queue));
    if denied {
        sub_violation(client, subject, queue, sid);
        return false;
    }
    client.auth.refresh_hook();
    if client.subs.borrow().contains(sid) {
        verbose_ok(client);
        return false;
    }
    // The server's limit (0: none) and the user's own (a JWT's `subs`; 0 allows none).
    let max_subs = match (
        ctx.opts.borrow().max_subscriptions,
        client.auth.max_subs.get(),
    ) {
        (0, user) => user,
        (server, Some(user)) => Some(server.min(user)),
        (server, None) => Some(server),
    };
    if let Some(max_subs) = max_subs.filter(|&m| client.subs.borrow().len() >= m) {
        crate::log_error!(
            "cid:{} - Maximum Subscriptions Exceeded (max={})",
            client.cid,
            max_subs
        );
        client.send_err("maximum subscriptions exceeded");
        return false;
    }
    let sub = Rc::new(Subscription {
        client: client.clone(),
        subject: Box::from(subject),
        queue: queue.map(Box::from),
        sid: Box::from(sid),
        max: Default::default(),
        delivered: Default::default(),
        removed: Default::default(),
        leaving: Default::default(),
    });
    client
        .subs
        .borrow_mut()
        .insert(crate::client::BySid(sub.clone()));
    ctx.add_sub(&mut ctx.state.borrow_mut(), sub);
    client.interest_dirty.set(true);
    true
}

fn on_unsub(ctx: &ShardCtx, client: &Client, sid: &[u8], max: Option<u64>) -> Next {
    let sub = client.subs.borrow().get(sid).map(|s| s.0.clone());
    if let Some(sub) = sub {
        match max {
            Some(max) if max > sub.delivered.get() => sub.max.set(max),
            _ => {
                client.forget_sub(sid);
                ctx.begin_leave(&mut ctx.state.borrow_mut(), &sub);
            }
        }
    }
    verbose_ok(client);
    Next::Continue
}

/// `Permissions Violation for Subscription to "s"[ using queue "q"]`, and its log line.
fn sub_violation(client: &Client, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
    let subject = String::from_utf8_lossy(subject);
    let sid = String::from_utf8_lossy(sid);
    let who = format!(
        "{} - cid:{}{}",
        show(client.peer),
        client.cid,
        client.auth.label()
    );
    match queue {
        Some(q) => {
            let q = String::from_utf8_lossy(q);
            crate::log_error!(
                "{who} - Subscription Violation - Subject \"{subject}\", Queue: \"{q}\", SID {sid}"
            );
            client.send_err(&format!(
                "Permissions Violation for Subscription to \"{subject}\" using queue \"{q}\""
            ));
        }
        None => {
            crate::log_error!("{who} - Subscription Violation - Subject \"{subject}\", SID {sid}");
            client.send_err(&format!(
                "Permissions Violation for Subscription to \"{subject}\""
            ));
        }
    }
}

fn permission_violation(client: &Client, what: &str, subject: &[u8]) {
    client.send_err(&format!(
        "Permissions Violation for {what} \"{}\"",
        String::from_utf8_lossy(subject)
    ));
}

/// Reply prefixes reserved for the server's own reply routing.
const RESERVED_REPLY_PREFIXES: [&[u8]; 3] = [b"_R_.", b"$JS.ACK.", b"_GR_."];

fn on_pub(
    ctx: &ShardCtx,
    client: &Rc<Client>,
    chunk: &Bytes,
    subject: &[u8],
    reply: &[u8],
    header_len: Option<usize>,
    payload: &[u8],
) -> Next {
    if header_len.is_some() && !client.headers.get() {
        client.close(None, "Protocol Violation");
        return Next::Stop;
    }
    let hdr_len = header_len.unwrap_or(0);
    client.stats.in_msgs.set(client.stats.in_msgs.get() + 1);
    client
        .stats
        .in_bytes
        .set(client.stats.in_bytes.get() + payload.len() as u64);
    let (pedantic, verbose, no_responders) = {
        let o = client.opts.borrow();
        (o.pedantic, o.verbose, o.no_responders)
    };
    if pedantic && !subject::is_valid_literal_subject(subject) {
        client.send_err("Invalid Publish Subject");
    }
    if subject.starts_with(b"$NRG.") {
        permission_violation(client, "Publish to", subject);
        return Next::Continue;
    }
    // Auth (issue #5): publish permissions, cached per subject.
    let denied = client
        .auth
        .perms
        .borrow()
        .as_ref()
        .is_some_and(|p| !p.can_publish(subject));
    if denied {
        crate::log_error!(
            "{} - cid:{}{} - Publish Violation - Subject \"{}\"",
            show(client.peer),
            client.cid,
            client.auth.label(),
            String::from_utf8_lossy(subject)
        );
        permission_violation(client, "Publish to", subject);
        return Next::Continue;
    }
    if !reply.is_empty() && RESERVED_REPLY_PREFIXES.iter().any(|p| reply.starts_with(p)) {
        permission_violation(client, "Publish with Reply of", reply);
        return Next::Continue;
    }
    if verbose {
        client.queue(encode::OK);
    }
    let mut st = ctx.state.borrow_mut();
    st.stats.in_msgs += 1;
    st.stats.in_bytes += payload.len() as u64;
    let want_status = no_responders && !reply.is_empty();
    let msg = Message::in_buffer(chunk, subject, reply, hdr_len, payload);
    let origin = Origin::Client(client.cid);
    if ctx.publish(&mut st, client.account.get(), &msg, origin, want_status) {
        client.routed_dirty.set(true);
    }
    Next::Continue
}

/// Writes whatever is queued, once per wake-up, until the connection closes.
async fn write_loop(client: Rc<Client>, stream: Stream) {
    loop {
        poll_fn(|cx| {
            if client.dead.get()
                || client.closing.get()
                || !client.out.borrow().is_empty()
                || stream.borrow().wants_flush()
            {
                Poll::Ready(())
            } else {
                client.writer.set(Some(cx.waker().clone()));
                stream.borrow_mut().park_writer(cx.waker());
                Poll::Pending
            }
        })
        .await;
        if client.dead.get() {
            break;
        }
        let (mut pending, mut shared) = {
            let mut out = client.out.borrow_mut();
            let spare = std::mem::take(&mut out.spare);
            let spare_shared = std::mem::take(&mut out.spare_shared);
            out.shared_len = 0;
            (
                std::mem::replace(&mut out.buf, spare),
                std::mem::replace(&mut out.shared, spare_shared),
            )
        };
        if pending.is_empty() && shared.is_empty() {
            if client.closing.get() {
                break;
            }
            if flush(&stream).await.is_err() {
                client.kill("Write Error");
                break;
            }
            continue;
        }
        let written = if shared.is_empty() {
            write_all(&stream, &pending).await
        } else if !stream.borrow().is_plain() {
            // sendmsg on the raw socket would bypass TLS or the websocket framing:
            // write the pieces through the stream (one websocket frame per flush).
            write_pieces(&stream, &pending, &shared).await
        } else {
            write_vectored(&stream, &pending, &shared).await
        };
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::TimedOut {
                crate::log_warn!(
                    "cid:{} - Slow Consumer Detected: WriteDeadline of {:?} exceeded",
                    client.cid,
                    stream.borrow().tcp().write_timeout().unwrap_or_default()
                );
                client.kill("Slow Consumer (Write Deadline)");
            } else {
                client.kill("Write Error");
            }
            break;
        }
        pending.clear();
        shared.clear();
        let mut out = client.out.borrow_mut();
        if pending.capacity() <= KEEP_OUT_CAPACITY {
            out.spare = pending;
        }
        out.spare_shared = shared;
    }
    if !client.dead.get() && !stream.borrow().is_plain() {
        // An orderly close: tell a TLS peer (Go's tls.Conn.Close does too), and a
        // websocket peer why, with nats-server's close status.
        stream
            .borrow_mut()
            .send_close_notify(client.close_reason.get());
        let _ = flush(&stream).await;
    }
    client.dead.set(true);
    shutdown(&stream);
}

/// Sends PINGs every ping_interval and closes a connection that stopped answering.
async fn ping_loop(ctx: Rc<ShardCtx>, client: Rc<Client>) {
    let opts = ctx.opts();
    let interval = opts.ping_interval;
    // The first PING comes soon after CONNECT (at most 2s); a client that has not
    // sent CONNECT by then waits out a whole interval, as nats-server does.
    let short = interval.min(Duration::from_secs(2));
    glommio::timer::sleep(short).await;
    if !client.connected.get() {
        glommio::timer::sleep(interval.saturating_sub(short)).await;
    }
    let mut first = true;
    loop {
        if client.is_closed() {
            return;
        }
        // A client that is sending data is alive; after the first PING, skip ours.
        if !first && client.active.replace(false) && client.pings_out.get() == 0 {
            glommio::timer::sleep(interval).await;
            continue;
        }
        first = false;
        if client.pings_out.get() + 1 > opts.ping_max {
            crate::log_debug!("cid:{} - Stale Client Connection - Closing", client.cid);
            client.close(Some("Stale Connection"), "Stale Connection");
            return;
        }
        client.pings_out.set(client.pings_out.get() + 1);
        if client.ping_sent.get().is_none() {
            client.ping_sent.set(Some(std::time::Instant::now()));
        }
        client.queue(encode::PING);
        glommio::timer::sleep(interval).await;
    }
}
