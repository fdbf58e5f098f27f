//! `/subsz` (`/subscriptionsz`): interest table counters and, with `subs=1`, the
//! subscriptions themselves (filtered by `test=<subject>`).

use std::time::SystemTime;

use serde::Serialize;

use super::connz::{SubDetail, DEFAULT_LIMIT};
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

#[derive(Serialize)]
struct Subsz {
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

pub(super) fn subsz(m: &Monitor, req: &Request) -> Result<Response, String> {
    let subs = bool_param(req, "subs")?;
    let offset = int_param(req, "offset")?.max(0) as usize;
    let limit = int_param(req, "limit")?;
    let limit = if limit <= 0 {
        DEFAULT_LIMIT
    } else {
        limit as usize
    };
    let test = req.get("test").unwrap_or("");
    if !test.is_empty() && !subject::is_valid_literal_subject(test.as_bytes()) {
        return Err(format!(
            "invalid test subject, must be valid publish subject: {test}"
        ));
    }
    let acc = req.get("acc").unwrap_or("");
    let snaps = m.snapshots(subs);
    let stats = sublist_stats(&snaps);
    let mut total = 0;
    let mut list = Vec::new();
    if subs && (acc.is_empty() || acc == "$G") {
        let mut all: Vec<SubDetail> = snaps
            .iter()
            .flat_map(|s| s.conns.iter())
            .flat_map(|c| {
                c.subs
                    .iter()
                    .filter(|s| {
                        test.is_empty() || subject::matches(s.subject.as_bytes(), test.as_bytes())
                    })
                    .map(move |s| SubDetail::of(s, c.cid, "$G"))
            })
            .collect();
        all.sort_by(|a, b| a.cid.cmp(&b.cid).then_with(|| a.sid.cmp(&b.sid)));
        total = all.len();
        list = all.into_iter().skip(offset).take(limit).collect();
    }
    let body = Subsz {
        server_id: m.server.server_id.clone(),
        now: rfc3339(SystemTime::now()),
        stats,
        total,
        offset,
        limit,
        subscriptions_list: list,
    };
    Ok(Response::json(to_json(&body)))
}
