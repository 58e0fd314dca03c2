//! bench-snapshot: build-snapshot against a reference loop that does what the legacy
//! `build_snapshot.py` did (one request at a time: `dag/get` of each event, then for each new
//! entity `files/read` of its tip and `dag/get` of its manifest), side by side on the same data
//! in the same run, on one Kubo node (`scripts/ipfs-node.sh run`). build-snapshot runs under GNU
//! time (CPU seconds, peak RSS); the node's CPU seconds over each row come from
//! `/proc/$IPFS_NODE_PID/stat`. Prints a Markdown table and the targets' ratios. Run it through
//! `scripts/bench-snapshot.sh`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use arke_bench as bench;
use arke_core::kubo::Kubo;
use arke_core::{Exit, Progress};
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
    /// The data set's size (the row's `entities` is what the run found or built).
    size: usize,
    entities: usize,
    seconds: f64,
    requests: Option<u64>,
    blocks_written: Option<u64>,
    rss_mb: Option<f64>,
    cpu: Option<f64>,
    node_cpu: Option<f64>,
    load: f64,
}

/// The floor of any build: the event chain walked alone, one `block/get` at a time (each event
/// names the next only inside its own bytes, as a plain-map `prev`), as build-snapshot walks it.
/// Returns the events walked.
async fn chain_walk_alone(
    kubo: &Kubo,
    head: Option<&str>,
    stop: Option<&str>,
) -> anyhow::Result<u64> {
    let source = arke_core::NodeSource { kubo: kubo.clone() };
    let parse = |c: Option<&str>| {
        c.filter(|c| !c.is_empty())
            .map(arke_core::ipld::parse_cid)
            .transpose()
    };
    let mut walk = arke_core::EventWalk::new(&source, parse(head)?, parse(stop)?);
    while walk.next().await?.is_some() {}
    Ok(walk.walked())
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

/// Runs build-snapshot under GNU time; returns the timing and its report.
fn run_build(
    bin: &Path,
    url: &str,
    root: &str,
    pointer: &str,
    dir: &Path,
    full: bool,
) -> anyhow::Result<(bench::Timed, Value)> {
    let mut args: Vec<String> = [
        "--api",
        url,
        "--pointer-path",
        pointer,
        "--index-root",
        root,
        "--json",
        "--no-progress",
        "--snapshots-dir",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    args.push(dir.display().to_string());
    if full {
        args.push("--full".into());
    }
    let t = bench::time_cmd(bin, &args, bench::env_node_pid(), false)
        .context("running build-snapshot")?;
    let v = serde_json::from_slice(&t.output.stdout).context("build-snapshot's JSON")?;
    Ok((t, v))
}

/// What a build reports about where its time went.
fn build_note(n: usize, what: &str, r: &Value) -> String {
    format!(
        "{n}, {what}: {} events walked, {} manifests fetched, index scan `{}` ({} index blocks read), {} chunks ({} written, {} reused), {} blocks written, {} requests, {:.1} s by its own clock",
        r["events_walked"],
        r["manifests_fetched"],
        r["index_scan"].as_str().unwrap_or("?"),
        r["index_blocks"],
        r["chunks"],
        r["chunks_written"],
        r["chunks_reused"],
        r["blocks_written"],
        r["requests"],
        r["seconds"].as_f64().unwrap_or(f64::NAN),
    )
}

/// The node's CPU seconds since `cpu0`.
fn node_cpu_since(cpu0: Option<f64>) -> Option<f64> {
    cpu0.zip(bench::proc_cpu(bench::env_node_pid()))
        .map(|(a, b)| b - a)
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("bench-snapshot", &args.out, async {
        let kubo = args.node.kubo()?;
        let url = args.node.api_url();
        let mut rows = Vec::new();
        let mut notes: Vec<String> = Vec::new();
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
            notes.push(format!(
                "{n}: data generated in {:.0} s ({} events, `generate-test-data` seed 7, no pins)",
                t.elapsed().as_secs_f64(),
                summary.event_count
            ));
            let dir = tempfile::tempdir()?;

            let head0 = World::new(kubo.clone(), &root, &pointer)
                .pointer()
                .await?
                .event_head
                .map(|c| c.to_string());
            let load = bench::loadavg();
            let cpu0 = bench::proc_cpu(bench::env_node_pid());
            let t = Instant::now();
            let walked = chain_walk_alone(&kubo, head0.as_deref(), None).await?;
            rows.push(Row {
                what: format!(
                    "full: floor, the event chain walked alone ({walked} sequential `block/get`s)"
                ),
                size: n,
                entities: 0,
                seconds: t.elapsed().as_secs_f64(),
                requests: Some(walked),
                blocks_written: None,
                rss_mb: None,
                cpu: None,
                node_cpu: node_cpu_since(cpu0),
                load,
            });
            let load = bench::loadavg();
            let cpu0 = bench::proc_cpu(bench::env_node_pid());
            let t = Instant::now();
            let (seen, requests) = reference_full(&kubo, &url, &root, &pointer).await?;
            rows.push(Row {
                what: "full: legacy request loop".into(),
                size: n,
                entities: seen,
                seconds: t.elapsed().as_secs_f64(),
                requests: Some(requests),
                blocks_written: None,
                rss_mb: None,
                cpu: None,
                node_cpu: node_cpu_since(cpu0),
                load,
            });
            let (tm, r) = run_build(
                &args.build_snapshot,
                &url,
                &root,
                &pointer,
                dir.path(),
                true,
            )?;
            notes.push(build_note(n, "full build", &r));
            rows.push(Row {
                what: "full: build-snapshot".into(),
                size: n,
                entities: r["entity_count"].as_u64().unwrap_or(0) as usize,
                seconds: tm.secs,
                requests: r["requests"].as_u64(),
                blocks_written: r["blocks_written"].as_u64(),
                rss_mb: Some(tm.rss_mb),
                cpu: Some(tm.cpu),
                node_cpu: tm.node_cpu,
                load: tm.load,
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
            let load = bench::loadavg();
            let cpu0 = bench::proc_cpu(bench::env_node_pid());
            let t = Instant::now();
            let walked = chain_walk_alone(&kubo, Some(&head), Some(&stop)).await?;
            rows.push(Row {
                what: format!("incremental: floor, the new events walked alone ({walked} sequential `block/get`s)"),
                size: n,
                entities: 0,
                seconds: t.elapsed().as_secs_f64(),
                requests: Some(walked),
                blocks_written: None,
                rss_mb: None,
                cpu: None,
                node_cpu: node_cpu_since(cpu0),
                load,
            });
            let load = bench::loadavg();
            let cpu0 = bench::proc_cpu(bench::env_node_pid());
            let t = Instant::now();
            let requests = reference_incremental(&url, &root, &head, &stop).await?;
            rows.push(Row {
                what: format!("incremental ({} changes): legacy request loop", picks.len()),
                size: n,
                entities: picks.len(),
                seconds: t.elapsed().as_secs_f64(),
                requests: Some(requests),
                blocks_written: None,
                rss_mb: None,
                cpu: None,
                node_cpu: node_cpu_since(cpu0),
                load,
            });
            let (tm, r) = run_build(
                &args.build_snapshot,
                &url,
                &root,
                &pointer,
                dir.path(),
                false,
            )?;
            notes.push(build_note(
                n,
                &format!("incremental build ({} changes)", picks.len()),
                &r,
            ));
            rows.push(Row {
                what: format!("incremental ({} changes): build-snapshot", picks.len()),
                size: n,
                entities: r["entity_count"].as_u64().unwrap_or(0) as usize,
                seconds: tm.secs,
                requests: r["requests"].as_u64(),
                blocks_written: r["blocks_written"].as_u64(),
                rss_mb: Some(tm.rss_mb),
                cpu: Some(tm.cpu),
                node_cpu: tm.node_cpu,
                load: tm.load,
            });
        }
        let mut table = String::from(
            "| run | data set | entities | seconds | entities/s | requests | blocks written | CPU s | peak RSS MB | node CPU s | load |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        let opt = |v: Option<f64>, d: usize| v.map_or("-".into(), |v| format!("{v:.d$}"));
        for r in &rows {
            table.push_str(&format!(
                "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
                r.what,
                r.size,
                r.entities,
                r.seconds,
                if r.entities == 0 {
                    "-".into()
                } else {
                    format!("{:.0}", r.entities as f64 / r.seconds.max(0.001))
                },
                r.requests.map_or("-".into(), |v| v.to_string()),
                r.blocks_written.map_or("-".into(), |v| v.to_string()),
                opt(r.cpu, 1),
                opt(r.rss_mb, 0),
                opt(r.node_cpu, 1),
                r.load,
            ));
        }
        table.push('\n');
        for &n in &args.sizes {
            let secs = |prefix: &str, tool: bool| {
                rows.iter()
                    .find(|r| {
                        r.size == n
                            && r.what.starts_with(prefix)
                            && !r.what.contains("floor")
                            && r.what.ends_with("build-snapshot") == tool
                    })
                    .map(|r| r.seconds)
            };
            if let (Some(legacy), Some(full)) = (secs("full", false), secs("full", true)) {
                table.push_str(&format!(
                    "- {n}: full build, legacy loop / build-snapshot: {:.1}x (target: at least 20x)\n",
                    legacy / full
                ));
            }
            if let (Some(full), Some(inc)) = (secs("full", true), secs("incremental", true)) {
                table.push_str(&format!(
                    "- {n}: incremental build / full build: {:.1}% of the full build's time (target at 100,000 entities: under 5%)\n",
                    100.0 * inc / full
                ));
            }
            let floor = |prefix: &str| {
                rows.iter()
                    .find(|r| r.size == n && r.what.starts_with(prefix) && r.what.contains("floor"))
                    .map(|r| r.seconds)
            };
            if let (Some(legacy), Some(walk), Some(full)) =
                (secs("full", false), floor("full"), secs("full", true))
            {
                table.push_str(&format!(
                    "- {n}: the chain walk alone is {:.0}% of the full build's time; no build can beat it, so the ratio to the legacy loop is at most {:.1}x on this node\n",
                    100.0 * walk / full,
                    legacy / walk
                ));
            }
            if let (Some(legacy), Some(inc)) =
                (secs("incremental", false), secs("incremental", true))
            {
                table.push_str(&format!(
                    "- {n}: incremental, legacy loop / build-snapshot: {:.1}x\n",
                    legacy / inc
                ));
            }
        }
        notes.push(format!(
            "machine: {}; node: {}; CPU s: build-snapshot's user + system time; node CPU s: the node's over the row; load: 1-minute load average when the row started",
            bench::machine(),
            bench::kubo_version(&url)
        ));
        if let Some(rss) = bench::proc_peak_rss_mb(bench::env_node_pid()) {
            notes.push(format!(
                "the node's own peak RSS over the whole run (generation included): {rss:.0} MB"
            ));
        }
        for note in &notes {
            table.push_str(&format!("- {note}\n"));
        }
        arke_dr::print_line(&table)?;
        Ok(Exit::Ok)
    })
}
