//! What an export's closure leaves out or does not trust is listed in `skipped` without making
//! the archive incomplete (issue 24, item 6).

use std::collections::BTreeMap;

use super::*;
use crate::model::ChainNode;

fn event(pi: &str, tip: &Cid) -> ChainNode {
    let value = Ipld::Map(BTreeMap::from([
        (
            "schema".to_string(),
            Ipld::String("arke/chain-entry@v1".into()),
        ),
        ("pi".to_string(), Ipld::String(pi.into())),
        ("tip".to_string(), Ipld::Link(*tip)),
        ("prev".to_string(), Ipld::Null),
    ]));
    ChainNode::from_ipld(&value).unwrap()
}

/// Everything wanted (`take` hands out at most one wide block a call).
fn take_all(c: &mut Closure) -> Vec<Want> {
    let mut all = Vec::new();
    loop {
        let batch = c.take(usize::MAX);
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

fn closure() -> Closure {
    let snap = ipld::cid_v1(ipld::DAG_CBOR, b"snapshot");
    let head = ipld::cid_v1(ipld::DAG_CBOR, b"event");
    Closure::for_export(
        snap,
        None,
        Some(head),
        ClosureOptions::default(),
        Visited::default(),
        crate::spill::MemoryBudget::default(),
    )
}

/// The event's tip, wanted from the event: delivered with `data`.
fn deliver_tip(c: &mut Closure, tip: &Cid, data: &[u8]) {
    let want = take_all(c)
        .into_iter()
        .find(|w| ipld::same_block(&w.cid, tip))
        .expect("the event's tip is wanted");
    assert!(c.deliver(want, data));
}

#[test]
fn an_event_naming_an_invalid_id_is_skipped_and_its_tip_not_wanted() {
    let mut c = closure();
    let tip = ipld::cid_v1(ipld::DAG_CBOR, b"tip");
    let ev = ipld::cid_v1(ipld::DAG_CBOR, b"event");
    c.deliver_event(0, &ev, b"event", &event("../../etc/passwd", &tip));
    assert!(
        take_all(&mut c)
            .iter()
            .all(|w| !ipld::same_block(&w.cid, &tip))
    );
    let r = c.into_report();
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert_eq!(r.skipped[0].0, ev.to_string());
    assert!(
        r.skipped[0].1.contains("invalid entity id"),
        "{:?}",
        r.skipped
    );
    assert!(r.findings.iter().all(|f| f.severity == Severity::Warning));
}

#[test]
fn an_event_tip_that_is_not_a_manifest_is_archived_and_skipped_not_an_error() {
    let not_a_manifest = ipld::encode_dag_cbor(&Ipld::Map(BTreeMap::from([(
        "hello".to_string(),
        Ipld::String("not a manifest".into()),
    )])))
    .unwrap();
    let cases: [(&str, u64, &[u8]); 2] = [
        ("not a known manifest", ipld::DAG_CBOR, &not_a_manifest),
        ("does not decode", ipld::RAW, b"\xff not cbor"),
    ];
    for (why, codec, data) in cases {
        let mut c = closure();
        let tip = ipld::cid_v1(codec, data);
        let ev = ipld::cid_v1(ipld::DAG_CBOR, b"event");
        c.deliver_event(0, &ev, b"event", &event("01J8ME3HXYZW", &tip));
        deliver_tip(&mut c, &tip, data);
        let r = c.into_report();
        assert_eq!(r.skipped.len(), 1, "{why}: {:?}", r.skipped);
        assert_eq!(r.skipped[0].0, tip.to_string(), "{why}");
        assert!(r.skipped[0].1.contains(why), "{why}: {:?}", r.skipped);
        assert!(
            !r.findings.iter().any(|f| f.severity == Severity::Error),
            "{why}: {:?}",
            r.findings
        );
    }
}

#[test]
fn a_snapshot_tip_that_does_not_decode_stays_an_error() {
    // Not from an event: the archive would be incomplete, as before.
    let mut c = closure();
    let snap = take_all(&mut c).remove(0);
    assert!(c.deliver(snap, b"\xff not cbor"));
    let r = c.into_report();
    assert!(r.skipped.is_empty());
    assert!(r.findings.iter().any(|f| f.severity == Severity::Error));
}

#[test]
fn an_event_tip_the_node_does_not_have_is_skipped_unless_the_snapshot_needs_it() {
    let mut c = closure();
    let tip = ipld::cid_v1(ipld::DAG_CBOR, b"absent");
    let ev = ipld::cid_v1(ipld::DAG_CBOR, b"event");
    c.deliver_event(0, &ev, b"event", &event("01J8ME3HXYZW", &tip));
    let want = take_all(&mut c)
        .into_iter()
        .find(|w| ipld::same_block(&w.cid, &tip))
        .unwrap();
    assert!(!want.required, "an event's tip alone is optional");
    c.fail(
        want,
        &SourceError::Missing {
            cid: tip,
            message: "not on the node".into(),
        },
    );
    let r = c.into_report();
    assert_eq!(r.missing, 0);
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert_eq!(r.skipped[0].0, tip.to_string());

    // The same block wanted by a snapshot entry too: required, an error when absent.
    let mut c = closure();
    c.deliver_event(0, &ev, b"event", &event("01J8ME3HXYZW", &tip));
    let entry = crate::model::SnapshotEntry {
        id: "01J8ME3HXYZW".into(),
        ver: Some(1),
        tip,
        ts: None,
        chain_cid: None,
    };
    c.process_entries(&[entry], false);
    let want = take_all(&mut c)
        .into_iter()
        .find(|w| ipld::same_block(&w.cid, &tip))
        .unwrap();
    assert!(want.required);
}

/// Tips named by many events, some wanted by the snapshot too, with the waiting tips spilled to
/// disk: each block is handed out once (the snapshot's want first, required), and a failed
/// one is reported once, never fetched again when another event names it.
#[test]
fn event_tips_waiting_on_disk_are_fetched_once_and_reported_once() {
    let snap = ipld::cid_v1(ipld::DAG_CBOR, b"snapshot");
    let mut c = Closure::for_export(
        snap,
        None,
        None,
        ClosureOptions::default(),
        Visited::default(),
        crate::spill::MemoryBudget::new(1),
    );
    take_all(&mut c);
    let tips: Vec<Cid> = (0..100u32)
        .map(|i| ipld::cid_v1(ipld::DAG_CBOR, &i.to_le_bytes()))
        .collect();
    let id = |i: usize| format!("01J8ME3H{i:04}");
    let ev = ipld::cid_v1(ipld::DAG_CBOR, b"event");
    for (n, i) in (0..100).chain(0..100).enumerate() {
        c.deliver_event(n as u64, &ev, b"event", &event(&id(i), &tips[i]));
    }
    assert!(c.event_tips.len() >= 200, "both namings wait");
    let entries: Vec<_> = (0..50)
        .map(|i| crate::model::SnapshotEntry {
            id: id(i),
            ver: Some(1),
            tip: tips[i],
            ts: None,
            chain_cid: None,
        })
        .collect();
    c.process_entries(&entries, false);
    let wants = take_all(&mut c);
    let handed: Vec<Cid> = wants.iter().map(|w| w.cid).collect();
    assert_eq!(handed.len(), 100, "each tip once");
    let set = |c: &[Cid]| {
        c.iter()
            .copied()
            .collect::<std::collections::BTreeSet<Cid>>()
    };
    assert_eq!(
        set(&handed[..50]),
        set(&tips[..50]),
        "the snapshot's wants first"
    );
    assert_eq!(handed[50..], tips[50..], "then the events', in order");
    assert!(wants[..50].iter().all(|w| w.required));
    assert!(
        wants[50..]
            .iter()
            .all(|w| !w.required && w.role.is_event_tip())
    );
    for w in wants {
        let err = SourceError::Missing {
            cid: w.cid,
            message: "not on the node".into(),
        };
        c.fail(w, &err);
    }
    // Named again by later events: passed over, not fetched again.
    for (n, i) in (200..).zip(0..100) {
        c.deliver_event(n, &ev, b"event", &event(&id(i), &tips[i]));
    }
    assert!(take_all(&mut c).is_empty());
    assert_eq!(c.pending(), 0);
    let r = c.into_report();
    assert_eq!((r.missing, r.missing_optional), (50, 50));
    assert_eq!(r.skipped.len(), 50, "{:?}", r.skipped);
}

/// A spill file that cannot be made loses the tips behind it: never silently. The walk's
/// report has an error finding naming it, and its owner gets the error (export-car exits 4).
#[test]
fn event_tips_that_cannot_spill_are_an_error_not_a_hole() {
    let mut c = closure();
    take_all(&mut c);
    let missing = std::env::temp_dir().join("arke-no-such-spill-dir/under/here");
    c.event_tips = event_tips::EventTips::in_dir(crate::spill::MemoryBudget::new(1), missing);
    let ev = ipld::cid_v1(ipld::DAG_CBOR, b"event");
    for n in 0..200u64 {
        let tip = ipld::cid_v1(ipld::DAG_CBOR, &n.to_le_bytes());
        c.deliver_event(n, &ev, b"event", &event(&format!("01J8ME3H{n:04}"), &tip));
    }
    let e = c.take_spill_error().expect("the spill failed");
    assert!(e.to_string().contains("event tips"), "{e}");
    let r = c.into_report();
    assert!(!r.complete());
    assert!(
        r.findings
            .iter()
            .any(|f| f.severity == Severity::Error && f.message.contains("were lost")),
        "{:?}",
        r.findings
    );
}
