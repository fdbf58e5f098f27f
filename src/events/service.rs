//! The system account's request services (`$SYS.REQ.SERVER.PING`, `.<id>.VARZ`,
//! `$SYS.REQ.ACCOUNT.<acc>.CONNZ`, `$SYS.REQ.USER.INFO`, ...) and the server's own
//! periodic `STATSZ`, as nats-server 2.15 answers and sends them.
//!
//! An internal client of the system account, without a socket, lives on the first
//! client shard. Its subscriptions are ordinary entries of the shard's interest
//! table, so requests reach it from any shard or route through the normal message
//! path (the rings wake the shard at once: no command poll in between) and its
//! interest goes to the routes like any client's. Deliveries land in its outbound
//! buffer as `MSG`/`HMSG` frames; a task reads them back and answers each request
//! on a task of its own, gathering the other executors' snapshots over the rings
//! ([`ShardCtx::ask_all`]) and building the same documents as the monitoring port.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::gojson::{self, Field, Kind, FILTER};
use crate::account::AccountId;
use crate::bus::{Message, Origin};
use crate::client::{Client, Subscription};
use crate::monitor::{connz, misc, subsz, varz};
use crate::shard::{Answers, ShardCtx};

/// How long a request waits for the other executors' snapshots.
const GATHER_WAIT: Duration = Duration::from_secs(2);
/// The first `STATSZ` goes out this soon after start.
const STATSZ_FIRST: Duration = Duration::from_millis(250);
/// The interval after the first, doubled after each until [`STATSZ_MAX`] (what
/// nats-server 2.15.1 was seen to do: 0.25 s, then 1, 2, 4, 8, 10, 10 s apart).
const STATSZ_SECOND: Duration = Duration::from_secs(1);
/// The longest interval between two `STATSZ` (nats-server's `statsz` heartbeat).
const STATSZ_MAX: Duration = Duration::from_secs(10);

/// The server monitoring documents a request can name.
const SERVER_KINDS: [&str; 10] = [
    "IDZ", "STATSZ", "VARZ", "CONNZ", "SUBSZ", "ROUTEZ", "GATEWAYZ", "LEAFZ", "ACCOUNTZ", "HEALTHZ",
];
/// The per-account documents (`$SYS.REQ.ACCOUNT.<acc>.<kind>`).
const ACCOUNT_KINDS: [&str; 6] = ["SUBSZ", "CONNZ", "LEAFZ", "INFO", "STATZ", "CONNS"];

/// What one internal subscription answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    /// `$SYS.REQ.SERVER.PING` and the `STATSZ` kind: `{server, statsz}`.
    Statsz,
    /// A server document in the `{server, data}` envelope (or `IDZ`, bare).
    Server(&'static str),
    /// An account document; the account is the subject's fourth token.
    Account(&'static str),
    /// `$SYS.REQ.USER.INFO`.
    UserInfo,
    /// The full account resolver's `CLAIMS.UPDATE`, `LOOKUP`, `LIST`, `DELETE`.
    Claims(Claims),
    /// `$SYS.REQ.SERVER.<id>.KICK` (false) and `.LDM` (true): `{"cid": N}`.
    ClientOp(bool),
    /// `$SYS.REQ.SERVER.<id>.RELOAD`: what SIGHUP does.
    Reload,
}

/// What a full resolver request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claims {
    /// Store the account JWT in the body (`$SYS.REQ.CLAIMS.UPDATE`, or
    /// `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` naming it).
    Update,
    /// Answer the JWT of the subject's account.
    Lookup,
    /// Answer the keys of every account held.
    List,
    /// Delete the accounts an operator-signed claim names.
    Delete,
}

/// The internal client and what each of its subscriptions (sid = index) serves.
struct Services {
    ctx: Rc<ShardCtx>,
    client: Rc<Client>,
    sys: AccountId,
    table: Vec<Service>,
    /// Deliveries to the internal client already taken out of the shard's counters.
    uncounted: Cell<(u64, u64)>,
}

/// Marks the system account on this shard and, on the first client shard, starts
/// the services; a no-op without a system account.
pub fn start(ctx: &Rc<ShardCtx>) {
    let Some(name) = varz::system_account(&ctx.server.current_opts()) else {
        return;
    };
    // nats-server creates the system account when the config does not.
    let sys = ctx.server.account_id(&name);
    ctx.state.borrow_mut().tables(sys).system = true;
    if ctx.index != 0 {
        return;
    }
    // cid 0 is no connection's: no real client ever shares it.
    let client = Rc::new(Client::new(0, None));
    client.account.set(sys);
    client.connected.set(true);
    // USER.INFO reads its requester from a header; requests from the server itself
    // (Origin::Server, cid 0 as this client's) must not be taken for echoes.
    client.headers.set(true);
    client.echo.set(true);
    let id = ctx.server.server_id.clone();
    let mut subjects: Vec<(String, Service)> =
        vec![("$SYS.REQ.SERVER.PING".into(), Service::Statsz)];
    for kind in SERVER_KINDS {
        let service = if kind == "STATSZ" {
            Service::Statsz
        } else {
            Service::Server(kind)
        };
        subjects.push((format!("$SYS.REQ.SERVER.PING.{kind}"), service));
        subjects.push((format!("$SYS.REQ.SERVER.{id}.{kind}"), service));
    }
    for kind in ACCOUNT_KINDS {
        subjects.push((format!("$SYS.REQ.ACCOUNT.*.{kind}"), Service::Account(kind)));
    }
    subjects.push((format!("$SYS.REQ.SERVER.{id}.RELOAD"), Service::Reload));
    subjects.push((
        format!("$SYS.REQ.SERVER.{id}.KICK"),
        Service::ClientOp(false),
    ));
    subjects.push((format!("$SYS.REQ.SERVER.{id}.LDM"), Service::ClientOp(true)));
    subjects.push(("$SYS.REQ.USER.INFO".into(), Service::UserInfo));
    // What other accounts' `$SYS.REQ.USER.INFO` imports map to.
    subjects.push(("$SYS.REQ.USER.*.INFO".into(), Service::UserInfo));
    let full = ctx
        .auth()
        .trust
        .as_ref()
        .is_some_and(|t| matches!(t.resolver, crate::auth::operator::Resolver::Full { .. }));
    if full {
        for (subject, op) in [
            ("$SYS.REQ.CLAIMS.UPDATE", Claims::Update),
            ("$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE", Claims::Update),
            ("$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP", Claims::Lookup),
            ("$SYS.REQ.CLAIMS.LIST", Claims::List),
            ("$SYS.REQ.CLAIMS.DELETE", Claims::Delete),
        ] {
            subjects.push((subject.into(), Service::Claims(op)));
        }
    }
    let mut table = Vec::with_capacity(subjects.len());
    {
        let mut st = ctx.state.borrow_mut();
        for (sid, (subject, service)) in subjects.into_iter().enumerate() {
            let sub = Rc::new(Subscription {
                client: client.clone(),
                subject: subject.into_bytes().into_boxed_slice(),
                queue: None,
                sid: sid.to_string().into_bytes().into_boxed_slice(),
                max: Default::default(),
                delivered: Default::default(),
                removed: Default::default(),
                leaving: Default::default(),
            });
            client
                .subs
                .borrow_mut()
                .insert(crate::client::BySid(sub.clone()));
            ctx.add_sub(&mut st, sub);
            table.push(service);
        }
    }
    let services = Rc::new(Services {
        ctx: ctx.clone(),
        client,
        sys,
        table,
        uncounted: Cell::new((0, 0)),
    });
    glommio::spawn_local(serve(services.clone())).detach();
    glommio::spawn_local(statsz_loop(services)).detach();
}

/// Reads the internal client's deliveries and answers each on a task of its own.
async fn serve(svc: Rc<Services>) {
    loop {
        std::future::poll_fn(|cx| {
            if svc.client.out.borrow().is_empty() && !svc.client.dead.get() {
                svc.client.writer.set(Some(cx.waker().clone()));
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        if svc.client.dead.get() {
            // Cut as a slow consumer by a flood of requests within one tick: what
            // was queued is gone, but the services must outlive the flood.
            svc.client.dead.set(false);
            svc.client.closing.set(false);
        }
        let data = take_output(&svc.client);
        svc.uncount();
        for req in parse_frames(&data) {
            let Some(&service) = svc.table.get(req.sid) else {
                continue;
            };
            let svc = svc.clone();
            glommio::spawn_local(async move { svc.answer(service, req).await }).detach();
        }
    }
}

/// Everything queued for the internal client, large payloads put back in place.
fn take_output(client: &Client) -> Vec<u8> {
    let mut out = client.out.borrow_mut();
    let buf = std::mem::take(&mut out.buf);
    let shared = std::mem::take(&mut out.shared);
    out.shared_len = 0;
    let mut data = Vec::with_capacity(buf.len() + shared.iter().map(|s| s.1.len()).sum::<usize>());
    let mut at = 0;
    for (offset, bytes) in shared {
        data.extend_from_slice(&buf[at..offset]);
        data.extend_from_slice(&bytes);
        at = offset;
    }
    data.extend_from_slice(&buf[at..]);
    data
}

/// One request as the internal client received it.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    subject: String,
    sid: usize,
    reply: String,
    headers: Vec<u8>,
    body: Vec<u8>,
}

/// Splits `MSG`/`HMSG` frames (the shard wrote them: well formed).
fn parse_frames(mut data: &[u8]) -> Vec<Request> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&data[..eol]).into_owned();
        let t: Vec<&str> = line.split(' ').collect();
        let (hmsg, n) = match t.first() {
            Some(&"MSG") => (false, t.len()),
            Some(&"HMSG") => (true, t.len()),
            _ => break,
        };
        let sizes = if hmsg { 2 } else { 1 };
        if n < 3 + sizes {
            break;
        }
        let reply = if n == 4 + sizes { t[3] } else { "" };
        let total: usize = t[n - 1].parse().unwrap_or(0);
        let hdr: usize = if hmsg {
            t[n - 2].parse().unwrap_or(0)
        } else {
            0
        };
        let start = eol + 2;
        if data.len() < start + total + 2 || hdr > total {
            break;
        }
        let payload = &data[start..start + total];
        out.push(Request {
            subject: t[1].to_string(),
            sid: t[2].parse().unwrap_or(usize::MAX),
            reply: reply.to_string(),
            headers: payload[..hdr].to_vec(),
            body: payload[hdr..].to_vec(),
        });
        data = &data[start + total + 2..];
    }
    out
}

/// The option fields of each document's request, as nats-server's structs name them.
fn options_of(kind: &str) -> (&'static str, &'static [Field]) {
    match kind {
        "CONNZ" => (
            "ConnzEventOptions",
            &[
                ("sort", Kind::NamedStr("server.SortOpt")),
                ("auth", Kind::Bool),
                ("subscriptions", Kind::Bool),
                ("subscriptions_detail", Kind::Bool),
                ("offset", Kind::Int),
                ("limit", Kind::Int),
                ("cid", Kind::Uint),
                ("mqtt_client", Kind::Str),
                ("state", Kind::NamedInt("server.ConnState")),
                ("user", Kind::Str),
                ("acc", Kind::Str),
                ("filter_subject", Kind::Str),
            ],
        ),
        "SUBSZ" => (
            "SubszEventOptions",
            &[
                ("offset", Kind::Int),
                ("limit", Kind::Int),
                ("subscriptions", Kind::Bool),
                ("account", Kind::Str),
                ("test", Kind::Str),
            ],
        ),
        "ROUTEZ" => (
            "RoutezEventOptions",
            &[
                ("subscriptions", Kind::Bool),
                ("subscriptions_detail", Kind::Bool),
            ],
        ),
        "GATEWAYZ" => (
            "GatewayzEventOptions",
            &[
                ("name", Kind::Str),
                ("accounts", Kind::Bool),
                ("account_name", Kind::Str),
                ("subscriptions", Kind::Bool),
                ("subscriptions_detail", Kind::Bool),
            ],
        ),
        "LEAFZ" => (
            "LeafzEventOptions",
            &[("subscriptions", Kind::Bool), ("account", Kind::Str)],
        ),
        "ACCOUNTZ" => ("AccountzEventOptions", &[("account", Kind::Str)]),
        "HEALTHZ" => (
            "HealthzEventOptions",
            &[
                ("js-enabled", Kind::Bool),
                ("js-enabled-only", Kind::Bool),
                ("js-server-only", Kind::Bool),
                ("js-meta-only", Kind::Bool),
                ("account", Kind::Str),
                ("stream", Kind::Str),
                ("consumer", Kind::Str),
                ("details", Kind::Bool),
            ],
        ),
        "INFO" => ("AccInfoEventOptions", &[]),
        "STATZ" => (
            "AccountStatzEventOptions",
            &[("accounts", Kind::StrList), ("include_unused", Kind::Bool)],
        ),
        "VARZ" => ("VarzEventOptions", &[]),
        _ => ("StatszEventOptions", &[]),
    }
}

/// What a document needs gathered from the other executors.
fn needs(kind: &str, opts: &gojson::Decoded) -> (bool, bool) {
    let subs = match kind {
        "CONNZ" | "ROUTEZ" => opts.bool("subscriptions") || opts.bool("subscriptions_detail"),
        "SUBSZ" | "INFO" => true,
        _ => false,
    };
    let subs = subs || (kind == "LEAFZ" && opts.bool("subscriptions"));
    let cluster = matches!(kind, "ROUTEZ" | "STATSZ" | "VARZ" | "LEAFZ" | "GATEWAYZ");
    (subs, cluster)
}

impl Services {
    /// Takes the internal client's deliveries back out of the shard's counters:
    /// nats-server counts what reaches clients, not its own service subscriptions.
    fn uncount(&self) {
        let (msgs, bytes) = (
            self.client.stats.out_msgs.get(),
            self.client.stats.out_bytes.get(),
        );
        let (done_msgs, done_bytes) = self.uncounted.replace((msgs, bytes));
        let mut st = self.ctx.state.borrow_mut();
        st.stats.out_msgs = st.stats.out_msgs.saturating_sub(msgs - done_msgs);
        st.stats.out_bytes = st.stats.out_bytes.saturating_sub(bytes - done_bytes);
    }

    /// Every client shard's snapshot (this one's first) and the routes'.
    async fn gather(&self, subs: bool, routes: bool) -> Answers {
        let mut answers = self.ctx.ask_all(subs, routes, GATHER_WAIT).await;
        answers.shards.push(self.ctx.snapshot(subs));
        answers.shards.sort_by_key(|s| s.id);
        answers
    }

    async fn answer(&self, service: Service, req: Request) {
        match service {
            Service::Statsz => self.statsz_request(&req).await,
            Service::Server("IDZ") => {
                let server = &self.ctx.server;
                let opts = server.current_opts();
                let idz =
                    json!({"name": server.server_name, "host": opts.host, "id": server.server_id});
                self.reply(&req.reply, &idz);
            }
            Service::Server(kind) => self.server_request(kind, &req).await,
            Service::Account(kind) => self.account_request(kind, &req).await,
            Service::UserInfo => self.user_info(&req),
            Service::Claims(op) => self.claims(op, &req).await,
            Service::ClientOp(ldm) => self.client_op(ldm, &req).await,
            Service::Reload => self.reload(&req).await,
        }
    }

    /// A reload on the control thread; the answer waits for its outcome.
    async fn reload(&self, req: &Request) {
        if !req.body.is_empty() {
            // nats-server decodes the body (options it does not use yet).
            if let Err(e) = gojson::decode(&req.body, "ConfigReloadOptions", &[]) {
                self.reply_error(&req.reply, 400, &e, false);
                return;
            }
        }
        let outcome = self.ctx.server.request_reload();
        let outcome = glommio::executor()
            .spawn_blocking(move || {
                outcome
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .unwrap_or_else(|_| Err("reload timed out".into()))
            })
            .await;
        match outcome {
            Ok(()) => self.publish_with_server(&req.reply, |server| json!({"server": server})),
            Err(e) => self.reply_error(&req.reply, 500, &format!("{e}\n"), false),
        }
    }

    /// KICK or LDM of one client connection, on whichever shard owns it.
    async fn client_op(&self, ldm: bool, req: &Request) {
        let what = if ldm { "ldm" } else { "kick" };
        let opts = match gojson::decode(
            &req.body,
            "KickClientReq",
            &[&[("cid", gojson::Kind::Uint)]],
        ) {
            Ok(o) => o,
            Err(e) => {
                crate::log_error!("SYSTEM - Error unmarshalling {what} client request: {e}");
                return;
            }
        };
        let cid = opts.uint("cid");
        let ctx = &self.ctx;
        let shard = ctx.server.shard_of(cid);
        let done = if cid == 0 {
            Err(crate::shard::control::NO_SUCH_CLIENT)
        } else if shard == ctx.index {
            crate::shard::control::client_op(ctx, cid, ldm)
        } else {
            let (tx, rx) = crossbeam_channel::bounded(1);
            ctx.server.tell_shard(
                shard,
                crate::shard::control::ShardCommand::ClientOp {
                    cid,
                    ldm,
                    reply: tx,
                },
            );
            glommio::executor()
                .spawn_blocking(move || {
                    rx.recv_timeout(GATHER_WAIT)
                        .unwrap_or(Err(crate::shard::control::NO_SUCH_CLIENT))
                })
                .await
        };
        match done {
            Ok(()) => self.publish_with_server(&req.reply, |server| json!({"server": server})),
            Err(why) => self.reply_error(&req.reply, 500, why, false),
        }
    }

    /// The full resolver's requests, as nats-server answers them. Stores and
    /// deletes run on the blocking pool; after one, every shard rebuilds its
    /// authentication (connections of a changed account are checked again).
    async fn claims(&self, op: Claims, req: &Request) {
        let Some(trust) = self.ctx.auth().trust.clone() else {
            return;
        };
        // `$SYS.REQ.ACCOUNT.<key>.CLAIMS.*`: the key is the fourth token.
        let key = req
            .subject
            .strip_prefix("$SYS.REQ.ACCOUNT.")
            .and_then(|r| r.split('.').next())
            .map(str::to_string);
        match op {
            Claims::Lookup => {
                let jwt = key
                    .as_ref()
                    .and_then(|k| trust.accounts.get(k))
                    .map(|a| a.jwt.clone())
                    .unwrap_or_default();
                if !req.reply.is_empty() {
                    self.publish(&req.reply, jwt.into_bytes());
                }
            }
            Claims::List => {
                let mut keys: Vec<&String> = trust.accounts.keys().collect();
                keys.sort();
                self.reply_data(&req.reply, Ok(json!(keys)));
            }
            Claims::Update => {
                let token = String::from_utf8_lossy(&req.body).into_owned();
                let t = trust.clone();
                let pushed = token.clone();
                let stored = glommio::executor()
                    .spawn_blocking(move || t.store(&token, key.as_deref()))
                    .await;
                let cache = matches!(
                    trust.resolver,
                    crate::auth::operator::Resolver::Full { cache: true, .. }
                );
                match stored {
                    Err((account, why)) if why == crate::auth::operator::CACHE_SKIPPED => {
                        // nats-server answers only the per-account subject.
                        if req.subject.starts_with("$SYS.REQ.ACCOUNT.") {
                            let data = json!({"account": account, "code": 200, "message": why});
                            self.reply_data(&req.reply, Ok(data));
                        }
                    }
                    Ok(account) => {
                        self.refresh_auth();
                        if let Some(limit) =
                            trust.read_account(&pushed).ok().and_then(|a| a.limits.0)
                        {
                            self.enforce_conn_limit(&account, limit).await;
                        }
                        let message = if cache {
                            "jwt updated cache"
                        } else {
                            "jwt updated"
                        };
                        let data = json!({"account": account, "code": 200, "message": message});
                        self.reply_data(&req.reply, Ok(data));
                    }
                    Err((account, why)) => {
                        let text = format!("jwt update resulted in error - {why}");
                        crate::log_error!("jwt update resulted in error - {account} - {why}");
                        let error = json!({"account": account, "code": 500, "description": text});
                        self.publish_with_server(
                            &req.reply,
                            |server| json!({"server": server, "error": error}),
                        );
                    }
                }
            }
            Claims::Delete => {
                let token = String::from_utf8_lossy(&req.body).into_owned();
                let t = trust.clone();
                let deleted = glommio::executor()
                    .spawn_blocking(move || t.delete(&token))
                    .await;
                match deleted {
                    Ok(n) => {
                        self.refresh_auth();
                        let data = json!({"code": 200, "message": format!("deleted {n} accounts")});
                        self.reply_data(&req.reply, Ok(data));
                    }
                    Err(why) => {
                        let text = format!("delete accounts request by  failed - {why}");
                        crate::log_error!("{text}");
                        self.reply_error(&req.reply, 500, &text, false);
                    }
                }
            }
        }
    }

    /// After an update lowered `account`'s connection limit: closes its newest
    /// connections beyond `limit`, server-wide, as nats-server does.
    async fn enforce_conn_limit(&self, account: &str, limit: usize) {
        let answers = self.gather(false, false).await;
        let mut conns: Vec<_> = answers
            .shards
            .iter()
            .flat_map(|s| s.conns.iter())
            .filter(|c| c.account == account && c.cid != 0)
            .map(|c| (c.start, c.cid))
            .collect();
        if conns.len() <= limit {
            return;
        }
        conns.sort();
        for &(_, cid) in &conns[limit..] {
            self.ctx.server.tell_shard(
                self.ctx.server.shard_of(cid),
                crate::shard::control::ShardCommand::CloseWith {
                    cid,
                    err: "maximum account active connections exceeded",
                    reason: "Maximum Account Connections Exceeded",
                },
            );
        }
    }

    /// Tells every shard that the resolver's accounts changed.
    fn refresh_auth(&self) {
        self.ctx
            .server
            .tell_shards(|_| crate::shard::control::ShardCommand::RefreshAuth);
    }

    /// Decodes a request body: `Ok(None)` when the filter leaves this server out,
    /// `Err` with nats-server's 400 answer already sent when the body is bad.
    fn decode(&self, kind: &str, req: &Request) -> Result<Option<gojson::Decoded>, ()> {
        if req.body.is_empty() {
            return Ok(Some(gojson::Decoded::default()));
        }
        let (name, fields) = options_of(kind);
        match gojson::decode(&req.body, name, &[fields, FILTER]) {
            Ok(opts) if self.filtered_out(&opts) => Ok(None),
            Ok(opts) => Ok(Some(opts)),
            Err(e) => {
                self.reply_error(&req.reply, 400, &e, false);
                Err(())
            }
        }
    }

    /// nats-server's `filterRequest`: a server the filter does not name stays silent.
    fn filtered_out(&self, f: &gojson::Decoded) -> bool {
        let server = &self.ctx.server;
        let opts = server.current_opts();
        let cluster = opts
            .cluster
            .as_ref()
            .and_then(|c| c.name.clone())
            .unwrap_or_default();
        let (name, host, want_cluster) = (f.str("server_name"), f.str("host"), f.str("cluster"));
        (!name.is_empty() && !server.server_name.contains(&name))
            || (!host.is_empty() && !opts.host.contains(&host))
            || (!want_cluster.is_empty() && !cluster.contains(&want_cluster))
            || f.list("tags").iter().any(|t| !opts.tags.contains(t))
            || !f.str("domain").is_empty()
    }

    async fn statsz_request(&self, req: &Request) {
        if self.decode("STATSZ", req).ok().flatten().is_none() {
            return;
        }
        let reply = if req.reply.is_empty() {
            format!("$SYS.SERVER.{}.STATSZ", self.ctx.server.server_id)
        } else {
            req.reply.clone()
        };
        let statsz = self.statsz().await;
        self.publish_with_server(&reply, |server| json!({"server": server, "statsz": statsz}));
    }

    async fn server_request(&self, kind: &'static str, req: &Request) {
        if req.reply.is_empty() {
            return;
        }
        let Ok(Some(o)) = self.decode(kind, req) else {
            return;
        };
        let (subs, routes) = needs(kind, &o);
        let answers = self.gather(subs, routes).await;
        let server = &self.ctx.server;
        let data = match kind {
            "VARZ" => Ok(to_value(&varz::build(server, &answers.shards))),
            "CONNZ" => connz::build(server, &connz_opts(&o), answers.shards).map(|d| to_value(&d)),
            "SUBSZ" => subsz::build(server, &subsz_opts(&o), &answers.shards).map(|d| to_value(&d)),
            "ROUTEZ" => {
                let subs = o.bool("subscriptions") || o.bool("subscriptions_detail");
                Ok(to_value(&misc::routez_doc(
                    server,
                    subs,
                    answers.cluster.routes,
                )))
            }
            "GATEWAYZ" => Ok(to_value(&misc::gatewayz_doc(
                server,
                answers.cluster.gateways,
                o.bool("accounts"),
                &o.str("name"),
            ))),
            "LEAFZ" => Ok(to_value(&misc::leafz_doc(
                server,
                o.bool("subscriptions"),
                &o.str("account"),
                answers.cluster.leafs,
            ))),
            "ACCOUNTZ" => {
                let acc = o.str("account");
                let snaps = if acc.is_empty() {
                    Vec::new()
                } else {
                    self.gather(true, false).await.shards
                };
                misc::accountz_doc(server, &acc, &snaps).map(|d| to_value(&d))
            }
            // Core NATS is healthy once it serves; the request form adds the code.
            _ => Ok(json!({"status": "ok", "status_code": 200})),
        };
        self.reply_data(&req.reply, data);
    }

    async fn account_request(&self, kind: &'static str, req: &Request) {
        let acc = req.subject.split('.').nth(3).unwrap_or("").to_string();
        if kind == "CONNS" {
            return self.conns_request(&acc, req).await;
        }
        if req.reply.is_empty() {
            return;
        }
        let Ok(Some(o)) = self.decode(kind, req) else {
            return;
        };
        let (subs, _) = needs(kind, &o);
        let server = &self.ctx.server;
        let data = match kind {
            "CONNZ" => {
                let mut opts = connz_opts(&o);
                opts.acc = acc;
                let answers = self.gather(subs, false).await;
                connz::build(server, &opts, answers.shards).map(|d| to_value(&d))
            }
            "SUBSZ" => {
                let mut opts = subsz_opts(&o);
                opts.subs = true;
                opts.acc = acc;
                let answers = self.gather(true, false).await;
                subsz::build(server, &opts, &answers.shards).map(|d| to_value(&d))
            }
            "LEAFZ" => {
                let answers = self.gather(subs, true).await;
                Ok(to_value(&misc::leafz_doc(
                    server,
                    o.bool("subscriptions"),
                    &acc,
                    answers.cluster.leafs,
                )))
            }
            "INFO" => {
                let answers = self.gather(true, false).await;
                misc::account_detail(server, &acc, &answers.shards).map(|d| to_value(&d))
            }
            _ => {
                // STATZ: `$SYS.REQ.ACCOUNT.PING.STATZ` is every account's (another
                // subscription of nats-server's), a named account only its own, and
                // nothing at all when it has no connections here (unless asked).
                let unused = o.bool("include_unused");
                let only = if acc == "PING" {
                    o.list("accounts")
                } else {
                    vec![acc]
                };
                let answers = self.gather(false, false).await;
                let doc = misc::accstatz_doc(server, unused, &only, &answers.shards);
                if doc.is_empty() && !unused {
                    return;
                }
                Ok(to_value(&doc))
            }
        };
        self.reply_data(&req.reply, data);
    }

    /// `$SYS.REQ.ACCOUNT.<acc>.CONNS`: the account's connection event, sent to the
    /// reply only when the account has connections here (a bad body is only logged
    /// by nats-server).
    async fn conns_request(&self, acc: &str, req: &Request) {
        if req.reply.is_empty() {
            return;
        }
        if !req.body.is_empty() {
            match gojson::decode(&req.body, "accNumConnsReq", &[&[("acc", Kind::Str)]]) {
                Ok(o) if o.str("acc") == acc => {}
                _ => return,
            }
        }
        if self.ctx.server.account_lookup(acc).is_none() {
            return;
        }
        let answers = self.gather(false, false).await;
        let stat = misc::account_stat(&self.ctx.server, acc, &answers.shards);
        if stat.conns() == 0 {
            return;
        }
        self.publish_with_server(&req.reply, |server| {
            let mut doc = json!({
                "type": "io.nats.server.advisory.v1.account_connections",
                "id": super::event_id(),
                "timestamp": crate::monitor::format::rfc3339(std::time::SystemTime::now()),
                "server": server,
            });
            if let (Some(doc), Value::Object(stat)) = (doc.as_object_mut(), to_value(&stat)) {
                doc.extend(stat);
            }
            doc
        });
    }

    /// `$SYS.REQ.USER.INFO`: the requester's user and account, from the
    /// `Nats-Request-Info` header its shard added.
    fn user_info(&self, req: &Request) {
        if req.reply.is_empty() {
            return;
        }
        let info = request_info(&req.headers);
        let field = |k: &str| {
            info.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let account = field("acc");
        let mut data = json!({"user": field("user"), "account": account});
        if !account.is_empty() {
            let name = field("name_tag");
            data["account_name"] = if name.is_empty() { account } else { name }.into();
        }
        let user_name = field("user_name");
        if !user_name.is_empty() {
            data["user_name"] = user_name.into();
        }
        self.reply_data(&req.reply, Ok(data));
    }

    /// The `statsz` object.
    async fn statsz(&self) -> Value {
        let answers = self.gather(false, true).await;
        let server = &self.ctx.server;
        let t = varz::totals(&answers.shards);
        let mut accounts: Vec<&str> = answers
            .shards
            .iter()
            .flat_map(|s| s.conns.iter())
            .map(connz::account_label)
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        let mut peers: Vec<&str> = answers
            .cluster
            .routes
            .iter()
            .map(|r| r.remote_id.as_str())
            .collect();
        peers.sort_unstable();
        peers.dedup();
        // `sent` and `received` count route and leaf traffic too, the `_clients` twins not.
        let (mut sent, mut received) = ((t.out_msgs, t.out_bytes), (t.in_msgs, t.in_bytes));
        let c = &answers.cluster;
        let links = c
            .routes
            .iter()
            .map(|r| (r.out_msgs, r.out_bytes, r.in_msgs, r.in_bytes));
        let links = links.chain(
            c.leafs
                .iter()
                .map(|l| (l.out_msgs, l.out_bytes, l.in_msgs, l.in_bytes)),
        );
        for (out_msgs, out_bytes, in_msgs, in_bytes) in links {
            sent = (sent.0 + out_msgs, sent.1 + out_bytes);
            received = (received.0 + in_msgs, received.1 + in_bytes);
        }
        let mut statsz = json!({
            "start": crate::monitor::format::rfc3339(server.monitor.start),
            "mem": misc::process_rss(),
            "cores": varz::cores(),
            "cpu": go_float(server.monitor.cpu_percent()),
            "connections": server.connection_count(),
            "total_connections": t.total_connections,
            "active_accounts": accounts.len(),
            "subscriptions": t.subscriptions,
            "sent": {"msgs": sent.0, "bytes": sent.1},
            "sent_to_clients": {"msgs": t.out_msgs, "bytes": t.out_bytes},
            "received": {"msgs": received.0, "bytes": received.1},
            "received_from_clients": {"msgs": t.in_msgs, "bytes": t.in_bytes},
            "slow_consumers": t.slow_consumers,
        });
        if !answers.cluster.routes.is_empty() {
            let routes: Vec<Value> = answers
                .cluster
                .routes
                .iter()
                .map(|r| {
                    json!({
                        "rid": r.rid,
                        "name": r.remote_name,
                        "sent": {"msgs": r.out_msgs, "bytes": r.out_bytes},
                        "received": {"msgs": r.in_msgs, "bytes": r.in_bytes},
                        "pending": r.pending_size,
                    })
                })
                .collect();
            statsz["routes"] = routes.into();
        }
        statsz["active_servers"] = (1 + peers.len()).into();
        statsz["gomaxprocs"] = server.controls.len().into();
        statsz
    }

    /// Publishes `body(server info)` on `subject` in the system account.
    fn publish_with_server(&self, subject: &str, body: impl FnOnce(Value) -> Value) {
        let server = super::server_info(&self.ctx.server);
        let payload = crate::monitor::format::to_json_compact(&body(server));
        self.publish(subject, payload);
    }

    fn publish(&self, subject: &str, payload: Vec<u8>) {
        let (subject, reply, payload) = (
            Bytes::copy_from_slice(subject.as_bytes()),
            Bytes::new(),
            Bytes::from(payload),
        );
        let msg = Message::owned(&subject, &reply, 0, &payload);
        let mut st = self.ctx.state.borrow_mut();
        self.ctx
            .publish(&mut st, self.sys, &msg, Origin::Server, false);
    }

    fn reply(&self, reply: &str, doc: &Value) {
        if !reply.is_empty() {
            self.publish(reply, crate::monitor::format::to_json_compact(doc));
        }
    }

    /// The `{server, data}` envelope, or `{server, data: null, error}` when building
    /// the document failed (nats-server's 500).
    fn reply_data(&self, reply: &str, data: Result<Value, String>) {
        match data {
            Ok(data) => {
                self.publish_with_server(reply, |server| json!({"server": server, "data": data}))
            }
            Err(e) => self.reply_error(reply, 500, &e, true),
        }
    }

    /// nats-server's error envelope; `with_data` puts the `"data":null` it sends
    /// when the document, not the request, failed.
    fn reply_error(&self, reply: &str, code: u16, description: &str, with_data: bool) {
        let error = json!({"code": code, "description": description});
        self.publish_with_server(reply, |server| {
            if with_data {
                json!({"server": server, "data": null, "error": error})
            } else {
                json!({"server": server, "error": error})
            }
        });
    }
}

/// A float as Go's `encoding/json` writes it: whole numbers without a fraction.
fn go_float(v: f64) -> Value {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        (v as i64).into()
    } else {
        v.into()
    }
}

fn to_value<T: serde::Serialize>(doc: &T) -> Value {
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

fn connz_opts(o: &gojson::Decoded) -> connz::ConnzOpts {
    use crate::monitor::query::State;
    connz::ConnzOpts {
        sort: o.str("sort"),
        auth: o.bool("auth"),
        subs: o.bool("subscriptions"),
        detail: o.bool("subscriptions_detail"),
        offset: o.int("offset"),
        limit: o.int("limit"),
        cid: o.uint("cid"),
        state: match o.int("state") {
            1 => State::Closed,
            2 => State::All,
            _ => State::Open,
        },
        user: o.str("user"),
        acc: o.str("acc"),
    }
}

fn subsz_opts(o: &gojson::Decoded) -> subsz::SubszOpts {
    subsz::SubszOpts {
        subs: o.bool("subscriptions"),
        offset: o.int("offset"),
        limit: o.int("limit"),
        test: o.str("test"),
        acc: o.str("account"),
    }
}

/// The JSON of a `Nats-Request-Info` header, empty when there is none.
fn request_info(headers: &[u8]) -> serde_json::Map<String, Value> {
    let text = String::from_utf8_lossy(headers);
    text.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(super::REQUEST_INFO))
        .and_then(|(_, v)| serde_json::from_str::<Value>(v.trim()).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

/// `$SYS.SERVER.<id>.STATSZ` on nats-server's schedule, only when someone listens.
async fn statsz_loop(svc: Rc<Services>) {
    let subject = format!("$SYS.SERVER.{}.STATSZ", svc.ctx.server.server_id);
    let mut wait = STATSZ_FIRST;
    let mut next = STATSZ_SECOND;
    loop {
        glommio::timer::sleep(wait).await;
        wait = next;
        next = (next * 2).min(STATSZ_MAX);
        if svc
            .ctx
            .server
            .shutdown
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        if !svc.ctx.has_interest(svc.sys, subject.as_bytes()) {
            continue;
        }
        let statsz = svc.statsz().await;
        svc.publish_with_server(
            &subject,
            |server| json!({"server": server, "statsz": statsz}),
        );
    }
}

/// `$SYS.SERVER.<id>.SHUTDOWN` (the server info alone), from the first shard as it
/// stops.
pub fn shutdown(ctx: &ShardCtx) {
    if ctx.index != 0 {
        return;
    }
    let Some(sys) = varz::system_account(&ctx.server.current_opts())
        .and_then(|name| ctx.server.account_lookup(&name))
    else {
        return;
    };
    let subject = format!("$SYS.SERVER.{}.SHUTDOWN", ctx.server.server_id);
    if !ctx.has_interest(sys, subject.as_bytes()) {
        return;
    }
    let payload = crate::monitor::format::to_json_compact(&super::server_info(&ctx.server));
    let (subject, reply, payload) = (Bytes::from(subject), Bytes::new(), Bytes::from(payload));
    let msg = Message::owned(&subject, &reply, 0, &payload);
    let mut st = ctx.state.borrow_mut();
    ctx.publish(&mut st, sys, &msg, Origin::Server, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_back() {
        let data = b"MSG $SYS.REQ.SERVER.PING 0 _INBOX.a 2\r\n{}\r\nHMSG $SYS.REQ.USER.INFO 3 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nMSG x 1 0\r\n\r\n";
        let reqs = parse_frames(data);
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0].subject, "$SYS.REQ.SERVER.PING");
        assert_eq!(reqs[0].reply, "_INBOX.a");
        assert_eq!(reqs[0].body, b"{}");
        assert_eq!(reqs[1].sid, 3);
        assert_eq!(reqs[1].headers, b"NATS/1.0\r\n\r\n");
        assert_eq!(reqs[1].body, b"hi");
        assert_eq!(reqs[2].reply, "");
        assert!(reqs[2].body.is_empty());
        assert!(parse_frames(b"MSG a 1 5\r\nab").is_empty(), "cut short");
    }

    #[test]
    fn the_request_info_header_is_found() {
        let h = b"NATS/1.0\r\nNats-Request-Info: {\"acc\":\"A\",\"user\":\"a\"}\r\n\r\n";
        let info = request_info(h);
        assert_eq!(info["user"], "a");
        assert!(request_info(b"").is_empty());
    }
}
