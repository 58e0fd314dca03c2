//! arke-s3 against a real S3-compatible server (SeaweedFS on loopback, signatures checked):
//! large multipart and single uploads with their downloads, a server killed mid-upload,
//! bytes damaged in flight both ways, wrong credentials, a missing bucket, archived objects.

// The tests print timings and the error messages an operator would see (`--nocapture`).
#![allow(clippy::print_stderr)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arke_s3::{Archive, MIB, RestoreState, S3, S3Error, VerifiedBy};
use arke_testkit::s3::{S3Server, files_in, random_file, sha256_file, unique_bucket};
use arke_testkit::s3proxy::Proxy;

fn no_progress(_: u64, _: u64) {}

/// Over 100 MB in 16 parts of 8 MiB: metadata, checksum verification, a byte-identical
/// download, progress, listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_multipart_upload_and_download() -> anyhow::Result<()> {
    let server = S3Server::shared();
    let (s3, _) = server.new_bucket("large").await?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("arke-full.car");
    let size = 130 * 1000 * 1000; // 15.5 parts of 8 MiB: 16
    random_file(&src, size, 1)?;
    let want = sha256_file(&src)?;

    let seen = Mutex::new(Vec::new());
    let progress = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    let up = s3.upload_file(&src, "arke-full.car", &progress).await?;
    assert_eq!(
        (up.size, up.parts, up.sha256.as_str()),
        (size, 16, want.as_str())
    );
    assert_eq!(
        up.checksum_verified_by,
        VerifiedBy::Sha256,
        "SeaweedFS keeps SHA-256 checksums"
    );
    assert!(up.etag.ends_with("-16"), "multipart ETag: {}", up.etag);
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.first(), Some(&(0, size)));
    assert_eq!(seen.last(), Some(&(size, size)));
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress never goes back"
    );

    let head = s3.head("arke-full.car").await?.expect("uploaded object");
    assert_eq!(
        (head.size, head.sha256.as_deref()),
        (size, Some(want.as_str()))
    );
    assert_eq!(head.storage_class, "STANDARD_IA");
    assert_eq!(head.restore, Some(RestoreState::None));
    assert_eq!(
        s3.list()
            .await?
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["arke-full.car"]
    );

    let out = dir.path().join("restored").join("copy.car");
    std::fs::create_dir_all(out.parent().unwrap())?;
    let down = s3.download("arke-full.car", &out, &no_progress).await?;
    assert!(down.verified_sha256);
    assert_eq!((down.size, down.sha256.as_str()), (size, want.as_str()));
    assert_eq!(sha256_file(&out)?, want);
    assert_eq!(
        files_in(out.parent().unwrap()),
        ["copy.car"],
        "no temporary file left"
    );
    eprintln!(
        "130 MB: upload {:?}, download {:?}",
        up.duration, down.duration
    );
    Ok(())
}

/// Below the part size: one PutObject, verified by its SHA-256; an empty file too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_file_single_put_and_download() -> anyhow::Result<()> {
    let (s3, _) = S3Server::shared().new_bucket("small").await?;
    let dir = tempfile::tempdir()?;
    for (name, size) in [("arke.json", 4321u64), ("empty.json", 0)] {
        let src = dir.path().join(name);
        random_file(&src, size, 2)?;
        let up = s3.upload_file(&src, name, &no_progress).await?;
        assert_eq!(
            (up.parts, up.size, up.checksum_verified_by),
            (1, size, VerifiedBy::Sha256)
        );
        assert!(
            !up.etag.contains('-'),
            "single PUT ETag is a plain MD5: {}",
            up.etag
        );
        let out = dir.path().join(format!("{name}.back"));
        let down = s3.download(name, &out, &no_progress).await?;
        assert!(down.verified_sha256);
        assert_eq!(std::fs::read(&out)?, std::fs::read(&src)?);
    }
    assert!(s3.head("missing.json").await?.is_none());
    let err = s3
        .download("missing.json", &dir.path().join("m"), &no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::NotFound { .. }), "{err}");
    assert!(!dir.path().join("m").exists());
    Ok(())
}

/// kill -9 of the server after the first part: the upload fails within bounded time, the
/// local file is untouched, and once the server is back the next attempt succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_upload_then_retry_succeeds() -> anyhow::Result<()> {
    let mut server = S3Server::start()?;
    let (s3, _) = server.new_bucket("killed").await?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("night.car");
    random_file(&src, 60 * MIB, 3)?;
    let want = sha256_file(&src)?;
    let mtime = std::fs::metadata(&src)?.modified()?;

    let killed = AtomicBool::new(false);
    let kill_at_first_part = |done: u64, _total: u64| {
        if done >= 8 * MIB && !killed.swap(true, Ordering::SeqCst) {
            server.kill9();
        }
    };
    let t0 = Instant::now();
    let err = s3
        .upload_file(&src, "night.car", &kill_at_first_part)
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(
        killed.load(Ordering::SeqCst),
        "the server was killed mid-upload"
    );
    assert!(took < Duration::from_secs(60), "failed after {took:?}");
    assert!(
        matches!(err, S3Error::Transport { .. }) && err.is_retryable(),
        "{err}"
    );
    assert!(err.to_string().contains("night.car"), "{err}");
    assert_eq!(
        (sha256_file(&src)?, std::fs::metadata(&src)?.modified()?),
        (want.clone(), mtime)
    );
    eprintln!("killed server: failed after {took:?}: {err}");

    let t1 = Instant::now();
    server.restart()?;
    let restarted = t1.elapsed();
    let up = s3.upload_file(&src, "night.car", &no_progress).await?;
    eprintln!(
        "killed server: restarted (same data) in {restarted:?}; upload again in {:?}",
        up.duration
    );
    assert_eq!((up.sha256.as_str(), up.parts), (want.as_str(), 8));
    let out = dir.path().join("back.car");
    s3.download("night.car", &out, &no_progress).await?;
    assert_eq!(sha256_file(&out)?, want);
    Ok(())
}

/// One bit of a part flipped on the way to the server: refused (BadDigest), the upload fails
/// as a checksum mismatch, no object appears; the same with a single PUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_damaged_in_flight_is_refused() -> anyhow::Result<()> {
    let server = S3Server::shared();
    let (direct, bucket) = server.new_bucket("badput").await?;
    let proxy = Proxy::start(&server.endpoint).await?;
    let mut cfg = server.config(&bucket);
    cfg.endpoint = Some(proxy.url.clone());
    let s3 = S3::connect(cfg).await?;
    let dir = tempfile::tempdir()?;
    for (name, size) in [("multi.car", 20 * MIB), ("single.json", 64 * 1024)] {
        let src = dir.path().join(name);
        random_file(&src, size, 4)?;
        let want = sha256_file(&src)?;
        proxy.faults.flip_put_body.store(true, Ordering::SeqCst);
        let before = proxy.faults.flipped.load(Ordering::SeqCst);
        let err = s3.upload_file(&src, name, &no_progress).await.unwrap_err();
        assert_eq!(
            proxy.faults.flipped.load(Ordering::SeqCst),
            before + 1,
            "one bit was flipped"
        );
        assert!(matches!(err, S3Error::ChecksumMismatch { .. }), "{err}");
        eprintln!("{name}: {err}");
        assert!(
            direct.head(name).await?.is_none(),
            "nothing stored for {name}"
        );
        assert_eq!(sha256_file(&src)?, want);
    }
    // The flips above were caught by the signed payload hash (x-amz-content-sha256); the
    // x-amz-checksum-sha256 and Content-MD5 headers sent with every part are checked by the
    // server on their own too (what protects a request whose payload is not signed).
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    use aws_sdk_s3::primitives::ByteStream;
    let other = "bm90IHRoZSBzYW1lIGJ5dGVzIGF0IGFsbCBzb3JyeSA=";
    let put = |sha: Option<&str>, md5: Option<&str>| {
        direct
            .sdk()
            .put_object()
            .bucket(&bucket)
            .key("probe")
            .set_checksum_sha256(sha.map(str::to_string))
            .set_content_md5(md5.map(str::to_string))
            .body(ByteStream::from_static(b"some bytes"))
            .send()
    };
    let err = put(Some(other), None).await.unwrap_err();
    assert_eq!(err.code(), Some("BadDigest"), "{err:?}");
    let err = put(None, Some("AAAAAAAAAAAAAAAAAAAAAA=="))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("BadDigest"), "{err:?}");
    // The multipart upload was aborted: no parts left behind.
    let pending = direct
        .sdk()
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await?;
    assert!(pending.uploads().is_empty(), "{:?}", pending.uploads());
    Ok(())
}

/// One bit of the object flipped on the way back: the download fails as a checksum mismatch
/// against `x-amz-meta-sha256`, the destination is not created, no temporary file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_damaged_in_flight_is_refused() -> anyhow::Result<()> {
    let server = S3Server::shared();
    let (direct, bucket) = server.new_bucket("badget").await?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("a.car");
    random_file(&src, 12 * MIB, 5)?;
    direct.upload_file(&src, "a.car", &no_progress).await?;

    let proxy = Proxy::start(&server.endpoint).await?;
    let mut cfg = server.config(&bucket);
    cfg.endpoint = Some(proxy.url.clone());
    let s3 = S3::connect(cfg).await?;
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir)?;
    proxy.faults.flip_get_body.store(true, Ordering::SeqCst);
    let err = s3
        .download("a.car", &out_dir.join("a.car"), &no_progress)
        .await
        .unwrap_err();
    assert_eq!(proxy.faults.flipped.load(Ordering::SeqCst), 1);
    assert!(matches!(err, S3Error::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("x-amz-meta-sha256"), "{err}");
    assert!(files_in(&out_dir).is_empty(), "{:?}", files_in(&out_dir));
    // Undamaged, the same download succeeds.
    s3.download("a.car", &out_dir.join("a.car"), &no_progress)
        .await?;
    assert_eq!(sha256_file(&out_dir.join("a.car"))?, sha256_file(&src)?);
    Ok(())
}

/// Wrong secret, unknown key: a Credentials error naming the server's code, after one request
/// (never retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_at_once() -> anyhow::Result<()> {
    let server = S3Server::shared();
    let (_, bucket) = server.new_bucket("creds").await?;
    let proxy = Proxy::start(&server.endpoint).await?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("x.car");
    random_file(&src, 1000, 6)?;
    for (key, secret, code) in [
        (
            server.access_key.as_str(),
            "wrong-secret",
            "SignatureDoesNotMatch",
        ),
        (
            "AKIANOSUCHKEY",
            server.secret_key.as_str(),
            "InvalidAccessKeyId",
        ),
    ] {
        let mut cfg = server.config(&bucket);
        cfg.endpoint = Some(proxy.url.clone());
        if let Some(c) = cfg.credentials.as_mut() {
            c.access_key_id = key.to_string();
            c.secret_access_key = secret.to_string();
        }
        let s3 = S3::connect(cfg).await?;
        let n0 = proxy.faults.requests.load(Ordering::SeqCst);
        let t0 = Instant::now();
        let err = s3.check_bucket().await.unwrap_err();
        assert!(
            matches!(&err, S3Error::Credentials { code: c, .. } if c == code),
            "{err}"
        );
        assert!(
            err.to_string().contains(&bucket) && !err.is_retryable(),
            "{err}"
        );
        assert_eq!(
            proxy.faults.requests.load(Ordering::SeqCst) - n0,
            1,
            "not retried"
        );
        let err = s3
            .upload_file(&src, "x.car", &no_progress)
            .await
            .unwrap_err();
        assert!(matches!(err, S3Error::Credentials { .. }), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        eprintln!("{code}: {err}");
    }
    Ok(())
}

/// A bucket that does not exist: NoSuchBucket naming it, for the check and for an upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_named() -> anyhow::Result<()> {
    let server = S3Server::shared();
    let bucket = unique_bucket("missing");
    let s3 = S3::connect(server.config(&bucket)).await?;
    let err = s3.check_bucket().await.unwrap_err();
    assert!(
        matches!(&err, S3Error::NoSuchBucket { bucket: b } if *b == bucket),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("s3://{bucket}")), "{err}");
    let dir = tempfile::tempdir()?;
    for (name, size) in [("big.car", 9 * MIB), ("small.json", 10)] {
        let src = dir.path().join(name);
        random_file(&src, size, 7)?;
        let err = s3.upload_file(&src, name, &no_progress).await.unwrap_err();
        assert!(matches!(err, S3Error::NoSuchBucket { .. }), "{name}: {err}");
    }
    Ok(())
}

/// A 5000-byte object `name` uploaded in storage class `class` to a new bucket, through a proxy
/// that can add the HEAD headers of archived objects, which the test server cannot produce.
struct Stored {
    bucket: String,
    proxy: Proxy,
    s3: S3,
    dir: tempfile::TempDir,
    src: std::path::PathBuf,
}

async fn stored_through_proxy(
    tag: &str,
    class: &str,
    name: &str,
    seed: u64,
) -> anyhow::Result<Stored> {
    let server = S3Server::shared();
    let (_, bucket) = server.new_bucket(tag).await?;
    let proxy = Proxy::start(&server.endpoint).await?;
    let mut cfg = server.config(&bucket);
    cfg.endpoint = Some(proxy.url.clone());
    cfg.storage_class = class.into();
    let s3 = S3::connect(cfg).await?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join(name);
    random_file(&src, 5000, seed)?;
    s3.upload_file(&src, name, &no_progress).await?;
    Ok(Stored {
        bucket,
        proxy,
        s3,
        dir,
        src,
    })
}

/// An object stored in GLACIER: the download does not read it; it asks for a restore.
/// SeaweedFS stores the class but has no RestoreObject (405), which the error names; with an
/// `x-amz-restore: ongoing-request="true"` added to its HEAD answers (the state S3 reports
/// while a restore runs), the download fails as Archived/InProgress without a new request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_object_is_not_read() -> anyhow::Result<()> {
    let Stored {
        bucket,
        proxy,
        s3,
        dir,
        src,
    } = stored_through_proxy("glacier", "GLACIER", "old.car", 8).await?;
    let dest = dir.path().join("old.back");

    let err = s3
        .download("old.car", &dest, &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, S3Error::Service { code, op: "RestoreObject", .. } if code == "MethodNotAllowed"),
        "{err}"
    );
    assert!(
        !proxy.methods().contains(&"GET".to_string()),
        "{:?}",
        proxy.methods()
    );
    let (_, body) = proxy.last_post().expect("the restore request");
    assert!(body.contains("<Days>7</Days>"), "{body}");

    *proxy.faults.head_headers.lock().unwrap() =
        vec!["x-amz-restore: ongoing-request=\"true\"".into()];
    let n0 = proxy.faults.requests.load(Ordering::SeqCst);
    let err = s3
        .download("old.car", &dest, &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            S3Error::Archived {
                restore: RestoreState::InProgress,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "s3://{bucket}/backups/i-0123456789abcdef0/old.car is in GLACIER: a restore is in progress (requested earlier); run this again when it completes"
        )
    );
    assert_eq!(
        proxy.faults.requests.load(Ordering::SeqCst) - n0,
        1,
        "only the HEAD"
    );

    *proxy.faults.head_headers.lock().unwrap() = vec![
        "x-amz-restore: ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2035 00:00:00 GMT\""
            .into(),
    ];
    s3.download("old.car", &dest, &no_progress).await?;
    assert_eq!(std::fs::read(&dest)?, std::fs::read(&src)?);
    assert!(!dest.with_extension("x").exists() && files_in(dir.path()).len() == 2);
    Ok(())
}

/// INTELLIGENT_TIERING: read directly until HEAD reports an archive tier
/// (`x-amz-archive-status`, which the test server cannot produce: added by the proxy). Then the
/// download does not read it: it sends a restore request without `Days` (S3 refuses `Days` for
/// these tiers; SeaweedFS answers 405, which the error names) or, while a restore runs, fails as
/// Archived/InProgress naming the tier. An undocumented archive status is an error, not "readable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intelligent_tiering_archive_tiers_are_restored_not_read() -> anyhow::Result<()> {
    let Stored {
        bucket,
        proxy,
        s3,
        dir,
        src,
    } = stored_through_proxy("tiering", "INTELLIGENT_TIERING", "it.car", 11).await?;
    let dest = dir.path().join("it.back");
    // In a frequent tier: read like any object.
    s3.download("it.car", &dest, &no_progress).await?;
    assert_eq!(std::fs::read(&dest)?, std::fs::read(&src)?);
    std::fs::remove_file(&dest)?;
    let set = |h: &[&str]| {
        *proxy.faults.head_headers.lock().unwrap() = h.iter().map(|s| s.to_string()).collect();
    };

    set(&["x-amz-archive-status: DEEP_ARCHIVE_ACCESS"]);
    let head = s3.head("it.car").await?.expect("uploaded");
    assert_eq!(head.storage_class, "INTELLIGENT_TIERING");
    assert_eq!(head.archive, Some(Archive::TieringDeepArchiveAccess));
    let n_get = proxy.count("GET");
    let err = s3
        .download("it.car", &dest, &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, S3Error::Service { code, op: "RestoreObject", .. } if code == "MethodNotAllowed"),
        "{err}"
    );
    assert_eq!(proxy.count("GET"), n_get, "an archived object was read");
    let (line, body) = proxy.last_post().expect("the restore request");
    assert!(
        line.starts_with("POST ") && line.contains("restore"),
        "{line}"
    );
    assert!(body.contains("<Tier>Standard</Tier>"), "{body}");
    assert!(
        !body.contains("<Days>"),
        "Days sent for an Intelligent-Tiering tier: {body}"
    );

    set(&[
        "x-amz-archive-status: ARCHIVE_ACCESS",
        "x-amz-restore: ongoing-request=\"true\"",
    ]);
    let err = s3
        .download("it.car", &dest, &no_progress)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "s3://{bucket}/backups/i-0123456789abcdef0/it.car is in INTELLIGENT_TIERING's Archive \
             Access tier: a restore is in progress (requested earlier); run this again when it completes"
        )
    );

    set(&["x-amz-archive-status: GLACIERISH"]);
    let err = s3
        .download("it.car", &dest, &no_progress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("GLACIERISH"), "{err}");
    assert_eq!(proxy.count("GET"), n_get, "an archived object was read");
    assert!(!dest.exists() && files_in(dir.path()).len() == 1);
    Ok(())
}

/// A server that accepts connections and never answers, and a download body that stops in
/// the middle: both fail within the configured bounds (timeouts x attempts), nothing is
/// written to the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_and_stalled_body_fail_in_bounded_time() -> anyhow::Result<()> {
    let server = S3Server::shared();
    let (direct, bucket) = server.new_bucket("stall").await?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("a.car");
    random_file(&src, 3 * MIB, 9)?;
    direct.upload_file(&src, "a.car", &no_progress).await?;

    let proxy = Proxy::start(&server.endpoint).await?;
    let mut cfg = server.config(&bucket);
    cfg.endpoint = Some(proxy.url.clone());
    cfg.timeout = Duration::from_secs(2);
    cfg.retries = 1;
    let s3 = S3::connect(cfg).await?;

    // The body stops after 1000 bytes, the connection stays open: the idle timeout (2 s).
    proxy.faults.stall_get_body.store(true, Ordering::SeqCst);
    let dest = dir.path().join("out").join("a.car");
    std::fs::create_dir(dest.parent().unwrap())?;
    let t0 = Instant::now();
    let err = s3.download("a.car", &dest, &no_progress).await.unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, S3Error::Transport { .. }), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(files_in(dest.parent().unwrap()).is_empty());
    eprintln!("stalled body: failed after {took:?}: {err}");

    // Nothing answers at all: 2 attempts of (2 s to answer), plus the backoff.
    proxy.faults.stall_all.store(true, Ordering::SeqCst);
    let s3 = S3::connect(s3.config().clone()).await?; // new connections only
    let t0 = Instant::now();
    let err = s3.check_bucket().await.unwrap_err();
    let took = t0.elapsed();
    assert!(
        matches!(err, S3Error::Transport { .. }) && err.is_retryable(),
        "{err}"
    );
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(15),
        "{took:?}"
    );
    eprintln!("silent server: failed after {took:?}: {err}");
    Ok(())
}

/// A server that keeps no SHA-256 checksum (the proxy removes it from HEAD answers): the
/// upload is verified by the MD5 ETag instead, a wrong ETag is a mismatch, and with neither
/// the upload fails as unverified rather than being claimed good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_server_checksums_the_etag_verifies() -> anyhow::Result<()> {
    let server = S3Server::shared();
    let (_, bucket) = server.new_bucket("etag").await?;
    let proxy = Proxy::start(&server.endpoint).await?;
    let mut cfg = server.config(&bucket);
    cfg.endpoint = Some(proxy.url.clone());
    let s3 = S3::connect(cfg).await?;
    let dir = tempfile::tempdir()?;
    let drop = |names: &[&str]| {
        *proxy.faults.head_drop.lock().unwrap() = names.iter().map(|n| n.to_string()).collect();
    };
    drop(&["x-amz-checksum-sha256"]);
    for (name, size) in [("multi.car", 17 * MIB), ("single.json", 2000)] {
        let src = dir.path().join(name);
        random_file(&src, size, 10)?;
        let up = s3.upload_file(&src, name, &no_progress).await?;
        assert_eq!(up.checksum_verified_by, VerifiedBy::EtagMd5, "{name}");
        assert_eq!(up.checksum_verified_by.as_str(), "etag-md5");
    }
    let src = dir.path().join("multi.car");
    drop(&["x-amz-checksum-sha256", "etag"]);
    *proxy.faults.head_headers.lock().unwrap() =
        vec!["ETag: \"00000000000000000000000000000000-3\"".into()];
    let err = s3
        .upload_file(&src, "multi.car", &no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("etag"), "{err}");
    proxy.faults.head_headers.lock().unwrap().clear();
    let err = s3
        .upload_file(&src, "multi.car", &no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, S3Error::Unverified { .. }), "{err}");
    eprintln!("no checksum, no ETag: {err}");
    Ok(())
}
