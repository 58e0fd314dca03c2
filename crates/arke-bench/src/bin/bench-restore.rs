//! bench-restore: restore-from-car against the node's own `dag/import` (Kubo's) of the same
//! archive with its root pinned (the floor) and against a reference loop that does what the
//! legacy `restore_from_car.py` did (`dag/import` with the root pinned, then for each snapshot
//! entry `files/mkdir` and `files/write` of the bare CID, one request at a time, then the
//! pointer), side by side in the same run. Each contender gets a brand-new node; the node's CPU
//! seconds over the contender's run come from `/proc/<pid>/stat`. Prints a Markdown table. Run
//! it through `scripts/bench-restore.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use arke_bench as bench;
use arke_core::Exit;
use arke_core::NodeSource;
use arke_core::ipld;
use arke_core::kubo::{Kubo, KuboConfig};
use arke_core::shard::{EntityId, ShardRule};
use arke_dr::args::OutputArgs;
use arke_testkit::node::TestNode;
use clap::{Parser, ValueEnum};
use serde_json::Value;

const POINTER: &str = "/arke/index_pointer";
const ROOT: &str = "/arke/index";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Contender {
    /// `dag/import` of the archive with curl, nothing else
    Floor,
    /// restore-from-car
    Restore,
    /// the legacy request loop
    Reference,
}

/// Benchmark restore-from-car against the node's own dag/import and the legacy request loop.
#[derive(Debug, Parser)]
struct Args {
    /// Entity counts to run, e.g. 10000,100000
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    sizes: Vec<usize>,
    /// Contenders, in the order they run
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "floor,restore,reference"
    )]
    contenders: Vec<Contender>,
    /// Generator seed
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Folder with the release binaries (generate-test-data, build-snapshot, export-car,
    /// restore-from-car)
    #[arg(long)]
    bin_dir: PathBuf,
    /// Keep the archives here (`bench-<N>/`) and reuse one that is already there instead of
    /// generating the data again (default: a temporary folder, removed at the end)
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// pin-roots in the floor's and the reference's dag/import (the legacy script pinned the
    /// root; restore-from-car pins every block too, so the floor pins as well)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pin_roots: bool,
    /// Run the reference's per-entity loop for only this many entries and extrapolate its time
    /// linearly to all of them (a lower bound, marked in the notes); 0: all
    #[arg(long, default_value_t = 0)]
    reference_sample: usize,
    /// The reference runs its loop on the floor's node after the floor's import (the same
    /// `dag/import`, so it is done once; put reference right after floor in --contenders)
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    reference_on_floor_node: bool,
    /// restore-from-car's --concurrency
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[command(flatten)]
    out: OutputArgs,
}

/// restore-from-car's phases, in its JSON order.
const PHASES: [&str; 8] = [
    "verify",
    "plan",
    "wait",
    "import",
    "pin",
    "tips",
    "pointer",
    "verify_after",
];

struct Row {
    entities: usize,
    contender: Contender,
    seconds: f64,
    /// Seconds per phase (restore-from-car's own; for the others, the parts that correspond).
    phases: [Option<f64>; 8],
    requests: Option<u64>,
    rss_mb: Option<f64>,
    /// The node's CPU seconds over the contender's run.
    node_cpu: Option<f64>,
    /// The node's peak RSS at the end of the contender's run (a brand-new node each time).
    node_rss_mb: Option<f64>,
    /// 1-minute load average when the contender started.
    load: f64,
}

/// An archive to restore.
struct Archive {
    car: PathBuf,
    entities: usize,
    blocks: u64,
    bytes: u64,
    note: String,
}

fn run_json(cmd: &mut Command, what: &str) -> anyhow::Result<Value> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{what}'s JSON"))
}

/// Source node: generate, build a snapshot, export. Reuses `<work>/bench-<n>/` when it holds a
/// finished archive.
fn make_archive(args: &Args, n: usize, work: &Path) -> anyhow::Result<Archive> {
    let dir = work.join(format!("bench-{n}"));
    let done = dir.join("archive.json");
    if let Ok(b) = std::fs::read(&done) {
        let v: Value = serde_json::from_slice(&b)?;
        tracing::info!(
            "{n}: reusing {}",
            v["car_path"].as_str().unwrap_or_default()
        );
        return Ok(archive_from(&v, n, "reused"));
    }
    std::fs::create_dir_all(&dir)?;
    let node = TestNode::start()?;
    let bin = |b: &str| args.bin_dir.join(b);
    let common = |c: &mut Command| {
        c.args([
            "--api",
            node.url(),
            "--pointer-path",
            POINTER,
            "--no-progress",
        ]);
    };
    let t = Instant::now();
    let mut c = Command::new(bin("generate-test-data"));
    common(&mut c);
    c.args([
        "--entities",
        &n.to_string(),
        "--seed",
        &args.seed.to_string(),
    ])
    .args(["--no-pin", "--index-root", ROOT, "--summary"])
    .arg(dir.join("summary.json"));
    let out = c.output().context("running generate-test-data")?;
    if !out.status.success() {
        bail!(
            "generate-test-data failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let generated = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut c = Command::new(bin("build-snapshot"));
    common(&mut c);
    c.args(["--index-root", ROOT, "--json", "--snapshots-dir"])
        .arg(dir.join("snapshots"));
    run_json(&mut c, "build-snapshot")?;
    let built = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut c = Command::new(bin("export-car"));
    common(&mut c);
    c.args(["--json", "--backups-dir"]).arg(dir.join("backups"));
    let v = run_json(&mut c, "export-car")?;
    let exported = t.elapsed().as_secs_f64();
    node.stop();
    tracing::info!(
        "{n}: generated in {generated:.0}s, snapshot in {built:.0}s, exported in {exported:.0}s: {} ({} blocks, {} bytes)",
        v["car_path"].as_str().unwrap_or_default(),
        v["blocks"],
        v["size_bytes"]
    );
    std::fs::write(&done, serde_json::to_vec_pretty(&v)?)?;
    Ok(archive_from(
        &v,
        n,
        &format!(
            "generated in {generated:.0} s, snapshot built in {built:.0} s, exported in {exported:.0} s"
        ),
    ))
}

fn archive_from(v: &Value, n: usize, note: &str) -> Archive {
    Archive {
        car: PathBuf::from(v["car_path"].as_str().unwrap_or_default()),
        entities: v["entities"].as_u64().map_or(n, |e| e as usize),
        blocks: v["blocks"].as_u64().unwrap_or(0),
        bytes: v["size_bytes"].as_u64().unwrap_or(0),
        note: note.to_string(),
    }
}

/// `curl -X POST -F file=@car "$API/api/v0/dag/import?pin-roots=…&allow-big-block=true"`,
/// checked: any error line or root pin error fails the run.
fn curl_import(url: &str, car: &Path, pin_roots: bool) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "POST", "-F"])
        .arg(format!("file=@{}", car.display()))
        .arg(format!(
            "{url}/api/v0/dag/import?pin-roots={pin_roots}&allow-big-block=true"
        ))
        .output()
        .context("running curl")?;
    let secs = t.elapsed().as_secs_f64();
    let body = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "dag/import failed ({}): {} {}",
            out.status,
            body,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut roots = 0;
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).context("dag/import answer")?;
        if v["Type"] == "error" {
            bail!("dag/import: {line}");
        }
        if let Some(r) = v.get("Root") {
            roots += 1;
            if r["PinErrorMsg"].as_str().is_some_and(|m| !m.is_empty()) {
                bail!("dag/import could not pin the root: {line}");
            }
        }
    }
    if pin_roots && roots == 0 {
        bail!("dag/import reported no root: {body}");
    }
    Ok(secs)
}

fn run_restore(args: &Args, url: &str, car: &Path) -> anyhow::Result<(f64, Value, Option<f64>)> {
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "RSS_KB=%M"])
        .arg(args.bin_dir.join("restore-from-car"))
        .arg(car)
        .args([
            "--api",
            url,
            "--pointer-path",
            POINTER,
            "--index-root",
            ROOT,
        ])
        .args(["--no-progress", "--concurrency"])
        .arg(args.concurrency.to_string())
        .output()
        .context("running restore-from-car under /usr/bin/time")?;
    let secs = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("restore-from-car failed: {stderr}");
    }
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("RSS_KB="))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0);
    let v: Value = serde_json::from_slice(&out.stdout).context("restore-from-car's JSON")?;
    if v["restored"] != true {
        bail!("restore-from-car did not restore: {v}");
    }
    Ok((secs, v, rss))
}

/// What `restore_from_car.py` did after its import (spec §6.3 steps 5-7): read the snapshot, then
/// for each entry `files/mkdir <root>/{pi[:2]}/{pi[2:4]} parents=true` and `files/write
/// create=true truncate=true` of the bare CID, sequentially, then the pointer. Returns the
/// seconds of (snapshot read, entry loop, pointer), the request count and the tips written.
async fn reference_loop(
    url: &str,
    car_snapshot: &str,
    sample: usize,
) -> anyhow::Result<([f64; 3], u64, usize, usize)> {
    let kubo = Kubo::new(KuboConfig::new(url, None).map_err(|e| anyhow::anyhow!(e))?)?;
    let http = reqwest::Client::new();
    let api = format!("{}/api/v0", url.trim_end_matches('/'));
    let t = Instant::now();
    let snapshot = ipld::parse_cid(car_snapshot)?;
    let before = kubo.requests();
    let loaded = arke_core::snapshot::load(&NodeSource { kubo: kubo.clone() }, snapshot)
        .await
        .context("reading the snapshot from the node")?;
    let mut requests = kubo.requests() - before;
    let read = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let take = if sample == 0 {
        loaded.entries.len()
    } else {
        sample.min(loaded.entries.len())
    };
    for e in loaded.entries.iter().take(take) {
        let id = EntityId::parse(&e.id)?;
        let (a, b) = id.shard(ShardRule::Legacy);
        let dir = format!("{ROOT}/{a}/{b}");
        let r = http
            .post(format!("{api}/files/mkdir"))
            .query(&[("arg", dir.as_str()), ("parents", "true")])
            .send()
            .await?;
        // The legacy script did not check this answer; a failure shows in the write.
        let _ = r.bytes().await?;
        let path = id.tip_path(ROOT, ShardRule::Legacy);
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(e.tip.to_string().into_bytes())
                .file_name("tip")
                .mime_str("application/octet-stream")?,
        );
        let r = http
            .post(format!("{api}/files/write"))
            .query(&[
                ("arg", path.as_str()),
                ("create", "true"),
                ("truncate", "true"),
            ])
            .multipart(form)
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        if !status.is_success() {
            bail!(
                "files/write {path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        requests += 2;
    }
    let looped = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let header = &loaded.snapshot;
    let pointer = serde_json::json!({
        "schema": "arke/index-pointer@v2",
        "event_head": Value::Null,
        "event_count": loaded.entries.len(),
        "latest_snapshot_cid": snapshot.to_string(),
        "snapshot_seq": header.seq(),
        "snapshot_count": loaded.entries.len(),
        "snapshot_ts": header.ts(),
        "total_count": loaded.entries.len(),
        "last_updated": chrono::Utc::now().to_rfc3339(),
    });
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(serde_json::to_vec(&pointer)?)
            .file_name("pointer")
            .mime_str("application/octet-stream")?,
    );
    let r = http
        .post(format!("{api}/files/write"))
        .query(&[
            ("arg", POINTER),
            ("create", "true"),
            ("truncate", "true"),
            ("parents", "true"),
        ])
        .multipart(form)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("writing the pointer: {}", r.status());
    }
    requests += 1;
    Ok((
        [read, looped, t.elapsed().as_secs_f64()],
        requests,
        take,
        loaded.entries.len(),
    ))
}

fn fmt_secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.1}"))
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from("| entities | contender | total s |");
    for p in PHASES {
        t.push_str(&format!(" {p} |"));
    }
    t.push_str(
        " × floor | reference ÷ this | requests | peak RSS MB | node CPU s | node peak RSS MB | load |\n|---|---|---|",
    );
    t.push_str(&"---|".repeat(PHASES.len() + 7));
    t.push('\n');
    for r in rows {
        let same = |c: Contender| {
            rows.iter()
                .find(|x| x.entities == r.entities && x.contender == c)
                .map(|x| x.seconds)
        };
        let name = match r.contender {
            Contender::Floor => "floor: node's own dag/import (curl)",
            Contender::Restore => "restore-from-car",
            Contender::Reference => "reference: legacy request loop",
        };
        t.push_str(&format!("| {} | {name} | {:.1} |", r.entities, r.seconds));
        for p in r.phases {
            t.push_str(&format!(" {} |", fmt_secs(p)));
        }
        t.push_str(&format!(
            " {} | {} | {} | {} | {} | {} | {:.1} |\n",
            same(Contender::Floor).map_or("-".into(), |f| format!("{:.2}", r.seconds / f)),
            same(Contender::Reference).map_or("-".into(), |f| format!("{:.1}", f / r.seconds)),
            r.requests.map_or("-".into(), |v| v.to_string()),
            r.rss_mb.map_or("-".into(), |v| format!("{v:.0}")),
            r.node_cpu.map_or("-".into(), |v| format!("{v:.1}")),
            r.node_rss_mb.map_or("-".into(), |v| format!("{v:.0}")),
            r.load,
        ));
    }
    t
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("bench-restore", &args.out, async {
        let tmp = tempfile::Builder::new()
            .prefix("arke-bench-restore.")
            .tempdir()?;
        let work = args.work_dir.clone().unwrap_or_else(|| tmp.path().into());
        let pin_roots = args.pin_roots;
        let mut rows: Vec<Row> = Vec::new();
        let mut notes = Vec::new();
        let mut node_version = String::new();
        for &n in &args.sizes {
            let archive = make_archive(&args, n, &work)?;
            notes.push(format!(
                "{n}: {} entities, {} blocks, {:.1} MB CAR ({})",
                archive.entities,
                archive.blocks,
                archive.bytes as f64 / 1e6,
                archive.note
            ));
            let snapshot = {
                let meta = std::fs::read(archive.car.with_extension("json"))
                    .context("reading the archive's .json")?;
                let v: Value =
                    serde_json::from_slice(&meta).context("parsing the archive's .json")?;
                v["snapshot_cid"].as_str().unwrap_or_default().to_string()
            };
            let share = args.reference_on_floor_node
                && args.contenders.contains(&Contender::Floor)
                && args.contenders.contains(&Contender::Reference);
            let mut floor_node: Option<(TestNode, f64)> = None;
            let mut halted = Vec::new();
            for &c in &args.contenders {
                let reused = match c {
                    Contender::Reference => floor_node.take(),
                    _ => None,
                };
                let reused_import = reused.as_ref().map(|(_, secs)| *secs);
                let node = match reused {
                    Some((node, _)) => node,
                    None => {
                        // Each contender imports into a fresh repo once the previous one's
                        // writes are on disk: else it measures their write-back.
                        bench::settle_disk(std::time::Duration::from_secs(120));
                        TestNode::start()?
                    }
                };
                if node_version.is_empty() {
                    node_version = bench::kubo_version(node.url());
                }
                let url = node.url().to_string();
                if reused_import.is_some() {
                    tracing::info!("{n}: {c:?} on the floor's node at {url} (its import reused)");
                } else {
                    tracing::info!("{n}: {c:?} into a fresh node at {url}");
                }
                let cpu0 = bench::proc_cpu(node.pid());
                let load = bench::loadavg();
                let mut row = match c {
                    Contender::Floor => {
                        let secs = curl_import(&url, &archive.car, pin_roots)?;
                        let mut phases = [None; 8];
                        phases[3] = Some(secs);
                        Row {
                            entities: n,
                            contender: c,
                            seconds: secs,
                            phases,
                            requests: Some(1),
                            rss_mb: None,
                            node_cpu: None,
                            node_rss_mb: None,
                            load: 0.0,
                        }
                    }
                    Contender::Restore => {
                        let (secs, v, rss) = run_restore(&args, &url, &archive.car)?;
                        tracing::info!("{n}: restore-from-car: {}", v["durations"]);
                        let warnings: Vec<&str> = v["warnings"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        notes.push(format!(
                            "{n}: restore-from-car restored {} entities ({} moved forward and {} created by events newer than the snapshot), {} blocks imported, {} direct pins, {} tips written as a {}; {} warning(s){}",
                            v["entity_count"],
                            v["replayed"],
                            v["created_after_snapshot"],
                            v["blocks_imported"],
                            v["direct_pins"],
                            v["tips_written"],
                            v["tips_method"].as_str().unwrap_or("?"),
                            warnings.len(),
                            if warnings.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", warnings.join("; "))
                            }
                        ));
                        let mut phases = [None; 8];
                        for (i, p) in PHASES.iter().enumerate() {
                            phases[i] = v["durations"][p].as_f64();
                        }
                        Row {
                            entities: n,
                            contender: c,
                            seconds: secs,
                            phases,
                            requests: None,
                            rss_mb: rss,
                            node_cpu: None,
                            node_rss_mb: None,
                            load: 0.0,
                        }
                    }
                    Contender::Reference => {
                        let t = Instant::now();
                        let import = match reused_import {
                            Some(secs) => secs,
                            None => curl_import(&url, &archive.car, pin_roots)?,
                        };
                        let ([read, looped, pointer], requests, tips, all) =
                            reference_loop(&url, &snapshot, args.reference_sample).await?;
                        let mut seconds = t.elapsed().as_secs_f64() + reused_import.unwrap_or(0.0);
                        if reused_import.is_some() {
                            notes.push(format!(
                                "{n}: the reference ran on the floor's node after its import (the same dag/import, counted once, {import:.1} s)"
                            ));
                        }
                        let mut looped = looped;
                        let mut requests = requests;
                        if tips < all {
                            // A lower bound: each files/write rewrites the shard directories up to
                            // the MFS root, so later writes (a fuller index) cost more, not less.
                            let scale = all as f64 / tips.max(1) as f64;
                            seconds += looped * (scale - 1.0);
                            notes.push(format!(
                                "{n}: the reference's loop ran for the first {tips} of {all} entries ({looped:.1} s, {requests} requests) and is EXTRAPOLATED linearly to all of them ({:.1} s): a lower bound, since every files/write rewrites the shard directories up to the MFS root and the index only grows",
                                looped * scale
                            ));
                            looped *= scale;
                            requests = (requests as f64 * scale).round() as u64;
                        } else {
                            notes.push(format!(
                                "{n}: the reference wrote {tips} tips (the snapshot's entries only, at the legacy shard paths) in {requests} requests"
                            ));
                        }
                        let mut phases = [None; 8];
                        phases[1] = Some(read);
                        phases[3] = Some(import);
                        phases[5] = Some(looped);
                        phases[6] = Some(pointer);
                        Row {
                            entities: n,
                            contender: c,
                            seconds,
                            phases,
                            requests: Some(requests + 1),
                            rss_mb: None,
                            node_cpu: None,
                            node_rss_mb: None,
                            load: 0.0,
                        }
                    }
                };
                row.load = load;
                row.node_cpu = cpu0.zip(bench::proc_cpu(node.pid())).map(|(a, b)| b - a);
                row.node_rss_mb = bench::proc_peak_rss_mb(node.pid());
                tracing::info!("{n}: {c:?}: {:.1}s", row.seconds);
                if c == Contender::Floor && share {
                    floor_node = Some((node, row.seconds));
                } else {
                    // Deleted once the size is done, not before the next contender.
                    halted.extend(node.halt());
                }
                rows.push(row);
            }
            tracing::info!("table so far:\n{}", table(&rows));
        }
        let mut out = table(&rows);
        out.push('\n');
        for note in notes {
            out.push_str(&format!("- {note}\n"));
        }
        for &n in &args.sizes {
            let get = |c: Contender| {
                rows.iter()
                    .find(|r| r.entities == n && r.contender == c)
                    .map(|r| r.seconds - r.phases[3].unwrap_or(0.0))
            };
            if let (Some(reference), Some(restore)) =
                (get(Contender::Reference), get(Contender::Restore))
            {
                out.push_str(&format!(
                    "- {n}: everything but the dag/import (the same node work in all three): reference {reference:.1} s, restore-from-car {restore:.1} s ({:.1}x)\n",
                    reference / restore.max(0.001)
                ));
            }
        }
        for &n in &args.sizes {
            let secs = |c: Contender| {
                rows.iter()
                    .find(|r| r.entities == n && r.contender == c)
                    .map(|r| r.seconds)
            };
            if let (Some(floor), Some(restore)) = (secs(Contender::Floor), secs(Contender::Restore))
            {
                out.push_str(&format!(
                    "- {n}: restore-from-car / Kubo's dag/import: {:.2}x (target: at most 1.3x)\n",
                    restore / floor
                ));
            }
            if let (Some(reference), Some(restore)) =
                (secs(Contender::Reference), secs(Contender::Restore))
            {
                out.push_str(&format!(
                    "- {n}: legacy loop / restore-from-car: {:.1}x (target: at least 10x)\n",
                    reference / restore
                ));
            }
        }
        out.push_str(&format!(
            "- dag/import with pin-roots={pin_roots}&allow-big-block=true; every contender into a brand-new node; machine: {}; node: {}\n",
            bench::machine(),
            node_version,
        ));
        arke_dr::print_line(&out)?;
        Ok(Exit::Ok)
    })
}
