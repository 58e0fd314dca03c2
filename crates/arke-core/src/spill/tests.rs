use super::*;

/// A record ordered by `key` alone: equal keys keep the order they were pushed in.
#[derive(Debug, Clone)]
struct Rec {
    key: u32,
    name: String,
}

impl PartialEq for Rec {
    fn eq(&self, o: &Rec) -> bool {
        self.key == o.key
    }
}
impl Eq for Rec {}
impl PartialOrd for Rec {
    fn partial_cmp(&self, o: &Rec) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Rec {
    fn cmp(&self, o: &Rec) -> std::cmp::Ordering {
        self.key.cmp(&o.key)
    }
}

impl Record for Rec {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
    }
    fn decode(b: &[u8]) -> std::io::Result<Rec> {
        if b.len() < 4 {
            return Err(std::io::Error::other("short record"));
        }
        let name = String::from_utf8(b[4..].to_vec()).map_err(std::io::Error::other)?;
        Ok(Rec {
            key: u32::from_be_bytes(b[..4].try_into().unwrap()),
            name,
        })
    }
    fn mem_size(&self) -> usize {
        std::mem::size_of::<Rec>() + self.name.capacity()
    }
}

/// Pseudo-random keys with many repeats, names that say the push order.
fn records(n: u32) -> Vec<Rec> {
    let mut x = 0x2545_f491_u32;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            Rec {
                key: x % (n / 3 + 1),
                name: format!("pushed {i} {}", "x".repeat((i % 40) as usize)),
            }
        })
        .collect()
}

fn collect(list: &SortedList<Rec>) -> Vec<(u32, String)> {
    list.iter()
        .unwrap()
        .map(|r| r.map(|r| (r.key, r.name)).unwrap())
        .collect()
}

fn sorted(budget: MemoryBudget, recs: &[Rec]) -> SortedList<Rec> {
    let mut runs = SortedRuns::new(budget, "test records");
    for r in recs {
        runs.push(r.clone()).unwrap();
    }
    assert_eq!(runs.len(), recs.len() as u64);
    runs.finish().unwrap()
}

#[test]
fn a_tiny_budget_spills_and_reads_back_what_memory_sorts() {
    let recs = records(20_000);
    let mut expected: Vec<(u32, String)> = recs.iter().map(|r| (r.key, r.name.clone())).collect();
    expected.sort_by_key(|e| e.0); // stable: equal keys in push order

    let memory = sorted(MemoryBudget::default(), &recs);
    assert!(!memory.spilled());
    assert_eq!(collect(&memory), expected);

    // 1 KiB a run: hundreds of runs, more than one merge pass.
    let disk = sorted(MemoryBudget::new(1), &recs);
    assert!(disk.spilled());
    assert_eq!(disk.len(), 20_000);
    assert_eq!(collect(&disk), expected);
}

#[test]
fn a_spilled_list_reads_again_and_two_readers_do_not_meet() {
    let list = sorted(MemoryBudget::new(4 << 10), &records(5_000));
    assert!(list.spilled());
    let first = collect(&list);
    let mut a = list.iter().unwrap();
    let mut b = list.iter().unwrap();
    let mut both = Vec::new();
    for _ in 0..first.len() {
        let x = a.next().unwrap().unwrap();
        let y = b.next().unwrap().unwrap();
        assert_eq!((x.key, &x.name), (y.key, &y.name));
        both.push((x.key, x.name));
    }
    assert!(a.next().is_none() && b.next().is_none());
    assert_eq!(both, first);
    assert_eq!(collect(&list), first);
}

#[test]
fn an_empty_list_and_a_single_record() {
    let empty = sorted(MemoryBudget::new(1), &[]);
    assert!(empty.is_empty() && !empty.spilled());
    assert_eq!(collect(&empty), vec![]);
    let one = sorted(
        MemoryBudget::new(1),
        &[Rec {
            key: 7,
            name: "x".repeat(2000),
        }],
    );
    assert!(one.spilled());
    assert_eq!(collect(&one), vec![(7, "x".repeat(2000))]);
}

#[test]
fn a_record_that_does_not_decode_is_an_error_not_an_end() {
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Bad(u8);
    impl Record for Bad {
        fn encode(&self, out: &mut Vec<u8>) {
            out.push(self.0);
        }
        fn decode(b: &[u8]) -> std::io::Result<Bad> {
            match b {
                [3] => Err(std::io::Error::other("bad record 3")),
                [x] => Ok(Bad(*x)),
                _ => Err(std::io::Error::other("length")),
            }
        }
        fn mem_size(&self) -> usize {
            600
        }
    }
    let mut runs = SortedRuns::new(MemoryBudget::new(1), "bad records");
    for i in 0..6 {
        runs.push(Bad(i)).unwrap();
    }
    let list = runs.finish().unwrap();
    let got: Vec<_> = list.iter().unwrap().collect();
    assert!(got.iter().any(|r| r.is_err()), "{got:?}");
    assert!(got.len() < 6);
}

#[test]
fn budgets_parse_with_suffixes_and_refuse_nonsense() {
    let b = |s| MemoryBudget::parse(s).map(|b| b.bytes());
    assert_eq!(b("1048576"), Some(1 << 20));
    assert_eq!(b("64K"), Some(64 << 10));
    assert_eq!(b("96m"), Some(96 << 20));
    assert_eq!(b("1GiB"), Some(1 << 30));
    assert_eq!(b(" 2 MB "), Some(2 << 20));
    assert_eq!(b("10"), Some(1 << 10), "raised to the smallest share");
    for bad in ["", "0", "-5", "12Q", "K", "lots", "99999999999999999999G"] {
        assert_eq!(b(bad), None, "{bad:?}");
    }
    assert_eq!(MemoryBudget::new(96 << 20).part(3).bytes(), 32 << 20);
}
