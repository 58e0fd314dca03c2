//! The plan's tips from an archive's three sources (the snapshot's entries, the archived
//! events newer than it, the live state the export captured), merged id by id from lists
//! sorted on disk: the same tips, counts and warnings with a budget so small that every list
//! spills as with the default one that spills nothing, and the same as the entity restore's
//! maps in memory (`replay_events`, the live state set last).

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::lists::{Listed, Sequenced};
use super::plan::{Merged, PlannedTip, ReplayCounts, merge_state, replay_events};
use crate::blocks::NodeSource;
use crate::ipld::{DAG_CBOR, RAW, cid_v1, encode_dag_cbor, same_block};
use crate::kubo::memory::MemoryNode;
use crate::shard::EntityId;
use crate::spill::MemoryBudget;

/// A manifest of `pi` at `ver` after `prev`, stored in `node`.
fn manifest(node: &MemoryNode, pi: &str, ver: u64, prev: Option<Cid>) -> Cid {
    let s = |v: &str| Ipld::String(v.into());
    let value = Ipld::Map(BTreeMap::from([
        ("schema".into(), s("arke/manifest@v1")),
        ("pi".into(), s(pi)),
        ("ver".into(), Ipld::Integer(ver.into())),
        ("ts".into(), s("2026-01-01T00:00:00Z")),
        ("prev".into(), prev.map_or(Ipld::Null, Ipld::Link)),
        ("components".into(), Ipld::Map(BTreeMap::new())),
        ("children_pi".into(), Ipld::List(vec![])),
    ]));
    let bytes = encode_dag_cbor(&value).unwrap();
    let cid = cid_v1(DAG_CBOR, &bytes);
    node.put_block(cid, bytes);
    cid
}

fn id(i: usize) -> String {
    format!("01J8ME3H{i:018}")
}

/// An archive's three sources: snapshot entries, events newest first, live entries in order.
struct Sources {
    node: MemoryNode,
    snapshot: Vec<PlannedTip>,
    events: Vec<(String, Cid)>,
    live: Vec<(String, Cid)>,
}

/// 300 entities at v1 in the snapshot; every fifth moved to v2 by an event (its older event
/// behind it), three created by events, one event whose manifest is not in the archive, one
/// that does not descend, one naming a bad id; every eleventh set by the live state (one to
/// the tip it already has), and one entity only the live state knows.
fn sources() -> Sources {
    let node = MemoryNode::new();
    let mut snapshot = Vec::new();
    let mut newer = Vec::new();
    let mut older = Vec::new();
    let mut live = Vec::new();
    for i in 0..300 {
        let v1 = manifest(&node, &id(i), 1, None);
        snapshot.push(PlannedTip {
            id: EntityId::parse(&id(i)).unwrap(),
            tip: v1,
        });
        if i % 5 == 0 {
            newer.push((id(i), manifest(&node, &id(i), 2, Some(v1))));
            older.push((id(i), v1));
        }
        if i % 11 == 0 {
            live.push((id(i), cid_v1(DAG_CBOR, format!("live {i}").as_bytes())));
        }
    }
    for i in 300..303 {
        newer.push((id(i), manifest(&node, &id(i), 1, None)));
    }
    newer.push((id(1), cid_v1(DAG_CBOR, b"a manifest not in the archive")));
    let unrelated = manifest(&node, &id(999), 1, None);
    newer.push((id(2), unrelated));
    newer.push(("../x".into(), cid_v1(DAG_CBOR, b"bad id")));
    live.push((id(3), snapshot[3].tip));
    live.push((id(400), cid_v1(RAW, b"live only")));
    let mut events = newer;
    events.extend(older);
    Sources {
        node,
        snapshot,
        events,
        live,
    }
}

fn sequenced(items: &[(String, Cid)], budget: MemoryBudget) -> Listed<Sequenced> {
    let records = items.iter().enumerate().map(|(seq, (id, tip))| Sequenced {
        id: id.clone(),
        seq: seq as u64,
        tip: *tip,
    });
    Listed::collect(budget, "test sequenced", records).unwrap()
}

async fn merged(s: &Sources, budget: MemoryBudget) -> (Merged, Vec<String>) {
    let src = NodeSource {
        kubo: s.node.clone(),
    };
    let snapshot = Listed::collect(budget, "test snapshot", s.snapshot.clone()).unwrap();
    let events = sequenced(&s.events, budget);
    let live = sequenced(&s.live, budget);
    assert_eq!(
        [snapshot.spilled(), events.spilled(), live.spilled()],
        [budget.bytes() < MemoryBudget::DEFAULT_BYTES; 3]
    );
    let mut warnings = Vec::new();
    let m = merge_state(&src, &snapshot, [&events, &live], budget, &mut warnings)
        .await
        .unwrap();
    (m, warnings)
}

#[tokio::test]
async fn the_tips_merged_on_disk_are_the_tips_merged_in_memory() {
    let s = sources();
    let tiny = MemoryBudget::new(1024);
    let (small, small_warnings) = merged(&s, tiny).await;
    let (whole, whole_warnings) = merged(&s, MemoryBudget::default()).await;
    assert!(small.tips.spilled() && !whole.tips.spilled());
    let tips = |m: &Merged| m.tips.first(usize::MAX).unwrap();
    assert_eq!(tips(&small), tips(&whole));
    assert_eq!(small.replay, whole.replay);
    assert_eq!(small.live_tips, whole.live_tips);
    assert_eq!(small_warnings, whole_warnings);

    // The reference: the entity restore's maps in memory, the newest event of each id first.
    let src = NodeSource {
        kubo: s.node.clone(),
    };
    let mut map: BTreeMap<String, PlannedTip> = s
        .snapshot
        .iter()
        .map(|p| (p.id.to_string(), p.clone()))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let newest = s
        .events
        .iter()
        .filter(|(id, _)| seen.insert(id.clone()))
        .cloned()
        .collect();
    let mut warnings = Vec::new();
    let replay = replay_events(&src, newest, &mut map, &mut warnings).await;
    let mut live_tips = 0;
    for (i, tip) in &s.live {
        if !map.get(i).is_some_and(|p| same_block(&p.tip, tip)) {
            let id = EntityId::parse(i).unwrap();
            map.insert(i.clone(), PlannedTip { id, tip: *tip });
            live_tips += 1;
        }
    }
    assert_eq!(tips(&whole), map.into_values().collect::<Vec<_>>());
    assert_eq!(whole.replay, replay);
    assert_eq!(
        replay,
        ReplayCounts {
            replayed: 60,
            created: 3,
            skipped: 3
        }
    );
    assert_eq!(whole.live_tips, live_tips);
    assert_eq!(live_tips, 29);
    let mut sorted = whole_warnings;
    sorted.sort();
    warnings.sort();
    assert_eq!(sorted, warnings);
}

/// A snapshot that lists an entity twice is refused, on disk as in memory.
#[tokio::test]
async fn an_entity_listed_twice_is_refused() {
    for budget in [MemoryBudget::new(1024), MemoryBudget::default()] {
        let mut s = sources();
        s.snapshot.push(s.snapshot[150].clone());
        let src = NodeSource {
            kubo: s.node.clone(),
        };
        let snapshot = Listed::collect(budget, "test snapshot", s.snapshot.clone()).unwrap();
        let none = sequenced(&[], budget);
        let err = merge_state(&src, &snapshot, [&none, &none], budget, &mut Vec::new())
            .await
            .err()
            .expect("refused");
        assert!(format!("{err}").contains(&format!("lists entity {} twice", id(150))));
    }
}
