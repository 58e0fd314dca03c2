//! The status page in a real browser: a host shaped as the jobs leave it after 35 nights (run
//! records saved through `RunRecord::save`, so the history is the one the jobs write; archive
//! files with their `.json` and `.verified`), the status collected from it, the page rendered
//! and opened in headless chromium, by `file://` and through a real HTTP server. The DOM the
//! browser builds is checked for elements (the verdict, 30 nights, the failed ones), and the
//! screenshot for being a PNG of the window's size. Chromium missing is a failure, not a skip.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use arke_core::model::{BackupMeta, SnapshotMeta};
use arke_ops::config::{Config, Settings};
use arke_ops::runs::{ArchiveRecord, RunRecord, RunStatus, UploadRecord};
use arke_ops::status::{self, Severity, Thresholds, page};
use arke_testkit::browser::{Browser, file_url, png_size};
use chrono::{DateTime, Duration as Span, SecondsFormat, Utc};

const SNAPSHOT_CID: &str = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
const MIB: u64 = 1 << 20;

/// Nights with a failure, counted back from tonight (0); 32 is outside the chart.
const FAILED_NIGHTS: [i64; 4] = [3, 11, 20, 32];
/// Nights whose run skipped damaged items (exit 7).
const SKIPPED_NIGHTS: [i64; 2] = [7, 25];
/// A night that failed, then was rerun by hand and succeeded.
const RERUN_NIGHT: i64 = 16;

struct Host {
    dir: tempfile::TempDir,
    config: Config,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
        for d in ["snapshots", "backups", "state"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let mut s = Settings::default();
        s.overlay([
            ("SNAPSHOTS_DIR".into(), p("snapshots")),
            ("BACKUPS_DIR".into(), p("backups")),
            ("ARKE_STATE_DIR".into(), p("state")),
            ("UPLOAD".into(), "1".into()),
            ("S3_BUCKET".into(), "arke-dr".into()),
            ("S3_PREFIX".into(), "backups/i-0abc/".into()),
        ]);
        let config = Config::from_settings(&s).unwrap();
        Host { dir, config }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    fn snapshot(&self, seq: u64, at: DateTime<Utc>) {
        let meta = SnapshotMeta {
            cid: SNAPSHOT_CID.parse().unwrap(),
            seq,
            ts: Some(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            count: Some(48_211),
            extra: Default::default(),
        };
        std::fs::write(
            self.path("snapshots/latest.json"),
            meta.to_json_bytes().unwrap(),
        )
        .unwrap();
    }

    /// An archive as export-car leaves it (a sparse file of the recorded size), its `.json`
    /// and verify-car's stamp.
    fn archive(&self, a: &ArchiveRecord, at: DateTime<Utc>) {
        let car = self.path("backups").join(&a.file);
        std::fs::File::create(&car)
            .unwrap()
            .set_len(a.size_bytes)
            .unwrap();
        let mut meta = BackupMeta {
            snapshot_cid: SNAPSHOT_CID.parse().unwrap(),
            seq: a.seq,
            timestamp: at.format("%Y%m%d-%H%M%S").to_string(),
            filename: a.file.clone(),
            path: car.to_string_lossy().into_owned(),
            size_bytes: a.size_bytes,
            cid_counts: None,
            extra: Default::default(),
        };
        meta.extra.insert("kind".into(), a.kind.clone().into());
        if let Some(p) = &a.parent {
            meta.extra.insert("parent".into(), p.clone().into());
        }
        meta.extra.insert(
            "created".into(),
            at.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
        );
        std::fs::write(car.with_extension("json"), meta.to_json_bytes().unwrap()).unwrap();
        let stamp = serde_json::json!({
            "schema": "arke/verified@v1", "file": a.file, "sha256": a.sha256,
            "size": a.size_bytes, "root": SNAPSHOT_CID, "verified_at": at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "tool": "verify-car", "chain": [a.file],
        });
        std::fs::write(car.with_extension("verified"), stamp.to_string()).unwrap();
    }
}

fn record(job: &str, started: DateTime<Utc>, secs: f64, status: RunStatus) -> RunRecord {
    RunRecord {
        job: job.into(),
        started: started.to_rfc3339_opts(SecondsFormat::Secs, true),
        finished: (started + Span::seconds(secs as i64)).to_rfc3339_opts(SecondsFormat::Secs, true),
        duration_secs: secs,
        exit: match status {
            RunStatus::Ok => 0,
            RunStatus::OkWithSkipped => 7,
            RunStatus::Failed => 6,
        },
        status,
        log_file: format!("/var/log/arke-dr/{job}.log"),
        ..RunRecord::default()
    }
}

/// The night `back` nights before tonight: Sundays' full archive, incrementals otherwise.
fn night(back: i64, start: DateTime<Utc>) -> RunRecord {
    let status = if FAILED_NIGHTS.contains(&back) {
        RunStatus::Failed
    } else if SKIPPED_NIGHTS.contains(&back) {
        RunStatus::OkWithSkipped
    } else {
        RunStatus::Ok
    };
    let seq = 500 - back as u64;
    let full = back % 7 == 0;
    let size = if full {
        2_300 * MIB + back as u64 * 7 * MIB
    } else {
        40 * MIB + (back as u64 * 37 % 11) * 15 * MIB
    };
    let secs = if full {
        2_400.0
    } else {
        180.0 + (back % 5) as f64 * 60.0
    };
    let file = format!("arke-{seq}-{}.car", start.format("%Y%m%d-%H%M%S"));
    let mut r = record("daily-backup", start, secs, status);
    // Night 3 failed before the export (no archive); night 11 after it (the upload).
    if back == 3 {
        r.duration_secs = 95.0;
        r.error = Some(
            "build-snapshot: cannot write /var/lib/arke-dr/snapshots/<tmp>: No space left on \
             device"
                .into(),
        );
        return r;
    }
    r.archive = Some(ArchiveRecord {
        path: format!("/var/lib/arke-dr/backups/{file}"),
        kind: if full { "full" } else { "incremental" }.into(),
        parent: (!full).then(|| format!("arke-{}-previous.car", seq - 1)),
        size_bytes: size,
        blocks: size / 4096,
        sha256: format!("{seq:064x}"),
        snapshot_cid: SNAPSHOT_CID.into(),
        seq,
        verified: true,
        file: file.clone(),
    });
    if status == RunStatus::Failed {
        r.error = Some("upload: PutObject arke-dr: AccessDenied & retries exhausted".into());
        return r;
    }
    r.upload = Some(UploadRecord {
        bucket: "arke-dr".into(),
        prefix: "backups/i-0abc/".into(),
        url: format!("s3://arke-dr/backups/i-0abc/{file}"),
        uploaded_at: (start + Span::seconds(secs as i64))
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        size_bytes: size,
        verified_by: "sha256".into(),
        sse: Some("AES256".into()),
        retain_until: None,
        files: vec![file.clone(), file.replace(".car", ".json")],
    });
    r
}

/// 35 nights of daily-backup (tonight's started four hours ago), a rerun, weekly and hourly
/// runs; every record saved as the jobs save them. Returns the newest archive's record.
fn thirty_five_nights(host: &Host, now: DateTime<Utc>) -> ArchiveRecord {
    let tonight = now - Span::hours(4);
    for back in (0..35).rev() {
        let start = tonight - Span::days(back);
        if back == RERUN_NIGHT {
            let mut first = night(back, start - Span::hours(1));
            first.status = RunStatus::Failed;
            first.exit = 6;
            first.error = Some("export-car: Kubo timed out".into());
            first.save(&host.state()).unwrap();
        }
        night(back, start).save(&host.state()).unwrap();
        if back % 7 == 2 {
            let weekly = record(
                "weekly-verify",
                start + Span::hours(2),
                2_900.0,
                RunStatus::Ok,
            );
            weekly.save(&host.state()).unwrap();
        }
    }
    for h in (1..6).rev() {
        let hourly = record("hourly-snapshot", now - Span::hours(h), 41.0, RunStatus::Ok);
        hourly.save(&host.state()).unwrap();
    }
    let newest = night(0, tonight).archive.unwrap();
    host.archive(&newest, tonight);
    host.snapshot(newest.seq, now - Span::minutes(20));
    newest
}

/// The page of that host, as the server will build it: local status, every job's history.
fn render(host: &Host, now: DateTime<Utc>) -> (status::Status, String) {
    let thresholds = Thresholds {
        // The real disk's use must not decide this test (the disk has tests of its own).
        disk_warn_percent: 100.0,
        disk_crit_percent: 100.0,
        ..Thresholds::default()
    };
    let status = status::collect_local(&host.config, &thresholds, now);
    let history = page::load_history(&host.state());
    (status.clone(), page::render(&status, &history, now))
}

fn count(dom: &str, needle: &str) -> usize {
    dom.matches(needle).count()
}

/// What the browser built from the page: the verdict, the chart's nights, the tables.
fn check_dom(dom: &str, newest: &ArchiveRecord) {
    assert!(dom.contains("<div class=\"label\">OK</div>"), "{dom}");
    assert!(dom.contains("every check passed"));
    assert_eq!(count(dom, "<svg class=\"nights\""), 1);
    assert_eq!(count(dom, "<g class=\"night "), 30, "30 nights drawn");
    let failed_in_chart = FAILED_NIGHTS.iter().filter(|&&b| b < 30).count();
    assert_eq!(count(dom, "<g class=\"night failed\""), failed_in_chart);
    assert_eq!(count(dom, "<g class=\"night ok_with_skipped\""), 2);
    assert_eq!(count(dom, "<g class=\"night missing\""), 0);
    assert_eq!(
        count(dom, "<g class=\"night ok\""),
        30 - failed_in_chart - 2
    );
    assert!(
        dom.contains("data-runs=\"2\""),
        "the rerun night counts both runs"
    );
    assert!(dom.contains(&newest.file), "the newest archive is named");
    for job in ["daily-backup", "weekly-verify", "hourly-snapshot"] {
        assert!(
            dom.contains(&format!("<tr class=\"job ok\" data-job=\"{job}\">")),
            "{job}"
        );
    }
    // The error line's `<tmp>` stays text: the browser made no element of it.
    assert!(!dom.contains("<tmp>"));
    assert!(dom.contains("snapshots/&lt;tmp&gt;: No space left"));
}

fn check_png(path: &Path, browser: &Browser) {
    let png = std::fs::read(path).unwrap();
    assert_eq!(
        png_size(&png),
        Some(browser.window_size()),
        "{}",
        path.display()
    );
}

#[test]
fn the_status_page_in_a_real_browser() {
    let browser = Browser::find().unwrap().window(1280, 2600);
    let host = Host::new();
    let now = Utc::now();
    let newest = thirty_five_nights(&host, now);
    assert_eq!(RunRecord::history(&host.state(), "daily-backup").len(), 36);
    let (status, html) = render(&host, now);
    assert_eq!(status.severity, Severity::Ok, "{:#?}", status.checks);
    // Kept beside the test binaries for a person to look at.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("index.html");
    std::fs::write(&file, &html).unwrap();
    let url = file_url(&file).unwrap();
    check_dom(&browser.dump_dom(&url).unwrap(), &newest);
    let shot = out.join("status-page.png");
    browser.screenshot(&url, &shot).unwrap();
    check_png(&shot, &browser);
}

/// The same page from a real HTTP server (the way dr-server serves it): the harness takes any
/// URL, and the page needs nothing but its own document.
#[test]
fn the_status_page_over_http() {
    let browser = Browser::find().unwrap().window(1024, 768);
    let host = Host::new();
    let now = Utc::now();
    let newest = thirty_five_nights(&host, now);
    let (_, html) = render(&host, now);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/admin/dr", listener.local_addr().unwrap());
    std::thread::spawn(move || serve(listener, html));
    check_dom(&browser.dump_dom(&url).unwrap(), &newest);
    let shot = host.path("page.png");
    browser.screenshot(&url, &shot).unwrap();
    check_png(&shot, &browser);
}

/// Answers `GET /admin/dr` with the page and anything else (the favicon) with 404.
fn serve(listener: TcpListener, html: String) {
    for stream in listener.incoming().flatten() {
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        // The rest of the request's head.
        let mut header = String::new();
        while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
            header.clear();
        }
        let (status, body) = if line.starts_with("GET /admin/dr ") {
            ("200 OK", html.as_str())
        } else {
            ("404 Not Found", "not found")
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = (&stream).write_all(reply.as_bytes());
    }
}
