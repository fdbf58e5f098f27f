//! `/subsz` (`/subscriptionsz`): interest table counters and, with `subs=1`, the
//! subscriptions themselves (filtered by `test=<subject>`).

use std::time::SystemTime;

use serde::Serialize;

use super::connz::{account_label, SubDetail, DEFAULT_LIMIT};
use super::format::{go_float, rfc3339, to_json};
use super::http::{Request, Response};
use super::query::{bool_param, int_param};
use super::Monitor;
use crate::shard::snapshot::ShardSnapshot;
use crate::subject;

/// Interest table counters summed over the shards (`/subsz`, `/accountz` detail).
#[derive(Serialize, Default, Clone, Copy)]
pub struct SublistStatz {
    pub num_subscriptions: usize,
    pub num_cache: usize,
    pub num_inserts: u64,
    pub num_removes: u64,
    pub num_matches: u64,
    #[serde(serialize_with = "go_float")]
    pub cache_hit_rate: f64,
    pub max_fanout: u32,
    #[serde(serialize_with = "go_float")]
    pub avg_fanout: f64,
}

/// Sums the shards' own interest tables (each holds its own clients' subscriptions).
pub fn sublist_stats(snaps: &[ShardSnapshot]) -> SublistStatz {
    statz(snaps.iter().map(|s| &s.sublist))
}

/// [`sublist_stats`] of one account: its table on every shard.
pub fn account_sublist_stats(snaps: &[ShardSnapshot], account: usize) -> SublistStatz {
    statz(snaps.iter().filter_map(|s| s.accounts.get(account)))
}

fn statz<'a>(tables: impl Iterator<Item = &'a crate::sublist::SublistStats>) -> SublistStatz {
    let mut st = SublistStatz::default();
    let mut hits = 0u64;
    let mut total_fanout = 0usize;
    for t in tables {
        // Each shard caches matches of its own clients' interest: the largest and the
        // mean over all shards' cached results.
        st.max_fanout = st.max_fanout.max(t.max_fanout as u32);
        total_fanout += t.total_fanout;
        st.num_subscriptions += t.num_subs;
        st.num_cache += t.num_cache;
        st.num_inserts += t.num_inserts;
        st.num_removes += t.num_removes;
        st.num_matches += t.num_matches;
        hits += t.cache_hits;
    }
    if st.num_matches > 0 {
        st.cache_hit_rate = hits as f64 / st.num_matches as f64;
    }
    if st.num_cache > 0 {
        st.avg_fanout = total_fanout as f64 / st.num_cache as f64;
    }
    st
}

/// The `/subsz` document.
#[derive(Serialize)]
pub struct Subsz {
    server_id: String,
    now: String,
    #[serde(flatten)]
    stats: SublistStatz,
    total: usize,
    offset: usize,
    limit: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<SubDetail>,
}

/// `/subsz` options, from a query string or a system account request's JSON body.
#[derive(Clone, Debug, Default)]
pub struct SubszOpts {
    /// List the subscriptions.
    pub subs: bool,
    /// First entry of the page.
    pub offset: i64,
    /// Page size (not positive: the default).
    pub limit: i64,
    /// Only subscriptions matching this literal subject.
    pub test: String,
    /// Only this account's subscriptions.
    pub acc: String,
}

impl SubszOpts {
    /// The options of an HTTP request, with nats-server's errors for bad values.
    pub fn from_query(req: &Request) -> Result<SubszOpts, String> {
        Ok(SubszOpts {
            subs: bool_param(req, "subs")?,
            offset: int_param(req, "offset")?,
            limit: int_param(req, "limit")?,
            test: req.get("test").unwrap_or("").to_string(),
            acc: req.get("acc").unwrap_or("").to_string(),
        })
    }
}

pub(super) fn subsz(m: &Monitor, req: &Request) -> Result<Response, String> {
    let opts = SubszOpts::from_query(req)?;
    check_test(&opts.test)?;
    let body = build(&m.server, &opts, &m.snapshots(opts.subs))?;
    Ok(Response::json(to_json(&body)))
}

fn check_test(test: &str) -> Result<(), String> {
    if !test.is_empty() && !subject::is_valid_literal_subject(test.as_bytes()) {
        return Err(format!(
            "invalid test subject, must be valid publish subject: {test}"
        ));
    }
    Ok(())
}

/// The `/subsz` document from the shards' snapshots (taken with `subs` when listed).
pub fn build(
    server: &crate::server::ServerShared,
    o: &SubszOpts,
    snaps: &[ShardSnapshot],
) -> Result<Subsz, String> {
    check_test(&o.test)?;
    let offset = o.offset.max(0) as usize;
    let limit = if o.limit <= 0 {
        DEFAULT_LIMIT
    } else {
        o.limit as usize
    };
    let (test, acc) = (o.test.as_str(), o.acc.as_str());
    let stats = if acc.is_empty() {
        sublist_stats(snaps)
    } else {
        match server.account_lookup(acc) {
            Some(id) => account_sublist_stats(snaps, id.index()),
            None => SublistStatz::default(),
        }
    };
    let mut total = 0;
    let mut list = Vec::new();
    if o.subs {
        let mut all: Vec<SubDetail> = snaps
            .iter()
            .flat_map(|s| s.conns.iter())
            .filter(|c| acc.is_empty() || account_label(c) == acc)
            .flat_map(|c| {
                c.subs
                    .iter()
                    .filter(|s| {
                        test.is_empty() || subject::matches(s.subject.as_bytes(), test.as_bytes())
                    })
                    .map(move |s| SubDetail::of(s, c.cid, account_label(c)))
            })
            .collect();
        all.sort_by(|a, b| a.cid.cmp(&b.cid).then_with(|| a.sid.cmp(&b.sid)));
        total = all.len();
        list = all.into_iter().skip(offset).take(limit).collect();
    }
    Ok(Subsz {
        server_id: server.server_id.clone(),
        now: rfc3339(SystemTime::now()),
        stats,
        total,
        offset,
        limit,
        subscriptions_list: list,
    })
}
