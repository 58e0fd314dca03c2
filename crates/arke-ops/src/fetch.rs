//! fetch-archive: the runbook's download side. The newest archive in S3 (or one named), with
//! every archive of its chain (an incremental is useless without its parents), into a local
//! folder, each file checked against the SHA-256 it was uploaded with.
//!
//! Archived objects (Glacier, Deep Archive, Intelligent-Tiering's archive tiers) cannot be read
//! until restored: every such member of the chain gets its restore request in the same run
//! (Standard tier; one wait covers the whole chain), and the run fails with exit 6 and a
//! message saying what was requested and when to come back.

use arke_core::human_bytes;
use std::path::{Path, PathBuf};

use arke_core::Exit;
use arke_core::backup::ArchiveName;
use arke_s3::{RemoteObject, S3Error};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{S3Store, logged_progress, remote};
use arke_core::Error;

/// Chains are never this deep (a full archive every FULL_EVERY_DAYS days); a longer walk means
/// a loop in the descriptors.
const MAX_CHAIN: usize = 10_000;

/// What to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// `None`: the newest archive whose `.json` is in S3 too (a complete upload).
    pub name: Option<String>,
    pub dest: PathBuf,
}

/// What was fetched (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct FetchReport {
    pub source: String,
    /// The archive asked for (the chain's newest), local path.
    pub archive: String,
    /// Every file of the chain, base first, each `.car` then its `.json`.
    pub files: Vec<FetchedFile>,
}

/// One file of the chain.
#[derive(Debug, Clone, Serialize)]
pub struct FetchedFile {
    pub name: String,
    pub path: String,
    pub size_bytes: u64,
    /// `downloaded`, or `present` (already in the folder with the same size; verify-car
    /// re-hashes it).
    pub action: String,
}

/// The archives under the prefix (`.car` files), oldest first by the time in their names.
pub async fn list(store: &S3Store) -> Result<Vec<RemoteObject>, Error> {
    let mut cars: Vec<RemoteObject> = store
        .s3()
        .list()
        .await
        .map_err(remote)?
        .into_iter()
        .filter(|o| is_archive_name(&o.name))
        .collect();
    cars.sort_by_key(|o| name_stamp(&o.name));
    Ok(cars)
}

/// Downloads the archive and its chain into `opts.dest`.
pub async fn fetch(store: &S3Store, opts: &FetchOptions) -> Result<FetchReport, Error> {
    crate::ops::ensure_dir(&opts.dest)?;
    let newest = match &opts.name {
        Some(n) if is_archive_name(n) => n.clone(),
        Some(n) => {
            let msg = format!("{n:?} is not an archive's file name (arke-<seq>-<date>-<time>.car)");
            return Err(Error::new(Exit::Usage, msg));
        }
        None => newest_complete(store).await?,
    };
    let mut files = Vec::new();
    let mut archived = Vec::new();
    let mut next = Some(newest.clone());
    while let Some(car) = next.take() {
        if files.len() / 2 >= MAX_CHAIN {
            let msg = format!("the chain of {newest} is longer than {MAX_CHAIN}: a loop?");
            return Err(Error::new(Exit::Failed, msg));
        }
        let json = format!("{}.json", car.strip_suffix(".car").unwrap_or(&car));
        let meta = fetch_file(store, &json, opts, &mut archived).await?;
        let data = fetch_file(store, &car, opts, &mut archived).await?;
        next = match &meta {
            Some(m) => parent_of(Path::new(&m.path))?,
            None => None,
        };
        // Base first in the report: parents are pushed in front.
        files.splice(0..0, data.into_iter().chain(meta));
    }
    if !archived.is_empty() {
        return Err(Error::new(Exit::Remote, archived.join("; ")));
    }
    Ok(FetchReport {
        source: store.s3().url(""),
        archive: opts.dest.join(&newest).display().to_string(),
        files,
    })
}

/// The chain of the newest complete archive, as S3 holds it, before any archive is downloaded
/// (restore-drill checks the free disk against its size first).
#[derive(Debug, Clone)]
pub struct ChainPlan {
    /// The chain's newest archive (a file name).
    pub newest: String,
    /// Every member's `.car`, newest first, with its size in S3.
    pub members: Vec<(String, u64)>,
    /// The members' `.car` and `.json` sizes together.
    pub bytes: u64,
}

/// Walks the newest complete archive's chain through the descriptors (`.json`, a few KiB each,
/// downloaded into `dest`, where [`fetch`] then finds them present): names and sizes from the
/// listing. A member missing in S3 is [`fetch`]'s error (exit 1).
pub async fn plan_chain(store: &S3Store, dest: &Path) -> Result<ChainPlan, Error> {
    crate::ops::ensure_dir(dest)?;
    let all = store.s3().list().await.map_err(remote)?;
    let size = |n: &str| all.iter().find(|o| o.name == n).map(|o| o.size);
    let newest = newest_complete(store).await?;
    let mut plan = ChainPlan {
        newest: newest.clone(),
        members: Vec::new(),
        bytes: 0,
    };
    let mut next = Some(newest.clone());
    while let Some(car) = next.take() {
        if plan.members.len() >= MAX_CHAIN {
            let msg = format!("the chain of {newest} is longer than {MAX_CHAIN}: a loop?");
            return Err(Error::new(Exit::Failed, msg));
        }
        let json = format!("{}.json", car.strip_suffix(".car").unwrap_or(&car));
        let (Some(car_size), Some(json_size)) = (size(&car), size(&json)) else {
            let missing = if size(&car).is_none() { &car } else { &json };
            let msg = format!(
                "{} is not in S3 (the chain is incomplete there)",
                store.s3().url(missing)
            );
            return Err(Error::new(Exit::Failed, msg));
        };
        let local = dest.join(&json);
        if !std::fs::metadata(&local).is_ok_and(|m| m.len() == json_size) {
            let progress = |_: u64, _: u64| {};
            store
                .s3()
                .download(&json, &local, &progress)
                .await
                .map_err(remote)?;
        }
        next = parent_of(&local)?;
        plan.members.push((car, car_size));
        plan.bytes += car_size + json_size;
    }
    Ok(plan)
}

/// The newest `.car` whose `.json` is there too: the `.json` goes up last, so its presence
/// says the archive's upload completed.
pub(crate) async fn newest_complete(store: &S3Store) -> Result<String, Error> {
    let all = store.s3().list().await.map_err(remote)?;
    // A set: with hourly archives a prefix holds thousands of objects (48 a day).
    let names: std::collections::HashSet<&str> = all.iter().map(|o| o.name.as_str()).collect();
    let has = |n: &str| names.contains(n);
    let mut cars: Vec<&RemoteObject> = all
        .iter()
        .filter(|o| is_archive_name(&o.name))
        .filter(|o| has(&format!("{}.json", o.name.trim_end_matches(".car"))))
        .collect();
    cars.sort_by_key(|o| name_stamp(&o.name));
    cars.last().map(|o| o.name.clone()).ok_or_else(|| {
        let msg = format!(
            "no complete archive (a .car with its .json) in {}",
            store.s3().url("")
        );
        Error::new(Exit::Failed, msg)
    })
}

/// One file: skipped when present with the remote size, else downloaded (checked). An object
/// in Glacier gets a restore request and is noted in `archived`; `Ok(None)` then.
async fn fetch_file(
    store: &S3Store,
    name: &str,
    opts: &FetchOptions,
    archived: &mut Vec<String>,
) -> Result<Option<FetchedFile>, Error> {
    let dest = opts.dest.join(name);
    let head = store.s3().head(name).await.map_err(remote)?;
    let Some(head) = head else {
        let msg = format!(
            "{} is not in S3 (the chain is incomplete there)",
            store.s3().url(name)
        );
        return Err(Error::new(Exit::Failed, msg));
    };
    let file = |action: &str| FetchedFile {
        name: name.to_string(),
        path: dest.display().to_string(),
        size_bytes: head.size,
        action: action.to_string(),
    };
    if std::fs::metadata(&dest).is_ok_and(|m| m.len() == head.size) {
        tracing::info!(
            "{name}: already in {} ({})",
            opts.dest.display(),
            human_bytes(head.size)
        );
        return Ok(Some(file("present")));
    }
    if dest.exists() {
        let msg = format!(
            "{} exists and differs from {}: move it away first",
            dest.display(),
            store.s3().url(name)
        );
        return Err(Error::new(Exit::Io, msg));
    }
    let progress = logged_progress(format!("download {name}"));
    match store.s3().download(name, &dest, &progress).await {
        Ok(_) => {
            tracing::info!(
                "{name}: downloaded ({}), SHA-256 checked",
                human_bytes(head.size)
            );
            Ok(Some(file("downloaded")))
        }
        // The client asked for the restore (Standard tier, 7 days) unless one is running; the
        // other members are still asked for theirs, so that one wait covers the chain.
        Err(e @ S3Error::Archived { .. }) => {
            archived.push(format!("{e}"));
            Ok(None)
        }
        Err(e) => Err(remote(e)),
    }
}

/// An archive's file name and nothing else: the name becomes a path in `--dest`, so a key
/// from the bucket listing (`arke-1/../../x.car`) must not lead out of it.
pub(crate) fn is_archive_name(n: &str) -> bool {
    n.starts_with("arke-")
        && n.ends_with(".car")
        && !n.contains(['/', '\\', '\0'])
        && Path::new(n).file_name().is_some_and(|f| f == n)
}

/// The `parent` file name in an archive's `.json` when it is an incremental; `None` for a full
/// archive. A `.json` that cannot say (not JSON, an incremental without a parent, a parent that
/// is not a plain archive name) fails the fetch: stopping there would hand the operator a
/// chain with its older half missing, found only at the restore.
pub(crate) fn parent_of(json: &Path) -> Result<Option<String>, Error> {
    let bad = |why: String| {
        let msg = format!("{}: {why}", json.display());
        Error::new(Exit::Failed, msg)
    };
    let bytes = std::fs::read(json)
        .map_err(|e| Error::new(Exit::Io, format!("cannot read {}: {e}", json.display())))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("not an archive's metadata: {e}")))?;
    let parent = v.get("parent").filter(|p| !p.is_null());
    let incremental = v.get("kind").and_then(|k| k.as_str()) == Some("incremental");
    match parent {
        None if incremental => Err(bad("an incremental archive without a parent".into())),
        None => Ok(None),
        // A name in the same folder, nothing else: the descriptor comes from S3.
        Some(p) => match p.as_str() {
            Some(name) if is_archive_name(name) => Ok(Some(name.to_string())),
            _ => Err(bad(format!("its parent {p} is not an archive's file name"))),
        },
    }
}

/// A sortable key: the time in the name (the core's parser), then the same-second suffix as a
/// number (`-2` is newer than no suffix, though `-` sorts before `.` as text), then the name.
fn name_stamp(name: &str) -> (Option<DateTime<Utc>>, u32, String) {
    let parsed = ArchiveName::parse(name);
    let stamp = parsed.and_then(|a| a.stamp);
    (stamp, parsed.map_or(0, |a| a.n), name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_their_time_not_their_sequence() {
        let mut v = [
            "arke-10-20261201-020000.car",
            "arke-9-20261202-020000.car",
            "arke-9-20261201-020000-2.car",
        ];
        v.sort_by_key(|n| name_stamp(n));
        assert_eq!(v[2], "arke-9-20261202-020000.car");
        assert_eq!(v[0], "arke-10-20261201-020000.car");
        let mut same_second = ["arke-9-20261201-020000-2.car", "arke-9-20261201-020000.car"];
        same_second.sort_by_key(|n| name_stamp(n));
        assert_eq!(same_second[1], "arke-9-20261201-020000-2.car");
    }

    #[test]
    fn a_parent_must_be_a_plain_car_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        let parent = |text: &str| {
            std::fs::write(&p, text).unwrap();
            parent_of(&p).map_err(|e| e.line())
        };
        let name = "arke-1-20261201-020000.car";
        let json = format!("{{\"kind\": \"incremental\", \"parent\": {name:?}}}");
        assert_eq!(parent(&json), Ok(Some(name.to_string())));
        assert_eq!(parent("{\"kind\": \"full\"}"), Ok(None));
        assert_eq!(parent("{\"kind\": \"full\", \"parent\": null}"), Ok(None));
        for bad in [
            "../../etc/passwd",
            "/abs/arke-1.car",
            "arke-1.json",
            "arke-1/../../x.car",
        ] {
            let err = parent(&format!("{{\"parent\": {bad:?}}}")).unwrap_err();
            assert!(
                err.contains("is not an archive's file name"),
                "{bad}: {err}"
            );
        }
        for (text, needle) in [
            ("{\"parent\": 7}", "is not an archive's file name"),
            ("{\"kind\": \"incremental\"}", "without a parent"),
            ("not json", "not an archive's metadata"),
        ] {
            let err = parent(text).unwrap_err();
            assert!(
                err.contains(needle) && err.contains("a.json"),
                "{text}: {err}"
            );
        }
    }
}
