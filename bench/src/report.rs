//! Terminal tables, JSON and the SVG chart.

use crate::scenario::{si, RunResult, Spec};
use serde_json::{json, Value};

pub fn check_text(r: &RunResult) -> String {
    let c = &r.check;
    let mut s = if r.ok() && r.spec.kind == crate::scenario::Kind::Pub {
        "ok (no subscribers)".to_string()
    } else if r.ok() {
        format!("ok {}/{}", c.unique, c.expected)
    } else {
        format!(
            "FAILED lost={} dup={} reorder={} foreign={}",
            c.lost, c.dups, c.reordered, c.foreign
        )
    };
    if r.slow_consumers > 0 {
        s.push_str(&format!(" slow={}", r.slow_consumers));
    }
    s
}

fn lat_text(r: &RunResult) -> String {
    match &r.latency {
        Some(l) => format!(
            "{:.0}/{:.0}/{:.0}/{:.0}/{:.0}",
            l.p50, l.p90, l.p99, l.p999, l.max
        ),
        None => "-".into(),
    }
}

fn cpu_text(secs: Option<f64>, wall: f64) -> String {
    match secs {
        Some(s) if wall > 0.0 => format!("{:.2}s {:.0}%", s, s / wall * 100.0),
        _ => "-".into(),
    }
}

pub fn table(rows: &[RunResult]) -> String {
    let head = [
        "scenario",
        "server",
        "pub msg/s",
        "pub MB/s",
        "deliv msg/s",
        "deliv MB/s",
        "lat us p50/90/99/99.9/max",
        "gen cpu",
        "srv cpu",
        "check",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let sz = r.spec.size as f64;
        cells.push(vec![
            r.spec.label(),
            r.server.clone(),
            si(r.pub_rate()),
            format!("{:.1}", r.pub_rate() * sz / 1e6),
            si(r.deliv_rate()),
            format!("{:.1}", r.deliv_rate() * sz / 1e6),
            lat_text(r),
            cpu_text(Some(r.gen_cpu), r.wall_secs),
            cpu_text(r.server_cpu, r.wall_secs),
            check_text(r),
        ]);
    }
    render(&cells)
}

fn render(cells: &[Vec<String>]) -> String {
    let n = cells.iter().map(|r| r.len()).max().unwrap_or(0);
    let w: Vec<usize> = (0..n)
        .map(|i| {
            cells
                .iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (k, r) in cells.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if k == 0 {
            let total: usize = w.iter().sum::<usize>() + 2 * (n.saturating_sub(1));
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

/// Runs of one scenario on both servers.
pub struct Compared {
    pub spec: Spec,
    pub natrium: Vec<RunResult>,
    pub nats: Vec<RunResult>,
}

#[derive(Clone, Copy, Default)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn stat(v: &[f64]) -> Stat {
    if v.is_empty() {
        return Stat::default();
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    Stat {
        median: m,
        min: s[0],
        max: s[s.len() - 1],
    }
}

impl Compared {
    pub fn stat_of(runs: &[RunResult]) -> Stat {
        stat(&runs.iter().map(|r| r.primary()).collect::<Vec<_>>())
    }
    pub fn ratio(&self) -> f64 {
        let a = Self::stat_of(&self.natrium).median;
        let b = Self::stat_of(&self.nats).median;
        if b > 0.0 {
            a / b
        } else {
            0.0
        }
    }
    fn p50(runs: &[RunResult]) -> Option<f64> {
        let v: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.latency.as_ref().map(|l| l.p50))
            .collect();
        (!v.is_empty()).then(|| stat(&v).median)
    }
    pub fn ok(&self) -> bool {
        self.natrium.iter().chain(&self.nats).all(|r| r.ok())
    }
    pub fn to_json(&self) -> Value {
        let s = |runs: &[RunResult]| {
            let st = Self::stat_of(runs);
            json!({"median": st.median, "min": st.min, "max": st.max,
                   "latency_p50_us_median": Self::p50(runs),
                   "runs": runs.iter().map(|r| r.to_json()).collect::<Vec<_>>()})
        };
        json!({
            "label": self.spec.label(),
            "scenario": self.spec.kind.name(),
            "size": self.spec.size, "pubs": self.spec.pubs, "subs": self.spec.subs,
            "metric": "primary_msgs_per_sec",
            "natrium": s(&self.natrium),
            "nats_server": s(&self.nats),
            "ratio": self.ratio(),
            "ok": self.ok(),
        })
    }
}

fn stat_text(s: Stat) -> String {
    format!("{} ({}-{})", si(s.median), si(s.min), si(s.max))
}

pub fn compare_table(rows: &[Compared]) -> String {
    let mut cells: Vec<Vec<String>> = vec![[
        "scenario",
        "natrium msg/s median (min-max)",
        "nats-server msg/s median (min-max)",
        "ratio",
        "p50 us nat/nats",
        "check",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    for c in rows {
        let p = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.0}"));
        let bad: Vec<String> = c
            .natrium
            .iter()
            .chain(&c.nats)
            .filter(|r| !r.ok() || r.slow_consumers > 0)
            .map(|r| format!("{}: {}", r.server, check_text(r)))
            .collect();
        cells.push(vec![
            c.spec.label(),
            stat_text(Compared::stat_of(&c.natrium)),
            stat_text(Compared::stat_of(&c.nats)),
            format!("{:.2}x", c.ratio()),
            format!(
                "{}/{}",
                p(Compared::p50(&c.natrium)),
                p(Compared::p50(&c.nats))
            ),
            if bad.is_empty() {
                "ok".into()
            } else {
                bad.join("; ")
            },
        ]);
    }
    render(&cells)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One row of the chart: a label and one (median, min, max) per series.
pub struct ChartRow {
    pub label: String,
    pub values: Vec<Option<Stat>>,
    pub note: String,
}

/// Horizontal bars on a log scale (msgs/s), one group per scenario.
pub fn svg(title: &str, series: &[&str], rows: &[ChartRow]) -> String {
    const COLORS: [&str; 4] = ["#e8710a", "#1a73e8", "#188038", "#a142f4"];
    let (left, right, bar_h, gap) = (230.0, 90.0, 16.0, 14.0);
    let plot_w = 620.0;
    let top = 60.0;
    let nser = series.len().max(1) as f64;
    let group_h = nser * bar_h + gap;
    let height = top + rows.len() as f64 * group_h + 40.0;
    let width = left + plot_w + right;
    let maxv = rows
        .iter()
        .flat_map(|r| r.values.iter().flatten().map(|s| s.max))
        .fold(1.0f64, f64::max);
    let lo = 2.0f64; // 10^2 msgs/s at the left edge
    let hi = maxv.log10().ceil().max(lo + 1.0);
    let x = |v: f64| left + ((v.max(1.0).log10() - lo).max(0.0) / (hi - lo)) * plot_w;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="16" text-anchor="middle">{}</text>
"#,
        width / 2.0,
        esc(title)
    );
    for (i, name) in series.iter().enumerate() {
        let lx = left + i as f64 * 150.0;
        s += &format!(
            "<rect x=\"{lx}\" y=\"34\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"45\">{}</text>\n",
            COLORS[i % 4],
            lx + 16.0,
            esc(name)
        );
    }
    let bottom = top + rows.len() as f64 * group_h;
    let mut d = lo as i32;
    while d as f64 <= hi {
        let gx = x(10f64.powi(d));
        s += &format!(
            "<line x1=\"{gx}\" y1=\"{top}\" x2=\"{gx}\" y2=\"{bottom}\" stroke=\"#ddd\"/><text x=\"{gx}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n",
            bottom + 16.0,
            ["1", "10", "100", "1k", "10k", "100k", "1M", "10M", "100M", "1G", "10G"]
                .get(d as usize)
                .copied()
                .unwrap_or("")
        );
        d += 1;
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">msgs/s (log scale; deliveries, publishes for pub, round trips for reqreply)</text>\n",
        left + plot_w / 2.0,
        bottom + 32.0
    );
    for (k, r) in rows.iter().enumerate() {
        let gy = top + k as f64 * group_h;
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            left - 8.0,
            gy + nser * bar_h / 2.0 + 4.0,
            esc(&r.label)
        );
        for (i, v) in r.values.iter().enumerate() {
            let Some(v) = v else { continue };
            let y = gy + i as f64 * bar_h;
            let w = x(v.median) - left;
            s += &format!(
                "<rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"><title>{}: {:.0} msgs/s</title></rect>\n",
                bar_h - 2.0,
                COLORS[i % 4],
                esc(series.get(i).copied().unwrap_or("")),
                v.median
            );
            if v.max > v.min {
                let my = y + (bar_h - 2.0) / 2.0;
                s += &format!(
                    "<line x1=\"{:.1}\" y1=\"{my}\" x2=\"{:.1}\" y2=\"{my}\" stroke=\"black\"/>\n",
                    x(v.min),
                    x(v.max)
                );
            }
            s += &format!(
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{}</text>\n",
                x(v.max.max(v.median)) + 4.0,
                y + bar_h - 5.0,
                si(v.median)
            );
        }
        if !r.note.is_empty() {
            s += &format!(
                "<text x=\"{}\" y=\"{}\" font-weight=\"bold\">{}</text>\n",
                left + plot_w + 40.0,
                gy + nser * bar_h / 2.0 + 4.0,
                esc(&r.note)
            );
        }
    }
    s += "</svg>\n";
    s
}
