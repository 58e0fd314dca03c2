//! bench-incremental: what a night costs with incremental archives. On production-shaped data
//! in one throwaway node, side by side in the same run:
//!
//! 1. a full export of the state after a day in which `--change-percent` of the entities
//!    changed (half with an event, half without), against `export-car --incremental` of the
//!    same state over the previous night's verified full archive: time, bytes, blocks, peak
//!    RSS (and the chain's verification beside the full archive's);
//! 2. after `--chain-len` such days in all (a full archive and the incrementals), the restore
//!    of the chain from its newest file into a fresh node, against the restore of one full
//!    archive of the same state into another fresh node.
//!
//! Every command runs under GNU time. Prints Markdown tables (not a test). Run it through
//! `scripts/bench-incremental.sh`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use arke_bench as bench;
use arke_core::{Exit, Progress};
use arke_dr::args::{NodeArgs, OutputArgs};
use arke_testkit::generator::{GenConfig, Summary, generate};
use arke_testkit::node::TestNode;
use arke_testkit::world::World;
use clap::Parser;
use serde_json::Value;

/// Benchmark incremental archives against full ones (export, verify, restore).
#[derive(Debug, Parser)]
struct Args {
    /// Entity counts to run, e.g. 10000,100000
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    sizes: Vec<usize>,
    /// Entities changed per day, in percent
    #[arg(long, default_value_t = 1.0)]
    change_percent: f64,
    /// Archives in the chain restored (the full one included)
    #[arg(long, default_value_t = 7)]
    chain_len: usize,
    /// Folder with the release binaries (build-snapshot, export-car, verify-car,
    /// restore-from-car)
    #[arg(long)]
    bin_dir: PathBuf,
    /// Where the archives are written (default: a temporary folder, removed at the end)
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    out: OutputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    arke_dr::run("bench-incremental", &args.out, async {
        Ok(run(&args).await?)
    })
}

/// One measured command.
#[derive(Debug, Clone)]
struct Row {
    what: String,
    secs: f64,
    cpu: f64,
    rss_mb: f64,
    bytes: Option<u64>,
    blocks: Option<u64>,
}

/// The data set of one size on the shared node, and the commands over it.
struct Set<'a> {
    args: &'a Args,
    url: String,
    root: String,
    pointer: String,
    work: PathBuf,
    node_pid: Option<u32>,
}

impl Set<'_> {
    fn bin(&self, name: &str) -> PathBuf {
        self.args.bin_dir.join(name)
    }

    fn common(&self) -> Vec<String> {
        [
            "--api",
            &self.url,
            "--pointer-path",
            &self.pointer,
            "--index-root",
            &self.root,
            "--no-progress",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn build(&self) -> anyhow::Result<bench::Timed> {
        let mut a = self.common();
        a.extend([
            "--snapshots-dir".into(),
            self.work.join("snapshots").display().to_string(),
        ]);
        bench::time_cmd(&self.bin("build-snapshot"), &a, self.node_pid, false)
    }

    /// An export into `dir`; returns the row and the report.
    fn export(&self, dir: &Path, what: &str, extra: &[&str]) -> anyhow::Result<(Row, Value)> {
        let mut a = self.common();
        a.extend(["--backups-dir".into(), dir.display().to_string()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        let t = bench::time_cmd(&self.bin("export-car"), &a, self.node_pid, false)?;
        let v: Value = serde_json::from_slice(&t.output.stdout)?;
        let row = Row {
            what: what.into(),
            secs: t.secs,
            cpu: t.cpu,
            rss_mb: t.rss_mb,
            bytes: v["size_bytes"].as_u64(),
            blocks: v["blocks"].as_u64(),
        };
        Ok((row, v))
    }

    fn verify(&self, car: &Path, what: &str) -> anyhow::Result<Row> {
        let a = vec![car.display().to_string(), "--no-progress".into()];
        let t = bench::time_cmd(&self.bin("verify-car"), &a, None, true)?;
        Ok(Row {
            what: what.into(),
            secs: t.secs,
            cpu: t.cpu,
            rss_mb: t.rss_mb,
            bytes: None,
            blocks: None,
        })
    }

    /// A restore of `car` into a brand-new node.
    fn restore(&self, car: &Path, what: &str) -> anyhow::Result<Row> {
        let node = TestNode::start()?;
        let a: Vec<String> = vec![
            car.display().to_string(),
            "--api".into(),
            node.url().to_string(),
            "--pointer-path".into(),
            self.pointer.clone(),
            "--index-root".into(),
            self.root.clone(),
            "--no-progress".into(),
            "--json".into(),
        ];
        let t = bench::time_cmd(&self.bin("restore-from-car"), &a, node.pid(), false)?;
        let v: Value = serde_json::from_slice(&t.output.stdout)?;
        node.stop();
        Ok(Row {
            what: what.into(),
            secs: t.secs,
            cpu: t.cpu,
            rss_mb: t.rss_mb,
            bytes: None,
            blocks: v["blocks_imported"].as_u64(),
        })
    }
}

fn path(v: &Value) -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(
        v["car_path"]
            .as_str()
            .context("no car_path in the report")?,
    ))
}

/// A day's changes: `count` entities get a new version, every other one with an event.
async fn change(world: &World, ids: &[String], count: usize, day: usize) -> anyhow::Result<()> {
    let start = (day * count) % ids.len().max(1);
    for (i, id) in ids.iter().cycle().skip(start).take(count).enumerate() {
        world.update(id, i % 2 == 0).await?;
    }
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<Exit> {
    let kubo = args.node.kubo()?;
    let url = args.node.api_url();
    let work_dir = bench::work_dir(args.work_dir.as_deref())?;
    let work = work_dir.path.clone();
    let mut out = vec![format!(
        "Machine: {}; {}.",
        bench::machine(),
        bench::kubo_version(&url)
    )];
    for &n in &args.sizes {
        let set = Set {
            args,
            url: url.clone(),
            root: format!("/bench-inc-{n}/index"),
            pointer: format!("/bench-inc-{n}/pointer"),
            work: work.join(format!("inc-{n}")),
            node_pid: bench::env_node_pid(),
        };
        std::fs::create_dir_all(&set.work)?;
        out.push(one_size(&set, &kubo, n).await?);
    }
    for line in out {
        arke_dr::print_line(&line)?;
    }
    Ok(Exit::Ok)
}

async fn one_size(set: &Set<'_>, kubo: &arke_core::kubo::Kubo, n: usize) -> anyhow::Result<String> {
    let t = Instant::now();
    let summary = generate(
        kubo,
        &GenConfig {
            entities: n,
            seed: 7,
            pin: false,
            force: true,
            index_root: set.root.clone(),
            test_index_root: format!("/bench-inc-{n}/test/index"),
            pointer_path: set.pointer.clone(),
            work_dir: Some(set.work.clone()),
            ..GenConfig::default()
        },
        &Progress::off(),
    )
    .await?;
    let generated = t.elapsed().as_secs_f64();
    let world = World::new(kubo.clone(), &set.root, &set.pointer);
    let ids = worker_ids(&world, &summary);
    let per_day = ((n as f64 * set.args.change_percent / 100.0).round() as usize).max(1);
    let chain_dir = set.work.join("chain");
    set.build()?;
    let (_, base) = set.export(&chain_dir, "full (night 0)", &[])?;
    set.verify(&path(&base)?, "verify full (night 0)")?;

    // Night 1: the comparison at the same state.
    change(&world, &ids, per_day, 0).await?;
    set.build()?;
    let (inc_row, inc) = set.export(&chain_dir, "incremental", &["--incremental"])?;
    anyhow::ensure!(inc["kind"] == "incremental", "not incremental: {inc}");
    let (full_row, full) = set.export(&set.work.join("full-1"), "full", &[])?;
    let v_inc = set.verify(&path(&inc)?, "verify-car of the chain (full + 1)")?;
    let v_full = set.verify(&path(&full)?, "verify-car of the full archive")?;
    // Disk: at 100K a full archive is over 5 GB; this one is not needed again.
    std::fs::remove_dir_all(set.work.join("full-1"))?;

    // The rest of the week, then the restores.
    for day in 1..set.args.chain_len.saturating_sub(1) {
        change(&world, &ids, per_day, day).await?;
        set.build()?;
        let (_, v) = set.export(&chain_dir, "incremental", &["--incremental"])?;
        set.verify(&path(&v)?, "verify")?;
    }
    let newest = std::fs::read_dir(&chain_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "car"))
        .max()
        .context("no archive")?;
    let (_, week_full) = set.export(&set.work.join("full-week"), "full", &[])?;
    let r_chain = set.restore(
        &newest,
        &format!(
            "restore-from-car of the chain (1 full + {} incrementals)",
            set.args.chain_len - 1
        ),
    )?;
    let r_full = set.restore(
        &path(&week_full)?,
        "restore-from-car of one full archive of the same state",
    )?;
    Ok(tables(
        n,
        per_day,
        generated,
        &[full_row, inc_row, v_full, v_inc],
        &[r_full, r_chain],
    ))
}

/// Ids whose tip sits at the worker's path (the ones an update moves).
fn worker_ids(world: &World, s: &Summary) -> Vec<String> {
    s.entities
        .iter()
        .filter(|e| {
            e.network == "main" && world.tip_path(&e.id).ok().as_deref() == Some(e.path.as_str())
        })
        .map(|e| e.id.clone())
        .collect()
}

fn tables(n: usize, per_day: usize, generated: f64, nightly: &[Row], restores: &[Row]) -> String {
    let mut s = format!(
        "\n### {n} entities, {per_day} changed per day (data generated in {generated:.0} s)\n\n| run | wall s | CPU s | peak RSS MB | bytes written | blocks |\n|---|---:|---:|---:|---:|---:|\n"
    );
    let opt = |v: Option<u64>| v.map_or("".into(), |x| x.to_string());
    for r in nightly.iter().chain(restores) {
        s.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.0} | {} | {} |\n",
            r.what,
            r.secs,
            r.cpu,
            r.rss_mb,
            opt(r.bytes),
            opt(r.blocks)
        ));
    }
    let (full, inc) = (&nightly[0], &nightly[1]);
    let pct = |a: f64, b: f64| if b > 0.0 { 100.0 * a / b } else { 0.0 };
    s.push_str(&format!(
        "\nincremental / full: time {:.1}%, bytes {:.2}%, blocks {:.2}% (target: under 5% in time and bytes)\n",
        pct(inc.secs, full.secs),
        pct(inc.bytes.unwrap_or(0) as f64, full.bytes.unwrap_or(1) as f64),
        pct(inc.blocks.unwrap_or(0) as f64, full.blocks.unwrap_or(1) as f64)
    ));
    s.push_str(&format!(
        "restore of the chain / restore of the full archive: {:.2}x the time\n",
        restores[1].secs / restores[0].secs.max(0.001)
    ));
    s
}
