//! bench-snapshot: build-snapshot against a reference loop that does what the legacy
//! `build_snapshot.py` did (one request at a time: `dag/get` of each event, then for each new
//! entity `files/read` of its tip and `dag/get` of its manifest), side by side on the same data
//! in the same run. Prints a Markdown table. Run it through `scripts/bench-snapshot.sh`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use arke_core::kubo::Kubo;
use arke_core::report::{Exit, Progress};
use arke_dr::args::{NodeArgs, OutputArgs};
use arke_testkit::generator::{GenConfig, generate};
use arke_testkit::rng::Rng;
use arke_testkit::world::World;
use clap::Parser;
use serde_json::Value;

/// Benchmark build-snapshot (full and incremental) against the legacy request pattern.
#[derive(Debug, Parser)]
struct Args {
    /// Entity counts to run, e.g. 10000,100000
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    sizes: Vec<usize>,
    /// Entities changed (with an event) before the incremental build
    #[arg(long, default_value_t = 1000)]
    changes: usize,
    /// The build-snapshot binary to measure
    #[arg(long)]
    build_snapshot: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    out: OutputArgs,
}

struct Row {
    what: String,
    entities: usize,
    seconds: f64,
    requests: Option<u64>,
    blocks_written: Option<u64>,
    rss_mb: Option<f64>,
}

/// The legacy full build's request pattern (B1 fixed so that tips are found at all).
async fn reference_full(
    kubo: &Kubo,
    url: &str,
    root: &str,
    pointer: &str,
) -> anyhow::Result<(usize, u64)> {
    let http = reqwest::Client::new();
    let api = format!("{}/api/v0", url.trim_end_matches('/'));
    let mut requests = 1u64;
    let p = arke_core::model::IndexPointer::parse(&kubo.files_read(pointer).await?)?;
    let mut cur = p.event_head.map(|c| c.to_string());
    let mut seen = HashSet::new();
    while let Some(c) = cur {
        let ev: Value = http
            .post(format!("{api}/dag/get?arg={c}"))
            .send()
            .await?
            .json()
            .await?;
        requests += 1;
        let pi = ev["pi"].as_str().unwrap_or_default().to_string();
        if seen.insert(pi.clone()) && !pi.starts_with("II") {
            let id = arke_core::shard::EntityId::parse(&pi)?;
            let path = id.tip_path(root, arke_core::shard::ShardRule::Worker);
            let tip = http
                .post(format!("{api}/files/read?arg={path}"))
                .send()
                .await?
                .text()
                .await?;
            requests += 1;
            let m: Value = http
                .post(format!("{api}/dag/get?arg={}", tip.trim()))
                .send()
                .await?
                .json()
                .await?;
            requests += 1;
            let _ver = m["ver"].as_u64();
        }
        cur = ev["prev"]["/"].as_str().map(str::to_string);
    }
    Ok((seen.len(), requests))
}

/// The legacy incremental build's pattern: for every new event, the event, the tip, the manifest.
async fn reference_incremental(
    url: &str,
    root: &str,
    head: &str,
    stop: &str,
) -> anyhow::Result<u64> {
    let http = reqwest::Client::new();
    let api = format!("{}/api/v0", url.trim_end_matches('/'));
    let mut requests = 0;
    let mut cur = Some(head.to_string());
    while let Some(c) = cur.filter(|c| c != stop) {
        let ev: Value = http
            .post(format!("{api}/dag/get?arg={c}"))
            .send()
            .await?
            .json()
            .await?;
        let pi = ev["pi"].as_str().unwrap_or_default();
        let path = arke_core::shard::EntityId::parse(pi)?
            .tip_path(root, arke_core::shard::ShardRule::Worker);
        let tip = http
            .post(format!("{api}/files/read?arg={path}"))
            .send()
            .await?
            .text()
            .await?;
        let _m: Value = http
            .post(format!("{api}/dag/get?arg={}", tip.trim()))
            .send()
            .await?
            .json()
            .await?;
        requests += 3;
        cur = ev["prev"]["/"].as_str().map(str::to_string);
    }
    Ok(requests)
}

/// Runs build-snapshot under GNU time; returns (seconds, report, peak RSS in MB).
fn run_build(
    bin: &PathBuf,
    url: &str,
    root: &str,
    pointer: &str,
    dir: &std::path::Path,
    full: bool,
) -> anyhow::Result<(f64, Value, f64)> {
    let t = Instant::now();
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f").arg("RSS_KB=%M").arg(bin);
    cmd.args([
        "--api",
        url,
        "--pointer-path",
        pointer,
        "--index-root",
        root,
        "--json",
        "--no-progress",
    ]);
    cmd.arg("--snapshots-dir").arg(dir);
    if full {
        cmd.arg("--full");
    }
    let out = cmd
        .output()
        .context("running build-snapshot under /usr/bin/time")?;
    let secs = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("build-snapshot failed: {stderr}");
    }
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("RSS_KB="))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    Ok((secs, serde_json::from_slice(&out.stdout)?, rss))
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("bench-snapshot", &args.out, async {
        let kubo = args.node.kubo()?;
        let url = args.node.api_url();
        let mut rows = Vec::new();
        for &n in &args.sizes {
            let root = format!("/bench-{n}/index");
            let pointer = format!("/bench-{n}/pointer");
            let t = Instant::now();
            let summary = generate(
                &kubo,
                &GenConfig {
                    entities: n,
                    seed: 7,
                    pin: false,
                    force: true,
                    index_root: root.clone(),
                    test_index_root: format!("/bench-{n}/test/index"),
                    pointer_path: pointer.clone(),
                    ..GenConfig::default()
                },
                &Progress::off(),
            )
            .await?;
            tracing::info!(
                "generated {n} entities, {} events in {:.0}s",
                summary.event_count,
                t.elapsed().as_secs_f64()
            );
            let dir = tempfile::tempdir()?;

            let t = Instant::now();
            let (seen, requests) = reference_full(&kubo, &url, &root, &pointer).await?;
            rows.push(Row {
                what: "full: legacy request loop".into(),
                entities: seen,
                seconds: t.elapsed().as_secs_f64(),
                requests: Some(requests),
                blocks_written: None,
                rss_mb: None,
            });
            let (secs, r, rss) = run_build(
                &args.build_snapshot,
                &url,
                &root,
                &pointer,
                dir.path(),
                true,
            )?;
            rows.push(Row {
                what: "full: build-snapshot".into(),
                entities: r["entity_count"].as_u64().unwrap_or(0) as usize,
                seconds: secs,
                requests: r["requests"].as_u64(),
                blocks_written: r["blocks_written"].as_u64(),
                rss_mb: Some(rss),
            });

            // 1K changes with events, then an incremental build.
            let w = World::new(kubo.clone(), &root, &pointer);
            let stop = w
                .pointer()
                .await?
                .event_head
                .map(|c| c.to_string())
                .unwrap_or_default();
            let ids: Vec<String> = summary
                .entities
                .iter()
                .filter(|e| e.network == "main")
                .map(|e| e.id.clone())
                .collect();
            let mut rng = Rng::new(5);
            let picks: Vec<String> = (0..args.changes.min(ids.len()))
                .map(|_| rng.pick(&ids).clone())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            // Sequential: each update appends an event (the API's pointer read-modify-write).
            for id in &picks {
                w.update(id, true).await?;
            }
            let head = w
                .pointer()
                .await?
                .event_head
                .map(|c| c.to_string())
                .unwrap_or_default();
            let t = Instant::now();
            let requests = reference_incremental(&url, &root, &head, &stop).await?;
            rows.push(Row {
                what: format!("incremental ({} changes): legacy request loop", picks.len()),
                entities: picks.len(),
                seconds: t.elapsed().as_secs_f64(),
                requests: Some(requests),
                blocks_written: None,
                rss_mb: None,
            });
            let (secs, r, rss) = run_build(
                &args.build_snapshot,
                &url,
                &root,
                &pointer,
                dir.path(),
                false,
            )?;
            rows.push(Row {
                what: format!("incremental ({} changes): build-snapshot", picks.len()),
                entities: r["entity_count"].as_u64().unwrap_or(0) as usize,
                seconds: secs,
                requests: r["requests"].as_u64(),
                blocks_written: r["blocks_written"].as_u64(),
                rss_mb: Some(rss),
            });
        }
        let mut table = String::from(
            "| run | entities | seconds | entities/s | requests | blocks written | peak RSS MB |\n|---|---|---|---|---|---|---|\n",
        );
        for r in &rows {
            table.push_str(&format!(
                "| {} | {} | {:.1} | {:.0} | {} | {} | {} |\n",
                r.what,
                r.entities,
                r.seconds,
                r.entities as f64 / r.seconds.max(0.001),
                r.requests.map_or("-".into(), |v| v.to_string()),
                r.blocks_written.map_or("-".into(), |v| v.to_string()),
                r.rss_mb.map_or("-".into(), |v| format!("{v:.0}")),
            ));
        }
        arke_dr::print_line(&table)?;
        Ok(Exit::Ok)
    })
}
