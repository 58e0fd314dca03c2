//! Arbitrary bytes parsed as a CAR, its blocks put in an in-memory store, then the closure
//! engine driven to completion from the header's root over that store, three ways:
//!
//! 1. `closure::walk::run` (what verify-car does: drain, event walk, drain), on a tiny
//!    executor, with a source that also vouches for raw leaves (`KnownSize`) like a hashed
//!    CAR index;
//! 2. by hand, like export-car: every block of the file `offer`ed in file order, then
//!    `take` / `deliver` / `fail` until nothing is wanted, the event walk, and again;
//! 3. `Closure::for_export` from the root as a snapshot, with the second root (if any) as
//!    the event head.
//!
//! Blocks are **not** re-hashed against their CIDs: the engine is handed whatever the file
//! holds, so the fuzzer reaches the decoders and the model with any bytes (a real source
//! hands over verified blocks; the engine must not panic either way).
//!
//! Checked: no panic or hang; the walk ends with nothing pending; every block accepted came
//! from the store; the report serializes.

#![no_main]

use std::sync::Mutex;

use arke_core::car::{CarReader, ReaderOptions};
use arke_core::closure::walk::{self, Discard, KnownSize};
use arke_core::closure::{Closure, ClosureOptions, KeyMap, block_key};
use arke_core::ipld::{Cid, RAW};
use arke_core::report::{Progress, Unit};
use arke_core::source::{BlockSource, SourceError};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

struct MapSource {
    blocks: KeyMap<Bytes>,
    leaves_known: bool,
}

impl BlockSource for MapSource {
    async fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        self.blocks
            .get(&block_key(cid))
            .cloned()
            .ok_or_else(|| SourceError::Missing {
                cid: *cid,
                message: "not in the archive".into(),
            })
    }
}

impl KnownSize for MapSource {
    fn known_size(&self, cid: &Cid) -> Option<u64> {
        if !self.leaves_known || cid.codec() != RAW {
            return None;
        }
        self.blocks.get(&block_key(cid)).map(|b| b.len() as u64)
    }
}

fn check_done(closure: Closure, store: &MapSource) {
    assert_eq!(closure.pending(), 0);
    let report = closure.into_report();
    // Every accepted block came from the store (events included: the walk reads them there).
    assert!(
        report.blocks <= store.blocks.len() as u64,
        "{} blocks accepted from a store of {}",
        report.blocks,
        store.blocks.len()
    );
    for f in &report.findings {
        assert!(!f.message.is_empty());
    }
    serde_json::to_string(&report).expect("the report serializes");
}

fn drive_by_hand(closure: &Mutex<Closure>, store: &MapSource, file_order: &[(Cid, Bytes)]) {
    let task = Progress::off().task("fuzz", None, Unit::Items("blocks"));
    {
        let mut c = walk::lock_closure(closure);
        for (cid, data) in file_order {
            let _ = c.offer(cid, data);
        }
    }
    let drain = || loop {
        let wants = walk::lock_closure(closure).take(7);
        if wants.is_empty() {
            break;
        }
        for want in wants {
            let got = store.blocks.get(&block_key(&want.cid)).cloned();
            let mut c = walk::lock_closure(closure);
            match got {
                Some(data) => {
                    c.deliver(want, &data);
                }
                None => {
                    let err = SourceError::Missing {
                        cid: want.cid,
                        message: "not in the archive".into(),
                    };
                    c.fail(want, &err);
                }
            }
        }
    };
    drain();
    futures::executor::block_on(walk::walk_events(closure, store, &Discard, &task))
        .expect("a local source never fails the walk");
    drain();
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CarReader::new(data, ReaderOptions::default()) else {
        return;
    };
    let roots = reader.header().roots.clone();
    let mut store = MapSource {
        blocks: KeyMap::default(),
        leaves_known: true,
    };
    let mut file_order = Vec::new();
    // Like the CAR index: what was read before a stream error is still used.
    while let Ok(Some(b)) = reader.next_block() {
        let bytes = Bytes::from(b.data);
        store
            .blocks
            .entry(block_key(&b.cid))
            .or_insert_with(|| bytes.clone());
        file_order.push((b.cid, bytes));
    }
    let Some(&root) = roots.first() else {
        return;
    };
    let task = Progress::off().task("fuzz", None, Unit::Items("blocks"));

    // 1. As verify-car drives it.
    let closure = Mutex::new(Closure::from_root(root, ClosureOptions::default()));
    futures::executor::block_on(walk::run(&closure, &store, 4, &Discard, &task))
        .expect("a local source never fails the walk");
    let mut closure = closure.into_inner().unwrap();
    closure.fail_all_pending();
    check_done(closure, &store);

    // 2. As export-car drives it, with history, reading every block.
    store.leaves_known = false;
    let opts = ClosureOptions { with_history: true };
    let closure = Mutex::new(Closure::from_root(root, opts));
    drive_by_hand(&closure, &store, &file_order);
    let mut closure = closure.into_inner().unwrap();
    closure.fail_all_pending();
    check_done(closure, &store);

    // 3. An export without a descriptor: the root as the snapshot.
    let closure = Mutex::new(Closure::for_export(
        root,
        None,
        roots.get(1).copied(),
        ClosureOptions::default(),
    ));
    futures::executor::block_on(walk::run(&closure, &store, 2, &Discard, &task))
        .expect("a local source never fails the walk");
    let mut closure = closure.into_inner().unwrap();
    closure.fail_all_pending();
    check_done(closure, &store);
});
