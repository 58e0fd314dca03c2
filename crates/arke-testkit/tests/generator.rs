//! generate-test-data against a real node: what it reports is what the node holds.

use arke_core::Progress;
use arke_testkit::check::check_summary;
use arke_testkit::generator::{GenConfig, generate};
use arke_testkit::node::TestNode;

#[tokio::test]
async fn production_shaped_data_reads_back_through_arke_core() {
    let node = TestNode::shared();
    let kubo = node.kubo();
    let cfg = GenConfig {
        entities: 400,
        test_network: 4,
        seed: 11,
        legacy: true,
        large_file_ratio: 0.03,
        pointer_path: "/it-gen/index-pointer".into(),
        index_root: "/it-gen/index".into(),
        test_index_root: "/it-gen/test/index".into(),
        force: true,
        ..GenConfig::default()
    };
    let s = generate(&kubo, &cfg, &Progress::off()).await.unwrap();
    let c = &s.counts;
    // Production shape: every codec era, events without creates, creates without events.
    assert_eq!(c.entities, 400);
    assert_eq!(c.test_network_entities, 4);
    assert!(
        c.manifests_dag_cbor > 0 && c.manifests_dag_json > 0 && c.manifests_plain_links > 0,
        "{c:?}"
    );
    assert!(
        c.creates_without_event > 0 && c.update_events > 0 && c.create_events > 0,
        "{c:?}"
    );
    assert!(
        c.unixfs_files > 0 && c.raw_components > 0 && c.relationships > 0,
        "{c:?}"
    );
    assert!(c.legacy_path_tips > 0, "{c:?}");
    assert!(s.legacy.is_some());
    for e in &s.entities {
        let id = arke_core::shard::EntityId::parse(&e.id).unwrap();
        if e.network == "main" {
            assert_eq!(id.kind(), arke_core::shard::IdKind::Ulid, "{}", e.id);
        } else {
            assert!(id.is_test_network());
            assert!(e.path.starts_with("/it-gen/test/index/"));
        }
    }
    let stats = check_summary(&kubo, &s, 8).await.unwrap();
    assert_eq!(stats.tips, 404);
    assert_eq!(stats.events, s.event_count);
    assert_eq!(stats.manifest_versions, c.manifest_versions);

    // Same seed, same data: a second run (forced) produces the same tips and event head.
    let again = generate(&kubo, &cfg, &Progress::off()).await.unwrap();
    assert_eq!(again.event_head, s.event_head);
    let tips: Vec<_> = s.entities.iter().map(|e| &e.tip).collect();
    let tips2: Vec<_> = again.entities.iter().map(|e| &e.tip).collect();
    assert_eq!(tips, tips2);

    // Without --force it refuses to overwrite.
    let refused = generate(
        &kubo,
        &GenConfig {
            force: false,
            ..cfg.clone()
        },
        &Progress::off(),
    )
    .await;
    assert!(format!("{:#}", refused.unwrap_err()).contains("refusing to overwrite"));
}
