//! The Kubo client against a real node (Kubo started by scripts/ipfs-node.sh, or the
//! node named by IPFS_API_URL). Local encodings must produce the node's CIDs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arke_core::ipld::{self, Cid, DAG_CBOR, DAG_JSON, DAG_PB, Ipld, RAW};
use arke_core::kubo::{EntryKind, KuboError, PinKind};
use arke_core::unixfs;
use arke_testkit::node::TestNode;
use bytes::Bytes;

/// `dag/put` through the node's own encoder (not part of our client: we encode locally).
async fn node_dag_put(url: &str, json: &str, store: &str) -> Cid {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(json.as_bytes().to_vec())
            .file_name("f")
            .mime_str("application/json")
            .unwrap(),
    );
    let resp = reqwest::Client::new()
        .post(format!(
            "{url}/api/v0/dag/put?store-codec={store}&input-codec=dag-json&pin=false"
        ))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let v: serde_json::Value = resp.json().await.unwrap();
    v["Cid"]["/"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn local_cids_equal_the_nodes() {
    let node = TestNode::shared();
    let kubo = node.kubo();
    let leaf = ipld::cid_v1(RAW, b"leaf");
    let doc = format!(
        r#"{{"schema":"arke/eidos@v1","id":"01KAXQ3N8SVW0H2D6C5F7G9J1M","ver":2,"ts":"2025-12-20T10:00:00.000Z","prev":{{"/":"{leaf}"}},"components":{{"image":{{"/":"{leaf}"}},"b":1.5,"a":-3,"zz":[true,null,"x"]}},"children_pi":[]}}"#
    );
    let value: Ipld = serde_ipld_dagjson_decode(&doc);
    for (store, codec, bytes) in [
        ("dag-cbor", DAG_CBOR, ipld::encode_dag_cbor(&value).unwrap()),
        ("dag-json", DAG_JSON, ipld::encode_dag_json(&value).unwrap()),
    ] {
        let ours = ipld::cid_v1(codec, &bytes);
        let theirs = node_dag_put(node.url(), &doc, store).await;
        assert_eq!(
            ours.hash(),
            theirs.hash(),
            "{store}: our encoding differs from the node's"
        );
        assert_eq!(ours.codec(), theirs.codec());
        // block/put checks the node's CID against ours and returns it.
        assert_eq!(kubo.block_put(codec, &bytes, false).await.unwrap(), ours);
        let back = kubo.block_get(&ours).await.unwrap();
        assert_eq!(back.as_ref(), bytes.as_slice());
        assert_eq!(ipld::verify(&ours, &back), ipld::HashCheck::Valid);
        assert_eq!(kubo.block_stat(&ours).await.unwrap(), bytes.len() as u64);
    }
    // raw: add of a small file is one raw block named like ours.
    let data = b"a small component".to_vec();
    let added = kubo
        .add("c.txt", Bytes::from(data.clone()), false)
        .await
        .unwrap();
    assert_eq!(added, ipld::cid_v1(RAW, &data));
    assert_eq!(kubo.block_put(RAW, &data, false).await.unwrap(), added);
    // dag-pb: MFS builds directories and small files exactly as our unixfs module does.
    let base = "/it-cids";
    kubo.files_rm(base, true).await.unwrap();
    kubo.files_mkdir(&format!("{base}/empty"), true)
        .await
        .unwrap();
    let st = kubo.files_stat(&format!("{base}/empty")).await.unwrap();
    assert_eq!(st.kind, EntryKind::Directory);
    assert_eq!(st.cid, unixfs::dir_block(&[]).0);
    let tip = format!("{leaf}\n");
    kubo.files_write(&format!("{base}/empty/x.tip"), tip.as_bytes(), true)
        .await
        .unwrap();
    // The node's MFS file reads back through our UnixFS reader (Kubo writes a single node; other
    // writers a root over one leaf: both must read).
    let st = kubo
        .files_stat(&format!("{base}/empty/x.tip"))
        .await
        .unwrap();
    let block = kubo.block_get(&st.cid).await.unwrap();
    assert_eq!(st.cid.codec(), DAG_PB);
    let mut children = std::collections::HashMap::new();
    for l in ipld::links(&st.cid, &block).unwrap() {
        children.insert(l.cid, kubo.block_get(&l.cid).await.unwrap().to_vec());
    }
    let content =
        unixfs::file_content(&st.cid, &block, 1 << 20, &mut |c| children.get(c).cloned()).unwrap();
    assert_eq!(content, tip.as_bytes());
    // And our locally built tip tree is valid UnixFS for the node: placed with files/cp, it
    // reads back through files/read and files/ls.
    let id = arke_core::shard::EntityId::parse("01KAXQ3N8SVW0H2D6C5F7G9J1M").unwrap();
    let mut blocks = Vec::new();
    let tree = unixfs::build_tip_tree(
        [(id.clone(), arke_core::shard::ShardRule::Worker, leaf)],
        &mut |c, b| blocks.push((c, b)),
    )
    .unwrap();
    for (c, b) in &blocks {
        assert_eq!(
            kubo.block_put(DAG_PB, b, false).await.unwrap().hash(),
            c.hash()
        );
    }
    kubo.files_cp(&format!("/ipfs/{}", tree.root), &format!("{base}/index"))
        .await
        .unwrap();
    let path = id.tip_path(
        &format!("{base}/index"),
        arke_core::shard::ShardRule::Worker,
    );
    assert_eq!(
        kubo.files_read(&path).await.unwrap().as_ref(),
        tip.as_bytes()
    );
    let ls = kubo.files_ls(&format!("{base}/index/9J")).await.unwrap();
    assert_eq!(ls[0].name, "1M");
    kubo.files_rm(base, true).await.unwrap();
}

fn serde_ipld_dagjson_decode(s: &str) -> Ipld {
    let cid = ipld::cid_v1(DAG_JSON, s.as_bytes());
    ipld::decode(&cid, s.as_bytes()).unwrap()
}

#[tokio::test]
async fn missing_things_are_typed_and_fast() {
    let node = TestNode::shared();
    let kubo = node.kubo();
    let absent = ipld::cid_v1(RAW, b"this block was never stored anywhere 8c1f");
    let t = Instant::now();
    let err = kubo.block_get(&absent).await.unwrap_err();
    assert!(matches!(err, KuboError::BlockMissing { .. }), "{err}");
    assert!(err.to_string().contains(&absent.to_string()), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    let err = kubo.files_read("/it-no/such/file").await.unwrap_err();
    assert!(matches!(err, KuboError::NotFound { .. }), "{err}");
    assert!(kubo.files_stat_opt("/it-no/such").await.unwrap().is_none());
    let err = kubo.files_ls("/it-no/such").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(kubo.pin_ls(&absent).await.unwrap(), None);
    // Removing what is not there succeeds.
    kubo.files_rm("/it-no/such", true).await.unwrap();
}

#[tokio::test]
async fn mfs_pins_and_car_round_trip() {
    let node = TestNode::shared();
    let kubo = node.kubo();
    let base = "/it-mfs";
    kubo.files_rm(base, true).await.unwrap();
    kubo.files_write(&format!("{base}/a/b/f.txt"), b"hello", true)
        .await
        .unwrap();
    assert_eq!(
        kubo.files_read(&format!("{base}/a/b/f.txt"))
            .await
            .unwrap()
            .as_ref(),
        b"hello"
    );
    // Overwrite truncates.
    kubo.files_write(&format!("{base}/a/b/f.txt"), b"hi", true)
        .await
        .unwrap();
    assert_eq!(
        kubo.files_read(&format!("{base}/a/b/f.txt"))
            .await
            .unwrap()
            .as_ref(),
        b"hi"
    );
    let ls = kubo.files_ls(&format!("{base}/a")).await.unwrap();
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0].name, "b");
    assert_eq!(ls[0].kind, EntryKind::Directory);
    kubo.files_cp(&format!("{base}/a/b/f.txt"), &format!("{base}/copy.txt"))
        .await
        .unwrap();
    let leaf = kubo
        .files_stat(&format!("{base}/copy.txt"))
        .await
        .unwrap()
        .cid;
    kubo.files_cp(&format!("/ipfs/{leaf}"), &format!("{base}/viaipfs.txt"))
        .await
        .unwrap();
    assert_eq!(
        kubo.files_read(&format!("{base}/viaipfs.txt"))
            .await
            .unwrap()
            .as_ref(),
        b"hi"
    );

    // A small DAG: root (dag-cbor) -> two raw leaves.
    let l1 = b"leaf one".to_vec();
    let l2 = b"leaf two".to_vec();
    let c1 = kubo.block_put(RAW, &l1, false).await.unwrap();
    let c2 = kubo.block_put(RAW, &l2, false).await.unwrap();
    let root = Ipld::Map(BTreeMap::from([
        ("a".to_string(), Ipld::Link(c1)),
        ("b".to_string(), Ipld::List(vec![Ipld::Link(c2)])),
    ]));
    let rb = ipld::encode_dag_cbor(&root).unwrap();
    let rc = kubo.block_put(DAG_CBOR, &rb, false).await.unwrap();
    kubo.pin_add(&rc, true).await.unwrap();
    assert_eq!(kubo.pin_ls(&rc).await.unwrap(), Some(PinKind::Recursive));

    // dag/export streams a CAR holding all three blocks; dag/import takes it back.
    let dir = tempfile::tempdir().unwrap();
    let car = dir.path().join("x.car");
    let mut f = tokio::fs::File::create(&car).await.unwrap();
    let n = kubo.dag_export(&rc, &mut f).await.unwrap();
    drop(f);
    assert!(n > 0);
    assert_eq!(std::fs::metadata(&car).unwrap().len(), n);
    let out = kubo
        .dag_import(&[car.as_path()], true, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(out.roots.len(), 1);
    assert_eq!(out.roots[0].cid.hash(), rc.hash());
    assert!(out.roots[0].pin_error.is_none());

    kubo.pin_rm(&rc).await.unwrap();
    assert_eq!(kubo.pin_ls(&rc).await.unwrap(), None);
    kubo.files_rm(base, true).await.unwrap();
    assert!(kubo.files_stat_opt(base).await.unwrap().is_none());
}

#[tokio::test]
async fn large_add_is_unixfs_over_raw_leaves() {
    let node = TestNode::shared();
    let kubo = node.kubo();
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let root = kubo
        .add("big.bin", Bytes::from(data.clone()), true)
        .await
        .unwrap();
    assert_eq!(root.codec(), DAG_PB, "a file over 256 KiB is a dag-pb root");
    let block = kubo.block_get(&root).await.unwrap();
    let links = ipld::links(&root, &block).unwrap();
    assert_eq!(links.len(), 3, "700 KB in 256 KiB chunks");
    let mut total = 0;
    for l in &links {
        assert_eq!(l.cid.codec(), RAW, "raw leaves");
        let leaf = kubo.block_get(&l.cid).await.unwrap();
        assert_eq!(ipld::verify(&l.cid, &leaf), ipld::HashCheck::Valid);
        total += leaf.len();
    }
    assert_eq!(total, data.len());
    kubo.pin_rm(&root).await.unwrap();
}
