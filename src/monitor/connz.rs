//! `/connz`: open and closed client connections, sorted and paged as nats-server does.

use std::cmp::Ordering;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::format::{rfc3339, rtt, to_json, uptime};
use super::http::{Request, Response};
use super::query::{bool_param, int_param, state_param, subs_param, uint_param, State};
use super::Monitor;
use crate::shard::snapshot::{ConnSnapshot, SubSnapshot};

/// Default and maximum page size when `limit` is absent or not positive.
pub const DEFAULT_LIMIT: usize = 1024;

/// One subscription in `subscriptions_list_detail` (and `/subsz`).
#[derive(Serialize, Clone)]
pub struct SubDetail {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account_tag: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qgroup: Option<String>,
    pub sid: String,
    pub msgs: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub cid: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl SubDetail {
    /// The detail of `s`, a subscription of connection `cid`.
    pub fn of(s: &SubSnapshot, cid: u64, account: &str) -> SubDetail {
        SubDetail {
            account: account.to_string(),
            account_tag: account.to_string(),
            subject: s.subject.clone(),
            qgroup: s.queue.clone(),
            sid: s.sid.clone(),
            msgs: s.msgs,
            max: s.max,
            cid,
        }
    }
}

#[derive(Serialize)]
struct ConnInfo {
    cid: u64,
    kind: &'static str,
    #[serde(rename = "type")]
    kind_type: &'static str,
    ip: String,
    port: u16,
    start: String,
    last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    rtt: String,
    uptime: String,
    idle: String,
    pending_bytes: usize,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    tls_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    tls_cipher_suite: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    authorized_user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    account: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list_detail: Vec<SubDetail>,
    #[serde(skip_serializing_if = "String::is_empty")]
    jwt: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    issuer_key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name_tag: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

/// The `/connz` document.
#[derive(Serialize)]
pub struct Connz {
    server_id: String,
    now: String,
    num_connections: usize,
    total: usize,
    offset: usize,
    limit: usize,
    connections: Option<Vec<ConnInfo>>,
}

/// `sort=` values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sort {
    Cid,
    Start,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
    Rtt,
}

fn sort_param(v: &str) -> Result<Sort, String> {
    Ok(match v {
        "" | "cid" => Sort::Cid,
        "start" => Sort::Start,
        "subs" => Sort::Subs,
        "pending" => Sort::Pending,
        "msgs_to" => Sort::MsgsTo,
        "msgs_from" => Sort::MsgsFrom,
        "bytes_to" => Sort::BytesTo,
        "bytes_from" => Sort::BytesFrom,
        "last" => Sort::Last,
        "idle" => Sort::Idle,
        "uptime" => Sort::Uptime,
        "stop" => Sort::Stop,
        "reason" => Sort::Reason,
        "rtt" => Sort::Rtt,
        _ => return Err(format!("invalid sorting option: {v}")),
    })
}

fn elapsed(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

/// Orders `a` before `b` for `sort` (descending for every key but cid, start and
/// reason), ties broken by cid.
fn compare(sort: Sort, now: SystemTime, a: &ConnSnapshot, b: &ConnSnapshot) -> Ordering {
    let end = |c: &ConnSnapshot| c.stop.unwrap_or(now);
    let ord = match sort {
        Sort::Cid | Sort::Start => Ordering::Equal,
        Sort::Subs => b.num_subs.cmp(&a.num_subs),
        Sort::Pending => b.pending_bytes.cmp(&a.pending_bytes),
        Sort::MsgsTo => b.out_msgs.cmp(&a.out_msgs),
        Sort::MsgsFrom => b.in_msgs.cmp(&a.in_msgs),
        Sort::BytesTo => b.out_bytes.cmp(&a.out_bytes),
        Sort::BytesFrom => b.in_bytes.cmp(&a.in_bytes),
        Sort::Last => b.last_activity.cmp(&a.last_activity),
        Sort::Idle => elapsed(b.last_activity, now).cmp(&elapsed(a.last_activity, now)),
        Sort::Uptime => elapsed(b.start, end(b)).cmp(&elapsed(a.start, end(a))),
        Sort::Stop => b.stop.cmp(&a.stop),
        Sort::Reason => a.reason.cmp(&b.reason),
        Sort::Rtt => b.rtt.cmp(&a.rtt),
    };
    ord.then_with(|| a.cid.cmp(&b.cid))
}

fn info(c: &ConnSnapshot, now: SystemTime, subs: bool, detail: bool, auth: bool) -> ConnInfo {
    let end = c.stop.unwrap_or(now);
    ConnInfo {
        cid: c.cid,
        kind: "Client",
        kind_type: if c.websocket { "websocket" } else { "nats" },
        ip: c.ip.clone(),
        port: c.port,
        start: rfc3339(c.start),
        last_activity: rfc3339(c.last_activity),
        stop: c.stop.map(rfc3339),
        reason: c.reason.clone(),
        rtt: rtt(c.rtt.unwrap_or_default()),
        uptime: uptime(elapsed(c.start, end)),
        idle: uptime(elapsed(c.last_activity, end)),
        pending_bytes: c.pending_bytes,
        in_msgs: c.in_msgs,
        out_msgs: c.out_msgs,
        in_bytes: c.in_bytes,
        out_bytes: c.out_bytes,
        subscriptions: c.num_subs,
        name: c.name.clone(),
        lang: c.lang.clone(),
        version: c.version.clone(),
        tls_version: c.tls_version.clone(),
        tls_cipher_suite: c.tls_cipher.clone(),
        authorized_user: if auth { c.user.clone() } else { String::new() },
        account: if auth {
            c.account.clone()
        } else {
            String::new()
        },
        subscriptions_list: if subs {
            let mut l: Vec<String> = c.subs.iter().map(|s| s.subject.clone()).collect();
            l.sort();
            l
        } else {
            Vec::new()
        },
        subscriptions_list_detail: if detail {
            c.subs.iter().map(|s| SubDetail::of(s, c.cid, "")).collect()
        } else {
            Vec::new()
        },
        jwt: if auth { c.jwt.clone() } else { String::new() },
        issuer_key: if auth {
            c.issuer_key.clone()
        } else {
            String::new()
        },
        name_tag: if auth {
            c.name_tag.clone()
        } else {
            String::new()
        },
        tags: if auth { c.tags.clone() } else { Vec::new() },
    }
}

/// `/connz` options, from a query string or a system account request's JSON body.
#[derive(Clone, Debug)]
pub struct ConnzOpts {
    /// `sort`, checked when the document is built.
    pub sort: String,
    /// `auth`: show each connection's user and account.
    pub auth: bool,
    /// `subs`: each connection's subjects.
    pub subs: bool,
    /// `subs=detail`.
    pub detail: bool,
    /// First entry of the page.
    pub offset: i64,
    /// Page size (not positive: the default).
    pub limit: i64,
    /// Only this connection.
    pub cid: u64,
    /// Open, closed or both.
    pub state: State,
    /// Only this user's connections.
    pub user: String,
    /// Only this account's connections.
    pub acc: String,
}

impl Default for ConnzOpts {
    fn default() -> ConnzOpts {
        ConnzOpts {
            sort: String::new(),
            auth: false,
            subs: false,
            detail: false,
            offset: 0,
            limit: 0,
            cid: 0,
            state: State::Open,
            user: String::new(),
            acc: String::new(),
        }
    }
}

impl ConnzOpts {
    /// The options of an HTTP request, with nats-server's errors for bad values.
    pub fn from_query(req: &Request) -> Result<ConnzOpts, String> {
        let (subs, detail) = subs_param(req)?;
        let opts = ConnzOpts {
            sort: req.get("sort").unwrap_or("").to_string(),
            auth: bool_param(req, "auth")?,
            subs,
            detail,
            offset: int_param(req, "offset")?,
            limit: int_param(req, "limit")?,
            cid: uint_param(req, "cid")?,
            state: state_param(req)?,
            user: req.get("user").unwrap_or("").to_string(),
            acc: req.get("acc").unwrap_or("").to_string(),
        };
        // The sort is checked before anything else is gathered, as nats-server does.
        sort_param(&opts.sort)?;
        Ok(opts)
    }
}

pub(super) fn connz(m: &Monitor, req: &Request) -> Result<Response, String> {
    let opts = ConnzOpts::from_query(req)?;
    let body = build(&m.server, &opts, m.snapshots(opts.subs || opts.detail))?;
    Ok(Response::json(to_json(&body)))
}

/// The `/connz` document from the shards' snapshots.
pub fn build(
    server: &crate::server::ServerShared,
    o: &ConnzOpts,
    snaps: Vec<crate::shard::snapshot::ShardSnapshot>,
) -> Result<Connz, String> {
    let sort = sort_param(&o.sort)?;
    let (auth, subs, detail, cid, state) = (o.auth, o.subs, o.detail, o.cid, o.state);
    let mut offset = o.offset.max(0) as usize;
    let mut limit = if o.limit <= 0 {
        DEFAULT_LIMIT
    } else {
        o.limit as usize
    };
    if matches!(sort, Sort::Stop | Sort::Reason) && state != State::Closed {
        let name = if sort == Sort::Stop { "stop" } else { "reason" };
        return Err(format!("sort by {name} only valid on closed connections"));
    }
    let (user, acc) = (o.user.as_str(), o.acc.as_str());
    let now = SystemTime::now();
    if !acc.is_empty() && server.account_lookup(acc).is_none() {
        // nats-server answers an unknown account with an empty, unnamed document.
        return Ok(Connz {
            server_id: String::new(),
            now: rfc3339(now),
            num_connections: 0,
            total: 0,
            offset,
            limit,
            connections: None,
        });
    }
    let mut conns: Vec<ConnSnapshot> = Vec::new();
    for s in snaps {
        if state != State::Closed {
            conns.extend(s.conns);
        }
        if state != State::Open {
            conns.extend(s.closed);
        }
    }
    if !user.is_empty() {
        conns.retain(|c| c.user == user);
    }
    if !acc.is_empty() {
        conns.retain(|c| account_label(c) == acc);
    }
    let total = conns.len();
    if cid > 0 {
        conns.retain(|c| c.cid == cid);
        offset = 0;
        limit = 1;
    }
    conns.sort_by(|a, b| compare(sort, now, a, b));
    let page: Vec<ConnInfo> = conns
        .iter()
        .skip(offset)
        .take(limit)
        .map(|c| info(c, now, subs, detail, auth))
        .collect();
    Ok(Connz {
        server_id: server.server_id.clone(),
        now: rfc3339(now),
        num_connections: page.len(),
        total,
        offset,
        limit,
        connections: Some(page),
    })
}

/// The account a connection is in, by name (the snapshot leaves `$G` unnamed).
pub fn account_label(c: &ConnSnapshot) -> &str {
    if c.account.is_empty() {
        crate::account::GLOBAL_NAME
    } else {
        &c.account
    }
}
