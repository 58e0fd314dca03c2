//! bench-car: export-car against the node's own `dag/export` (Kubo's) of the same snapshot root,
//! and verify-car against go-car's `car verify` (every block re-hashed, roots present: the `car`
//! built by `scripts/ipfs-node.sh`) and `sha256sum` on the same file, on production-shaped data
//! in the same node and the same run. Prints Markdown tables. Run it through
//! `scripts/bench-car.sh`.
//!
//! Every command runs under GNU time (CPU seconds, peak RSS); the node's CPU seconds come from
//! `/proc/$IPFS_NODE_PID/stat`. Each measurement is repeated `--reps` times with the order
//! rotated; the table shows the best run and lists them all (the machine is shared, so the
//! slower runs carry other work's noise). Before the timed runs, one untimed `dag/export`
//! warms the node's blockstore and one read of the archive warms the page cache.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use arke_bench as bench;
use arke_core::car::{CarReader, ReaderOptions};
use arke_core::{Exit, Progress};
use arke_dr::args::{NodeArgs, OutputArgs};
use arke_testkit::generator::{GenConfig, generate};
use clap::Parser;
use serde_json::Value;

/// Benchmark export-car and verify-car against Kubo's dag/export, go-car's car verify and sha256sum.
#[derive(Debug, Parser)]
struct Args {
    /// Entity counts to run, e.g. 10000,100000
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    sizes: Vec<usize>,
    /// Timed runs of each command (the best is reported, all are listed)
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// The binaries to measure and to prepare the data with
    #[arg(long)]
    export_car: PathBuf,
    #[arg(long)]
    verify_car: PathBuf,
    #[arg(long)]
    build_snapshot: PathBuf,
    /// Another verify-car build to time on the same file in the same run (e.g. main's, for a
    /// before/after row)
    #[arg(long)]
    verify_car_baseline: Option<PathBuf>,
    /// go-car's `car` (`car verify FILE`; `$(scripts/ipfs-node.sh bin)/car`)
    #[arg(long)]
    car: PathBuf,
    /// Where the archives are written (default: a temporary folder, removed at the end)
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// One timed command.
#[derive(Debug, Clone)]
struct Run {
    secs: f64,
    cpu: f64,
    rss_mb: f64,
    node_cpu: Option<f64>,
    load: f64,
    stdout: Vec<u8>,
}

/// What a command writes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Capture,
    Discard,
}

struct Timer {
    node_pid: Option<u32>,
}

impl Timer {
    /// Runs `prog args` under /usr/bin/time; fails with its stderr when it fails.
    fn run(&self, prog: &Path, args: &[&str], out: Out) -> anyhow::Result<Run> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let t = bench::time_cmd(prog, &args, self.node_pid, out == Out::Discard)?;
        Ok(Run {
            secs: t.secs,
            cpu: t.cpu,
            rss_mb: t.rss_mb,
            node_cpu: t.node_cpu,
            load: t.load,
            stdout: t.output.stdout,
        })
    }
}

/// A table row: one command, its runs.
struct Row {
    group: &'static str,
    what: String,
    entities: usize,
    blocks: Option<u64>,
    bytes: u64,
    runs: Vec<Run>,
    /// What the file lacks (export rows).
    lacks: String,
}

impl Row {
    fn best(&self) -> Option<&Run> {
        self.runs.iter().min_by(|a, b| a.secs.total_cmp(&b.secs))
    }
    fn secs(&self) -> f64 {
        self.best().map_or(f64::NAN, |r| r.secs)
    }
}

/// The multihashes of a CAR file's sections (no hashing), and the number of sections.
fn block_set(path: &Path) -> anyhow::Result<(HashSet<Vec<u8>>, u64)> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = CarReader::new(
        BufReader::with_capacity(1 << 20, f),
        ReaderOptions::default(),
    )?;
    let mut set = HashSet::new();
    let mut n = 0;
    while let Some(b) = r.next_block()? {
        set.insert(b.cid.hash().to_bytes());
        n += 1;
    }
    Ok((set, n))
}

/// The kind of block a closure role names ("event 3 from the head", "entity X v2 manifest",
/// "entity X v1, component body, link 0 at depth 1", ...).
fn role_kind(role: &str) -> &'static str {
    if role.starts_with("event ") {
        "event-chain block"
    } else if role.contains("inclusion event") {
        "inclusion event"
    } else if role.contains(", component") && role.contains(" link ") {
        "component block"
    } else if role.contains(", component") {
        "component"
    } else if role.contains("link ") {
        "plain-linked block"
    } else if role.starts_with("entity ") {
        "manifest version"
    } else if role.contains("snapshot") {
        "snapshot block"
    } else {
        "other block"
    }
}

/// verify-car's verdict on a file, in a few words: "verified", or its error findings by kind
/// and the closure's missing blocks by role (it names them; the table counts them).
fn verdict(verify_car: &Path, car: &Path) -> anyhow::Result<String> {
    let o = Command::new(verify_car)
        .args(["--json", "--no-progress", "-q"])
        .arg(car)
        .stdin(Stdio::null())
        .output()
        .context("running verify-car")?;
    let v: Value = serde_json::from_slice(&o.stdout).with_context(|| {
        format!(
            "verify-car {} printed no JSON ({}): {}",
            car.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )
    })?;
    if v["verified"] == Value::Bool(true) {
        return Ok("nothing (verify-car: verified)".into());
    }
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let closure = &v["closure"];
    // The top-level findings include the closure walk's.
    // Warnings too: with a snapshot as root (no descriptor), verify-car counts the event chain
    // as optional, so a missing event is a warning there.
    for f in v["findings"].as_array().into_iter().flatten() {
        let kind = match f["severity"].as_str() {
            Some("error") => f["kind"].as_str().unwrap_or("?").to_string(),
            _ => format!("(warning) {}", f["kind"].as_str().unwrap_or("?")),
        };
        let what = match f["role"].as_str() {
            Some(role) => format!("{kind} {}", role_kind(role)),
            None => kind.to_string(),
        };
        *kinds.entry(what).or_default() += 1;
    }
    if let Some(d) = closure["findings_dropped"].as_u64().filter(|d| *d > 0) {
        kinds.insert("(findings past the cap)".into(), d);
    }
    let listed = kinds
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "verify-car: NOT verified (exit {}); closure missing {} required, {} optional{}; findings: {listed}",
        o.status.code().unwrap_or(-1),
        closure["missing"],
        closure["missing_optional"],
        match closure["event_chain"]["length"].as_u64() {
            Some(l) => format!(", event chain walked: {l} events"),
            None => String::new(),
        },
    ))
}

fn file_size(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len())
}

/// The only `*.car` in `dir`.
fn the_car(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut cars: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "car"))
        .collect();
    if cars.len() != 1 {
        bail!(
            "expected one archive in {}, found {}",
            dir.display(),
            cars.len()
        );
    }
    Ok(cars.remove(0))
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn machine_notes(url: &str, car: &Path) -> String {
    let first_line = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "machine: {}; node: {}; `car`: {} (go-car v2's block reader); {}",
        bench::machine(),
        bench::kubo_version(url),
        car.display(),
        first_line("sha256sum", &["--version"]),
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("bench-car", &args.out, async { Ok(bench(&args).await?) })
}

/// The benchmark (its errors are `anyhow`, as a bench's are).
async fn bench(args: &Args) -> anyhow::Result<Exit> {
    let kubo = args.node.kubo()?;
    let url = args.node.api_url();
    let base = url.trim_end_matches('/').trim_end_matches("/api/v0");
    let api = format!("{base}/api/v0");
    let node_pid = bench::env_node_pid();
    if node_pid.is_none() {
        tracing::warn!("IPFS_NODE_PID not set: no node CPU column");
    }
    let reps = args.reps.max(1);
    let work_dir = bench::work_dir(args.work_dir.as_deref())?;
    let work = work_dir.path.clone();
    let timer = Timer { node_pid };
    let curl = PathBuf::from("curl");
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = vec![machine_notes(&url, &args.car)];

    for &n in &args.sizes {
        let root = format!("/bench-car-{n}/index");
        let pointer = format!("/bench-car-{n}/pointer");
        let t = Instant::now();
        let summary = generate(
            &kubo,
            &GenConfig {
                entities: n,
                seed: 7,
                pin: false,
                force: true,
                index_root: root.clone(),
                test_index_root: format!("/bench-car-{n}/test/index"),
                pointer_path: pointer.clone(),
                work_dir: Some(work.clone()),
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
        let snaps = work.join(format!("snapshots-{n}"));
        let t = Instant::now();
        let snap = timer.run(
            &args.build_snapshot,
            &[
                "--api",
                &url,
                "--pointer-path",
                &pointer,
                "--index-root",
                &root,
                "--snapshots-dir",
                &snaps.display().to_string(),
                "--json",
                "--no-progress",
            ],
            Out::Capture,
        )?;
        let snap: Value = serde_json::from_slice(&snap.stdout)?;
        let cid = snap["cid"]
            .as_str()
            .context("build-snapshot printed no cid")?
            .to_owned();
        tracing::info!(
            "snapshot {cid} in {:.0}s; warming the node with one dag/export",
            t.elapsed().as_secs_f64()
        );
        let export_url = format!("{api}/dag/export?arg={cid}");
        let dag_car = work.join(format!("dag-export-{n}.car"));
        let dag_car_s = dag_car.display().to_string();
        let curl_args = ["-sS", "-f", "-X", "POST", "-o", &dag_car_s, &export_url];
        let warm = timer.run(&curl, &curl_args, Out::Discard)?;
        tracing::info!("warm-up dag/export: {:.1}s", warm.secs);

        // (a) export: dag/export and export-car, alternating.
        let bk = work.join(format!("backups-{n}"));
        let bk_s = bk.display().to_string();
        let mut dag = Row {
            group: "export",
            what: "`dag/export` of the snapshot root (node, curl to a file)".into(),
            entities: n,
            blocks: None,
            bytes: 0,
            runs: vec![],
            lacks: String::new(),
        };
        let mut exp = Row {
            group: "export",
            what: "export-car".into(),
            entities: n,
            blocks: None,
            bytes: 0,
            runs: vec![],
            lacks: String::new(),
        };
        let mut export_report: Option<Value> = None;
        for r in 0..reps {
            for step in 0..2 {
                if (step + r) % 2 == 0 {
                    let run = timer.run(&curl, &curl_args, Out::Discard)?;
                    tracing::info!("dag/export run {}: {:.1}s", r + 1, run.secs);
                    dag.runs.push(run);
                } else {
                    if bk.exists() {
                        std::fs::remove_dir_all(&bk)?;
                    }
                    let run = timer.run(
                        &args.export_car,
                        &[
                            "--api",
                            &url,
                            "--pointer-path",
                            &pointer,
                            "--snapshot",
                            &cid,
                            "--backups-dir",
                            &bk_s,
                            "--json",
                            "--no-progress",
                        ],
                        Out::Capture,
                    )?;
                    let rep: Value = serde_json::from_slice(&run.stdout)?;
                    tracing::info!(
                        "export-car run {}: {:.1}s, {} blocks ({} by dag/export, {} by block/get)",
                        r + 1,
                        run.secs,
                        rep["blocks"],
                        rep["bulk_blocks"],
                        rep["fetched_blocks"]
                    );
                    export_report = Some(rep.clone());
                    exp.blocks = rep["blocks"].as_u64();
                    exp.bytes = rep["size_bytes"].as_u64().unwrap_or(0);
                    exp.runs.push(run);
                }
            }
        }
        dag.bytes = file_size(&dag_car)?;
        if let Some(rep) = &export_report {
            notes.push(format!(
                    "{n} entities, export-car (last run): {} blocks, {} from its one `dag/export`, {} read one by one with `block/get`, {} node requests, {:.1} s by its own clock",
                    rep["blocks"],
                    rep["bulk_blocks"],
                    rep["fetched_blocks"],
                    rep["node_requests"],
                    rep["duration_secs"].as_f64().unwrap_or(f64::NAN)
                ));
        }
        let car = the_car(&bk)?;
        let car_s = car.display().to_string();
        // What each file lacks: the blocks of the other it does not hold, and what
        // verify-car says about it (the dag/export file has no .json beside it: verify-car
        // takes its header root, the snapshot, and walks the closure from there).
        let (dag_set, dag_n) = block_set(&dag_car)?;
        let (exp_set, _) = block_set(&car)?;
        dag.blocks = Some(dag_n);
        let dag_only = dag_set.difference(&exp_set).count();
        let exp_only = exp_set.difference(&dag_set).count();
        dag.lacks = format!(
            "{exp_only} of export-car's blocks; {}",
            verdict(&args.verify_car, &dag_car)?
        );
        exp.lacks = format!(
            "{dag_only} of dag/export's blocks; {}",
            verdict(&args.verify_car, &car)?
        );
        tracing::info!("dag/export lacks: {}", dag.lacks);
        tracing::info!("export-car lacks: {}", exp.lacks);
        drop((dag_set, exp_set));
        std::fs::remove_file(&dag_car)?;
        rows.push(dag);
        rows.push(exp);

        // (b) verify, on the archive export-car wrote (its .json beside it).
        let bytes = file_size(&car)?;
        let blocks = rows.last().and_then(|r| r.blocks);
        // Warm the page cache (untimed).
        std::io::copy(&mut File::open(&car)?, &mut std::io::sink())?;
        let verify_args: Vec<&str> = vec!["--json", "--no-progress", &car_s];
        let mut cmds: Vec<(String, PathBuf, Vec<&str>)> = vec![
            (
                "verify-car (full)".into(),
                args.verify_car.clone(),
                verify_args.clone(),
            ),
            (
                "go-car `car verify`".into(),
                args.car.clone(),
                vec!["verify", car_s.as_str()],
            ),
            (
                "`sha256sum`".into(),
                PathBuf::from("sha256sum"),
                vec![car_s.as_str()],
            ),
        ];
        if let Some(base) = &args.verify_car_baseline {
            cmds.push((
                "baseline: verify-car (full), the other build".into(),
                base.clone(),
                verify_args,
            ));
        }
        let mut vrows: Vec<Row> = cmds
            .iter()
            .map(|(what, _, _)| Row {
                group: "verify",
                what: what.clone(),
                entities: n,
                blocks,
                bytes,
                runs: vec![],
                lacks: String::new(),
            })
            .collect();
        for r in 0..reps {
            for k in 0..cmds.len() {
                let i = (k + r) % cmds.len();
                let (_, prog, a) = &cmds[i];
                let run = timer.run(prog, a, Out::Capture)?;
                if i == 0 || i == 3 {
                    let v: Value = serde_json::from_slice(&run.stdout)?;
                    if v["verified"] != Value::Bool(true) {
                        bail!("verify-car did not verify {car_s}");
                    }
                }
                if i == 1 && !run.stdout.starts_with(b"ok: ") {
                    bail!(
                        "car verify did not pass {car_s}: {}",
                        String::from_utf8_lossy(&run.stdout)
                    );
                }
                tracing::info!("{} run {}: {:.2}s", cmds[i].0, r + 1, run.secs);
                vrows[i].runs.push(Run {
                    stdout: Vec::new(),
                    ..run
                });
            }
        }
        rows.extend(vrows);
        if args.work_dir.is_some() {
            // The record bench-restore looks for (`<work>/bench-<n>/archive.json`, export-car's
            // report), so that both benchmarks can share one data set: WORK_DIR for both.
            if let Some(rep) = &export_report {
                let dir = work.join(format!("bench-{n}"));
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("archive.json"), serde_json::to_vec_pretty(rep)?)?;
            }
            tracing::info!("kept {}", car.display());
        }
    }

    let mut table = String::new();
    let mut targets = Vec::new();
    for group in ["export", "verify"] {
        if group == "export" {
            table.push_str(
                    "| run | entities | blocks | MB | seconds (best) | all runs (s) | blocks/s | ratio | CPU s | node CPU s | peak RSS MB | load | what the file lacks |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
                );
        } else {
            table.push_str(
                    "\n| run | entities | blocks | MB | seconds (best) | all runs (s) | MB/s | blocks/s | ratio | CPU s | peak RSS MB | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
                );
        }
        for r in rows.iter().filter(|r| r.group == group) {
            let Some(best) = r.best() else { continue };
            // The arke tool of this row's group and size: export-car, verify-car.
            let arke = rows.iter().find(|o| {
                o.group == r.group
                    && o.entities == r.entities
                    && (o.what.starts_with("export-car") || o.what.starts_with("verify-car"))
            });
            let ratio = arke.map(|a| r.secs() / a.secs());
            let is_arke = arke.is_some_and(|a| std::ptr::eq(a, r));
            let blocks_per_s = r.blocks.filter(|_| !r.what.contains("sha256sum"));
            let ratio_s = if is_arke {
                "1.00".into()
            } else {
                fmt_opt(ratio, 2)
            };
            let all = r
                .runs
                .iter()
                .map(|x| format!("{:.2}", x.secs))
                .collect::<Vec<_>>()
                .join(", ");
            let blocks = r.blocks.map_or("-".into(), |b| b.to_string());
            let bps = fmt_opt(blocks_per_s.map(|b| b as f64 / best.secs), 0);
            if group == "export" {
                table.push_str(&format!(
                        "| {} | {} | {blocks} | {:.1} | {:.2} | {all} | {bps} | {ratio_s} | {:.1} | {} | {:.0} | {:.1} | {} |\n",
                        r.what,
                        r.entities,
                        r.bytes as f64 / 1e6,
                        best.secs,
                        best.cpu,
                        fmt_opt(best.node_cpu, 1),
                        best.rss_mb,
                        best.load,
                        r.lacks,
                    ));
            } else {
                table.push_str(&format!(
                        "| {} | {} | {blocks} | {:.1} | {:.2} | {all} | {:.0} | {bps} | {ratio_s} | {:.1} | {:.0} | {:.1} |\n",
                        r.what,
                        r.entities,
                        r.bytes as f64 / 1e6,
                        best.secs,
                        r.bytes as f64 / 1e6 / best.secs,
                        best.cpu,
                        best.rss_mb,
                        best.load,
                    ));
            }
            if is_arke && group == "verify" {
                let mbs = r.bytes as f64 / 1e6 / best.secs;
                targets.push(format!(
                        "- {} entities, verify-car: {mbs:.0} MB/s, page cache warm (target: at least 1200 MB/s on 2 cores)",
                        r.entities,
                    ));
            }
            if let Some(ratio) = ratio.filter(|_| !is_arke) {
                // MB/s ratios (the files differ in size for export).
                let arke = arke.map_or(1.0, |a| a.bytes as f64 / a.secs());
                let speed = arke / (r.bytes as f64 / r.secs());
                let name = if r.what.contains("dag/export") {
                    "export-car vs dag/export (target: at least 1x while complete)"
                } else if r.what.contains("car verify") {
                    "verify-car vs go-car car verify (target: at least 1.5x)"
                } else if r.what.starts_with("baseline") {
                    "verify-car vs the baseline build"
                } else {
                    "verify-car vs sha256sum"
                };
                targets.push(format!(
                    "- {} entities, {name}: {speed:.2}x the speed in MB/s ({ratio:.2}x in seconds)",
                    r.entities,
                ));
            }
        }
    }
    table.push('\n');
    table.push_str(&targets.join("\n"));
    table.push_str("\n\n");
    notes.push(
        "ratio: the row's seconds / the arke tool's seconds (above 1: the arke tool is faster); \
             CPU s: the command's user + system time; node CPU s: the node process's over the same \
             interval; load: 1-minute load average when the best run started"
            .into(),
    );
    if let Some(rss) = bench::proc_peak_rss_mb(node_pid) {
        notes.push(format!(
            "the node's own peak RSS over the whole run (generation included): {rss:.0} MB"
        ));
    }
    for n in &notes {
        table.push_str(&format!("- {n}\n"));
    }
    arke_dr::print_line(&table)?;
    Ok(Exit::Ok)
}
