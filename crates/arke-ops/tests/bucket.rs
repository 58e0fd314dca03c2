//! The bucket against a real S3 server (SeaweedFS, SSE-S3 on): uploads ask for server-side
//! encryption and record what the server reports; dr-status's bucket checks on a plain bucket
//! and on a protected one, and their once-a-day copy; the same checks through the fault proxy
//! (answers SeaweedFS cannot give: NotImplemented, AccessDenied, versioning enabled); calendar retention over dated archives
//! in the bucket (the deleted set worked out by hand); Object Lock: an archive under retention
//! is never deleted (nor its parent), and the kept chains' retain-until is extended, never
//! shortened.

use std::collections::BTreeSet;
use std::path::Path;

use arke_core::backup::retention::Policy;
use arke_core::{Operation, Progress};
use arke_ops::bucket_archives::{self, BucketPolicy, BucketPrune, json_name};
use arke_ops::daily::ArchiveStore;
use arke_ops::status::RemoteProbe;
use arke_ops::status::Severity;
use arke_ops::status::bucket::{self, BucketFact};
use arke_ops::store::S3Store;
use arke_s3::{LockMode, Retention, S3};
use arke_testkit::s3::{S3Server, unique_bucket};
use arke_testkit::s3proxy::Proxy;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    ExpirationStatus, LifecycleRule, LifecycleRuleFilter, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, VersioningConfiguration,
};
use chrono::{Duration, Utc};

#[tokio::test]
async fn uploads_ask_for_encryption_and_record_it() {
    let server = S3Server::shared();
    let (s3, _) = server.new_bucket("sse").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("arke-1-20261201-020000.car");
    std::fs::write(&file, vec![7u8; 4096]).unwrap();
    let store = S3Store::new(s3.clone());
    let got = store
        .upload(&file, "arke-1-20261201-020000.car")
        .await
        .unwrap();
    assert_eq!(got.sse.as_deref(), Some("AES256"), "{got:?}");
    let head = s3
        .head("arke-1-20261201-020000.car")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.sse.as_deref(), Some("AES256"));
    // S3_SSE=none: no header, and this bucket has no default: the server reports none.
    let mut cfg = s3.config().clone();
    cfg.sse = arke_s3::Sse::None;
    let plain = S3Store::new(S3::connect(cfg).await.unwrap());
    let got = plain.upload(&file, "plain.car").await.unwrap();
    assert_eq!(got.sse, None, "{got:?}");
    // A multipart upload carries it too (8 MiB parts: 9 MiB is two).
    let big = dir.path().join("big.car");
    arke_testkit::s3::random_file(&big, 9 << 20, 3).unwrap();
    let up = s3.upload_file(&big, "big.car", &|_, _| {}).await.unwrap();
    assert_eq!((up.parts, up.sse.as_deref()), (2, Some("AES256")));
    // SSE-KMS: SeaweedFS has no KMS and refuses it (InternalError): the upload fails, named.
    let mut cfg = s3.config().clone();
    cfg.sse = arke_s3::Sse::Kms { key_id: None };
    cfg.retries = 0;
    let kms = S3::connect(cfg).await.unwrap();
    let err = kms
        .upload_file(&file, "kms.car", &|_, _| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("PutObject"), "{err}");
}

#[tokio::test]
async fn bucket_checks_name_what_is_missing_then_pass() {
    let server = S3Server::shared();
    let (s3, name) = server.new_bucket("checks").await.unwrap();
    let store = S3Store::new(s3.clone());
    let facts = store.bucket().await.unwrap();
    assert_eq!(facts.versioning, BucketFact::NotSet);
    assert_eq!(facts.encryption, BucketFact::NotSet);
    assert_eq!(facts.public_access, BucketFact::NotSet);
    assert_eq!(facts.abort_incomplete_uploads, BucketFact::NotSet);
    assert_eq!(facts.object_lock, BucketFact::NotSet);
    let checks = bucket::checks(&facts);
    let warned: BTreeSet<&str> = checks
        .iter()
        .filter(|c| c.severity == Severity::Warning)
        .map(|c| c.name.as_str())
        .collect();
    let expected: BTreeSet<&str> = [
        "bucket_versioning",
        "bucket_encryption",
        "bucket_public_access",
        "bucket_lifecycle",
    ]
    .into();
    assert_eq!(warned, expected, "{checks:#?}");
    let lock = checks
        .iter()
        .find(|c| c.name == "bucket_object_lock")
        .unwrap();
    assert_eq!(lock.severity, Severity::Ok, "{lock:?}");
    assert!(
        checks
            .iter()
            .any(|c| c.message.contains("put-bucket-versioning"))
    );

    protect(&s3, &name).await;
    let facts = store.bucket().await.unwrap();
    let checks = bucket::checks(&facts);
    assert!(
        checks.iter().all(|c| c.severity == Severity::Ok),
        "{checks:#?}"
    );
    assert_eq!(
        facts.abort_incomplete_uploads,
        BucketFact::Set { value: "7".into() }
    );
    assert_eq!(facts.expiration_days, Some(400));

    // Once a day: the copy is used for a day, then not; another bucket's never.
    let state = tempfile::tempdir().unwrap();
    bucket::store(state.path(), &facts);
    let now = Utc::now();
    let again = bucket::cached(state.path(), &name, now + Duration::hours(23)).unwrap();
    assert!(again.cached);
    assert_eq!(again.versioning, facts.versioning);
    assert!(bucket::cached(state.path(), &name, now + Duration::hours(25)).is_none());
    assert!(bucket::cached(state.path(), "another-bucket", now).is_none());
}

/// What SeaweedFS cannot say, said by the fault proxy in front of it: a server that does not
/// implement an API (NotImplemented, 501), credentials that may not ask (AccessDenied, 403),
/// and a bucket with versioning enabled (200 with the configuration).
#[tokio::test]
async fn bucket_checks_through_the_fault_proxy() {
    let server = S3Server::shared();
    let (s3, name) = server.new_bucket("proxied").await.unwrap();
    let proxy = Proxy::start(&server.endpoint).await.unwrap();
    let mut cfg = s3.config().clone();
    cfg.endpoint = Some(proxy.url.clone());
    cfg.retries = 0;
    let store = S3Store::new(S3::connect(cfg).await.unwrap());
    let error = |code: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>canned</Message><Resource>/{name}</Resource><RequestId>1</RequestId></Error>"
        )
    };
    proxy.answer_get("encryption", 501, &error("NotImplemented"));
    proxy.answer_get("publicAccessBlock", 501, &error("NotImplemented"));
    proxy.answer_get("lifecycle", 403, &error("AccessDenied"));
    proxy.answer_get("object-lock", 403, &error("AccessDenied"));
    proxy.answer_get(
        "versioning",
        200,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status></VersioningConfiguration>",
    );
    let facts = store.bucket().await.unwrap();
    assert_eq!(facts.encryption, BucketFact::NotImplemented, "{facts:?}");
    assert_eq!(facts.public_access, BucketFact::NotImplemented, "{facts:?}");
    assert_eq!(facts.abort_incomplete_uploads, BucketFact::AccessDenied);
    assert_eq!(facts.object_lock, BucketFact::AccessDenied, "{facts:?}");
    assert_eq!(
        facts.versioning,
        BucketFact::Set {
            value: "Enabled".into()
        }
    );
    let checks = bucket::checks(&facts);
    let check = |n: &str| checks.iter().find(|c| c.name == n).unwrap().clone();
    let v = check("bucket_versioning");
    assert_eq!(v.severity, Severity::Ok, "{v:?}");
    assert!(v.message.contains("versioning enabled"), "{v:?}");
    for n in ["bucket_encryption", "bucket_public_access"] {
        let c = check(n);
        assert_eq!(c.severity, Severity::Warning, "{c:?}");
        assert!(
            c.message
                .starts_with(&format!("{n}: could not be checked (NotImplemented")),
            "{c:?}"
        );
    }
    for (n, action) in [
        ("bucket_lifecycle", "s3:GetLifecycleConfiguration"),
        ("bucket_object_lock", "s3:GetBucketObjectLockConfiguration"),
    ] {
        let c = check(n);
        assert_eq!(c.severity, Severity::Warning, "{c:?}");
        assert!(
            c.message.contains("(AccessDenied)") && c.message.contains(action),
            "{c:?}"
        );
    }
    // Every answer was an answer: the copy is kept for the day.
    assert!(facts.complete());
    assert!(proxy.count("GET") >= 5, "{:?}", proxy.methods());
}

/// Versioning, default encryption, the public-access block and a lifecycle rule (abort after
/// 7 days, expire after 400) on `bucket`.
async fn protect(s3: &S3, bucket: &str) {
    let sdk = s3.sdk();
    let versioning = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    sdk.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(versioning)
        .send()
        .await
        .unwrap();
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .unwrap();
    let enc = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(default)
                .build(),
        )
        .build()
        .unwrap();
    sdk.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(enc)
        .send()
        .await
        .unwrap();
    let pab = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    sdk.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(pab)
        .send()
        .await
        .unwrap();
    let rule = LifecycleRule::builder()
        .id("arke")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("backups/").build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(7)
                .build(),
        )
        .expiration(
            aws_sdk_s3::types::LifecycleExpiration::builder()
                .days(400)
                .build(),
        )
        .build()
        .unwrap();
    sdk.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Two chains and an incomplete upload, as a night's listing would show them:
/// a1 <- a2 (Nov 1-2), b1 <- b2 <- b3 (Nov 3-5), c1 (Nov 6, its .json not uploaded).
const A1: &str = "arke-1-20261101-020000.car";
const A2: &str = "arke-2-20261102-020000.car";
const B1: &str = "arke-3-20261103-020000.car";
const B2: &str = "arke-4-20261104-020000.car";
const B3: &str = "arke-5-20261105-020000.car";
const C1: &str = "arke-6-20261106-020000.car";

async fn put_archives(s3: &S3, dir: &Path, locked: Option<(&str, Retention)>) {
    let chain = [
        (A1, None),
        (A2, Some(A1)),
        (B1, None),
        (B2, Some(B1)),
        (B3, Some(B2)),
    ];
    for (name, parent) in chain {
        let car = dir.join(name);
        std::fs::write(&car, name.as_bytes()).unwrap();
        let kind = if parent.is_some() {
            "incremental"
        } else {
            "full"
        };
        let json = serde_json::json!({ "kind": kind, "parent": parent });
        let meta = dir.join(json_name(name));
        std::fs::write(&meta, json.to_string()).unwrap();
        let lock = locked.filter(|(n, _)| *n == name).map(|(_, r)| r);
        for (path, obj) in [(&car, name.to_string()), (&meta, json_name(name))] {
            s3.upload_file_locked(path, &obj, lock, &|_, _| {})
                .await
                .unwrap();
        }
    }
    let c1 = dir.join(C1);
    std::fs::write(&c1, b"incomplete").unwrap();
    s3.upload_file(&c1, C1, &|_, _| {}).await.unwrap();
}

async fn names(s3: &S3) -> BTreeSet<String> {
    s3.list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect()
}

/// `daily 2`: the newest archive of each of the 2 newest days that have one: b3 (Nov 5) and
/// b2 (Nov 4); b1 as b2's parent. Chain a goes whole; c1 (incomplete) is left alone.
#[tokio::test]
async fn s3_retention_deletes_whole_chains_by_the_calendar() {
    let server = S3Server::shared();
    let (s3, _) = server.new_bucket("retention").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    put_archives(&s3, dir.path(), None).await;
    let store = S3Store::new(s3.clone());
    let policy = Policy {
        daily: Some(2),
        ..Policy::default()
    };
    let cache = dir.path().join("cache");
    let now = Utc::now();
    let op = BucketPrune {
        store: &store,
        cache: &cache,
    };
    let opts = BucketPolicy {
        policy,
        now,
        pinned: None,
    };
    let plan = op.plan(&opts, &Progress::off()).await.unwrap();
    let dry = &plan.report;
    let keep: BTreeSet<&str> = dry
        .decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(keep, [B1, B2, B3].into());
    assert_eq!(dry.incomplete, vec![C1.to_string()]);
    let b1 = dry.decisions.iter().find(|d| d.name == B1).unwrap();
    assert!(b1.reasons.iter().any(|r| r.contains("parent of")), "{b1:?}");
    assert_eq!(names(&s3).await.len(), 11, "the dry run deletes nothing");

    let done = op.apply(plan, &Progress::off()).await.unwrap();
    assert_eq!(done.deleted, vec![A2.to_string(), A1.to_string()]);
    let left = names(&s3).await;
    let expected: BTreeSet<String> = [B1, B2, B3]
        .iter()
        .flat_map(|n| [n.to_string(), json_name(n)])
        .chain([C1.to_string()])
        .collect();
    assert_eq!(left, expected);
    // The descriptor cache follows the bucket.
    let cached: BTreeSet<String> = arke_testkit::s3::files_in(&cache).into_iter().collect();
    assert_eq!(cached, [B1, B2, B3].iter().map(|n| json_name(n)).collect());
}

/// On a bucket with Object Lock: a2 is under retention, so neither it nor its parent a1 is
/// deleted; then the newest chain's retain-until goes to now + 30 days, a1 inherits a2's, and
/// a shorter date is never set.
#[tokio::test]
async fn object_lock_holds_archives_and_is_extended_never_shortened() {
    let server = S3Server::shared();
    let bucket = unique_bucket("lock");
    let s3 = S3::connect(server.config(&bucket)).await.unwrap();
    s3.sdk()
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let store = S3Store::new(s3.clone()).with_lock(LockMode::Governance, 30);
    assert!(store.bucket_locked().await);
    let a2_until = Utc::now() + Duration::days(3);
    let r = Retention {
        mode: LockMode::Governance,
        until: a2_until,
    };
    let dir = tempfile::tempdir().unwrap();
    put_archives(&s3, dir.path(), Some((A2, r))).await;
    let policy = Policy {
        daily: Some(2),
        ..Policy::default()
    };
    let cache = dir.path().join("cache");
    let now = Utc::now();
    let op = BucketPrune {
        store: &store,
        cache: &cache,
    };
    let opts = BucketPolicy {
        policy,
        now,
        pinned: None,
    };
    let plan = op.plan(&opts, &Progress::off()).await.unwrap();
    let done = op.apply(plan, &Progress::off()).await.unwrap();
    assert!(done.deleted.is_empty(), "{done:?}");
    assert!(
        done.held[0].starts_with(A2) && done.held[0].contains("Object Lock"),
        "{:?}",
        done.held
    );
    assert!(
        done.held[1].starts_with(A1) && done.held[1].contains("parent of"),
        "{:?}",
        done.held
    );

    let a1_before = s3.head(A1).await.unwrap().unwrap().retention;
    assert_eq!(a1_before, None);
    let ext = bucket_archives::extend_locks(&store, &cache, store.lock(), now, None)
        .await
        .unwrap();
    let until = |name: &str| {
        let s3 = s3.clone();
        let name = name.to_string();
        async move {
            s3.head(&name)
                .await
                .unwrap()
                .unwrap()
                .retention
                .map(|r| r.until)
        }
    };
    let target = now + Duration::days(30);
    for n in [B1, B2, B3] {
        for obj in [n.to_string(), json_name(n)] {
            let u = until(&obj).await.unwrap();
            assert!((u - target).num_seconds().abs() <= 2, "{obj}: {u}");
        }
    }
    // a1 had none: it now has a2's, the date its increment needs.
    let a1 = until(A1).await.unwrap();
    assert!((a1 - a2_until).num_seconds().abs() <= 1, "{a1}");
    assert_eq!(ext.extended.len(), 8, "{:?}", ext.extended);
    // Run again: nothing to extend (dates already there).
    let again = bucket_archives::extend_locks(&store, &cache, store.lock(), now, None)
        .await
        .unwrap();
    assert!(again.extended.is_empty(), "{:?}", again.extended);
    // Shortening is refused by S3 itself; the job never asks (the check above), and the
    // server confirms the rule it relies on.
    let shorter = Retention {
        mode: LockMode::Governance,
        until: now + Duration::days(1),
    };
    assert!(s3.extend_retention(B3, &shorter).await.is_err());
    // An upload through the store carries the configured retention.
    let f = dir.path().join("new.car");
    std::fs::write(&f, b"tonight").unwrap();
    let got = store
        .upload(&f, "arke-7-20261107-020000.car")
        .await
        .unwrap();
    assert!(got.retain_until.is_some(), "{got:?}");
}
