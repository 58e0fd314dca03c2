//! Unit tests for the ipld module.

use std::collections::BTreeMap;

use ipld_core::ipld;
use ipld_dagpb::{PbLink, PbNode};
use multihash_codetable::{Code, MultihashDigest};

use super::*;

type Mh = cid::multihash::Multihash<64>;

fn raw_cid(s: &str) -> Cid {
    cid_v1(RAW, s.as_bytes())
}

fn cbor_block(value: &Ipld) -> (Cid, Vec<u8>) {
    let bytes = encode_dag_cbor(value).unwrap();
    (cid_v1(DAG_CBOR, &bytes), bytes)
}

fn strict_cbor(bytes: &[u8]) -> Result<Ipld, String> {
    serde_ipld_dagcbor::from_slice::<Ipld>(bytes).map_err(|e| e.to_string())
}

fn lenient(bytes: &[u8]) -> Result<Ipld, IpldError> {
    decode(&cid_v1(DAG_CBOR, bytes), bytes)
}

/// Small deterministic PRNG so the fuzz-style tests are reproducible.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------- names

#[test]
fn codec_and_hash_names() {
    assert_eq!(codec_name(RAW), "raw");
    assert_eq!(codec_name(DAG_PB), "dag-pb");
    assert_eq!(codec_name(DAG_CBOR), "dag-cbor");
    assert_eq!(codec_name(DAG_JSON), "dag-json");
    assert_eq!(codec_name(0x0200), "unknown");
    assert_eq!(hash_name(0x00), "identity");
    assert_eq!(hash_name(0x12), "sha2-256");
    assert_eq!(hash_name(0x13), "sha2-512");
    assert_eq!(hash_name(0xb220), "blake2b-256");
    assert_eq!(hash_name(0x1e), "blake3");
    assert_eq!(hash_name(0x16), "unknown");
}

// ---------------------------------------------------------------- links

#[test]
fn links_all_cbor_shapes_with_paths() {
    let prev = raw_cid("prev");
    let tip = raw_cid("tip");
    let image = raw_cid("image");
    let c0 = raw_cid("c0");
    let c1 = raw_cid("c1");
    let e_tip = raw_cid("entry-tip");
    let value = ipld!({
        "prev": { "/": prev.to_string() },
        "tip_cid": { "/": tip.to_string() },
        "components": { "image": image, "note": "text" },
        "chunks": [c0, "not a link", c1],
        "entries": [ {}, { "tip_cid": { "/": e_tip.to_string() }, "n": 1 } ],
    });
    let (cid, bytes) = cbor_block(&value);
    let found = links(&cid, &bytes).unwrap();
    let got: Vec<(Cid, LinkShape, &str)> = found
        .iter()
        .map(|l| (l.cid, l.shape, l.path.as_str()))
        .collect();
    // Maps are visited in data-model key order (BTreeMap), lists in index order.
    assert_eq!(
        got,
        vec![
            (c0, LinkShape::Tag42, "chunks.0"),
            (c1, LinkShape::Tag42, "chunks.2"),
            (image, LinkShape::Tag42, "components.image"),
            (e_tip, LinkShape::PlainMap, "entries.1.tip_cid"),
            (prev, LinkShape::PlainMap, "prev"),
            (tip, LinkShape::PlainMap, "tip_cid"),
        ]
    );
}

#[test]
fn plain_map_with_cidv0_string_is_a_link() {
    let v0 = parse_cid("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn").unwrap();
    let value = ipld!({ "prev": { "/": "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn" } });
    let found = links_in(&value, DAG_CBOR);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].cid, v0);
    assert_eq!(found[0].shape, LinkShape::PlainMap);
}

#[test]
fn slash_maps_that_are_only_data() {
    let cid = raw_cid("x");
    let value = ipld!({
        "garbage": { "/": "garbage" },
        "extra_key": { "/": "x", "other": 1 },
        "extra_key_valid_cid": { "/": cid.to_string(), "other": 1 },
        "not_string": { "/": 5 },
        "padded": { "/": format!(" {cid}") },
        "ipfs_path": { "/": format!("/ipfs/{cid}") },
        "empty": { "/": "" },
    });
    assert_eq!(links_in(&value, DAG_CBOR), vec![]);
    let (cid, bytes) = cbor_block(&value);
    assert_eq!(links(&cid, &bytes).unwrap(), vec![]);
}

#[test]
fn nested_links_in_lists_and_maps() {
    let a = raw_cid("a");
    let b = raw_cid("b");
    let value = ipld!([[{ "x": [a] }], { "y": { "z": { "/": b.to_string() } } }, a]);
    let found = links_in(&value, DAG_CBOR);
    let paths: Vec<&str> = found.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, vec!["0.0.x.0", "1.y.z", "2"]);
    assert_eq!(found[0].cid, a);
    assert_eq!(found[1].cid, b);
    assert_eq!(found[2].cid, a, "duplicates are kept");
}

#[test]
fn root_link_has_empty_path() {
    let a = raw_cid("a");
    let found = links_in(&Ipld::Link(a), DAG_CBOR);
    assert_eq!(
        found,
        vec![Link {
            cid: a,
            shape: LinkShape::Tag42,
            path: String::new()
        }]
    );
}

#[test]
fn dag_json_links() {
    let prev = raw_cid("prev");
    let c0 = raw_cid("c0");
    let text = format!(
        r#"{{"chunks":[{{"/":"{c0}"}},{{"/":{{"bytes":"AAE"}}}}],"prev":{{"/":"{prev}"}},"v":1}}"#
    );
    let cid = cid_v1(DAG_JSON, text.as_bytes());
    let found = links(&cid, text.as_bytes()).unwrap();
    assert_eq!(
        found,
        vec![
            Link {
                cid: c0,
                shape: LinkShape::DagJson,
                path: "chunks.0".into()
            },
            Link {
                cid: prev,
                shape: LinkShape::DagJson,
                path: "prev".into()
            },
        ]
    );
    // The bytes form decodes to Bytes, not a link.
    let value = decode(&cid, text.as_bytes()).unwrap();
    assert_eq!(
        value,
        ipld!({"chunks": [c0, Ipld::Bytes(vec![0, 1])], "prev": prev, "v": 1})
    );
}

#[test]
fn dag_json_invalid_link_is_a_decode_error() {
    let text = br#"{"prev":{"/":"not a cid"}}"#;
    let cid = cid_v1(DAG_JSON, text);
    let err = links(&cid, text).unwrap_err();
    assert!(matches!(
        err,
        IpldError::Decode {
            codec: DAG_JSON,
            ..
        }
    ));
    assert!(err.to_string().contains(&cid.to_string()));
    assert!(err.to_string().contains("dag-json"));
}

fn pb_link(cid: Cid, name: &str, size: u64) -> PbLink {
    PbLink {
        cid,
        name: Some(name.to_string()),
        size: Some(size),
    }
}

#[test]
fn dag_pb_file_root_over_raw_leaves() {
    let l0 = raw_cid("leaf0");
    let l1 = raw_cid("leaf1");
    // UnixFS File (Type=2) with filesize 10 and two block sizes; Kubo writes empty names.
    let node = PbNode {
        links: vec![pb_link(l0, "", 5), pb_link(l1, "", 5)],
        data: Some(bytes::Bytes::from_static(&[
            0x08, 0x02, 0x18, 0x0a, 0x20, 0x05, 0x20, 0x05,
        ])),
    };
    let bytes = node.into_bytes();
    let cid = cid_v1(DAG_PB, &bytes);
    assert!(cid.to_string().starts_with("bafybei"));
    let found = links(&cid, &bytes).unwrap();
    assert_eq!(
        found,
        vec![
            Link {
                cid: l0,
                shape: LinkShape::DagPb,
                path: "Links.0".into()
            },
            Link {
                cid: l1,
                shape: LinkShape::DagPb,
                path: "Links.1".into()
            },
        ]
    );
    let value = decode(&cid, &bytes).unwrap();
    let Ipld::Map(m) = &value else {
        panic!("dag-pb decodes to a map")
    };
    assert_eq!(
        m.get("Data"),
        Some(&Ipld::Bytes(vec![
            0x08, 0x02, 0x18, 0x0a, 0x20, 0x05, 0x20, 0x05
        ]))
    );
    assert_eq!(
        m.get("Links"),
        Some(&ipld!([
            {"Hash": l0, "Name": "", "Tsize": 5},
            {"Hash": l1, "Name": "", "Tsize": 5},
        ]))
    );
}

#[test]
fn dag_pb_directory_uses_link_names() {
    let a = raw_cid("a");
    let b = raw_cid("b");
    let node = PbNode {
        links: vec![
            pb_link(a, "a.txt", 1),
            PbLink {
                cid: b,
                name: None,
                size: None,
            },
        ],
        data: Some(bytes::Bytes::from_static(&[0x08, 0x01])),
    };
    // into_bytes sorts by name: the unnamed link comes first.
    let bytes = node.into_bytes();
    let cid = cid_v1(DAG_PB, &bytes);
    let found = links(&cid, &bytes).unwrap();
    let got: Vec<(Cid, &str)> = found.iter().map(|l| (l.cid, l.path.as_str())).collect();
    assert_eq!(got, vec![(b, "Links.0"), (a, "a.txt")]);
    assert!(found.iter().all(|l| l.shape == LinkShape::DagPb));
}

#[test]
fn dag_pb_garbage_is_a_decode_error() {
    let bytes = [0xff, 0xff, 0xff];
    let cid = cid_v1(DAG_PB, &bytes);
    let err = links(&cid, &bytes).unwrap_err();
    assert!(matches!(err, IpldError::Decode { codec: DAG_PB, .. }));
}

#[test]
fn raw_has_no_links_and_decodes_to_bytes() {
    let data = b"{\"/\": \"bafkreie7selb6q2dhze2nxtnw2anph3acwps4swjc4tcdijiizbicwcebm\"}";
    let cid = cid_v1(RAW, data);
    assert_eq!(links(&cid, data).unwrap(), vec![]);
    assert_eq!(decode(&cid, data).unwrap(), Ipld::Bytes(data.to_vec()));
    assert_eq!(links_in(&Ipld::Link(cid), RAW), vec![]);
}

#[test]
fn unsupported_codec_names_cid_and_codec() {
    let cid = cid_v1(0x0200, b"{}");
    let err = decode(&cid, b"{}").unwrap_err();
    assert!(matches!(
        err,
        IpldError::UnsupportedCodec { codec: 0x0200, .. }
    ));
    let msg = err.to_string();
    assert!(msg.contains(&cid.to_string()), "{msg}");
    assert!(msg.contains("0x200"), "{msg}");
    assert!(links(&cid, b"{}").is_err());
}

// ---------------------------------------------------------------- lenient dag-cbor

/// `{"link": tag42(cid), "name": text(ff fe)}`: valid CBOR, invalid UTF-8.
fn non_utf8_block(link: &Cid) -> Vec<u8> {
    let cid_bytes = link.to_bytes();
    let mut b = vec![0xa2, 0x64];
    b.extend_from_slice(b"link");
    b.extend_from_slice(&[0xd8, 0x2a, 0x58, (cid_bytes.len() + 1) as u8, 0x00]);
    b.extend_from_slice(&cid_bytes);
    b.push(0x64);
    b.extend_from_slice(b"name");
    b.extend_from_slice(&[0x62, 0xff, 0xfe]);
    b
}

#[test]
fn non_utf8_block_strict_fails_lenient_finds_link() {
    let link = raw_cid("leaf");
    let bytes = non_utf8_block(&link);
    assert!(
        strict_cbor(&bytes).is_err(),
        "strict decoder must refuse it"
    );
    let cid = cid_v1(DAG_CBOR, &bytes);
    let value = decode(&cid, &bytes).unwrap();
    assert_eq!(value, ipld!({"link": link, "name": "\u{fffd}\u{fffd}"}));
    assert_eq!(
        links(&cid, &bytes).unwrap(),
        vec![Link {
            cid: link,
            shape: LinkShape::Tag42,
            path: "link".into()
        }]
    );
}

fn corpus() -> Vec<Ipld> {
    let a = raw_cid("a");
    let v0 = parse_cid("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn").unwrap();
    let cbor_link = cid_v1(DAG_CBOR, b"x");
    let blake = Cid::new_v1(RAW, Code::Blake3_256.digest(b"x"));
    vec![
        ipld!(null),
        ipld!(true),
        ipld!(false),
        ipld!(0),
        ipld!(23),
        ipld!(24),
        ipld!(255),
        ipld!(256),
        ipld!(65535),
        ipld!(65536),
        ipld!(4294967295u64),
        ipld!(4294967296u64),
        Ipld::Integer(i128::from(u64::MAX)),
        ipld!(-1),
        ipld!(-24),
        ipld!(-25),
        ipld!(-257),
        Ipld::Integer(i128::from(i64::MIN)),
        Ipld::Integer(-(1i128 << 64)),
        ipld!(0.5),
        ipld!(1.0),
        ipld!(-2.75),
        ipld!(1.0e300),
        ipld!(f64::MIN_POSITIVE),
        ipld!(""),
        ipld!("hello"),
        ipld!("ünïcödé ✓ 🦀"),
        Ipld::String("x".repeat(300)),
        Ipld::Bytes(vec![]),
        Ipld::Bytes(vec![0, 1, 2, 255]),
        Ipld::Bytes(vec![7; 70_000]),
        ipld!([]),
        ipld!({}),
        ipld!([[], {}, [[[]]]]),
        Ipld::Link(a),
        Ipld::Link(v0),
        Ipld::Link(cbor_link),
        Ipld::Link(blake),
        ipld!({
            "b": 1, "aa": 2, "a": 3, "": 4, "bb": [a, v0, null],
            "nested": {"deep": {"deeper": {"list": [1, -1, 1.5, "s", Ipld::Bytes(vec![1])]}}},
            "prev": {"/": a.to_string()},
        }),
        Ipld::List((0..30).map(|i| Ipld::Integer(i * 1000)).collect()),
        Ipld::Map(
            (0..30)
                .map(|i| (format!("k{i}"), Ipld::Integer(i)))
                .collect(),
        ),
    ]
}

#[test]
fn lenient_equals_strict_on_corpus() {
    for value in corpus() {
        let bytes = encode_dag_cbor(&value).unwrap();
        let strict = strict_cbor(&bytes).unwrap();
        let ours = lenient(&bytes).unwrap();
        assert_eq!(ours, strict, "bytes {bytes:02x?}");
        assert_eq!(ours, value);
    }
}

fn random_ipld(rng: &mut XorShift, depth: u32) -> Ipld {
    let leaf_only = depth >= 5;
    match rng.below(if leaf_only { 8 } else { 10 }) {
        0 => Ipld::Null,
        1 => Ipld::Bool(rng.below(2) == 0),
        2 => {
            // Spread across all head widths and both signs, including the extremes.
            let shift = rng.below(65) as u32;
            let magnitude = if shift == 64 {
                u64::MAX
            } else {
                rng.next() >> shift
            };
            if rng.below(2) == 0 {
                Ipld::Integer(i128::from(magnitude))
            } else {
                Ipld::Integer(-1 - i128::from(magnitude))
            }
        }
        3 => {
            let f = f64::from_bits(rng.next());
            // dag-cbor forbids NaN, infinities and -0.0.
            if f.is_finite() && !(f == 0.0 && f.is_sign_negative()) {
                Ipld::Float(f)
            } else {
                Ipld::Float(rng.below(1000) as f64 / 8.0)
            }
        }
        4 => Ipld::String(random_string(rng)),
        5 => Ipld::Bytes((0..rng.below(40)).map(|_| rng.next() as u8).collect()),
        6 => Ipld::Link(cid_v1(
            [RAW, DAG_CBOR, DAG_JSON, DAG_PB][rng.below(4) as usize],
            &rng.next().to_le_bytes(),
        )),
        7 => {
            let mut m = BTreeMap::new();
            m.insert("/".to_string(), Ipld::String(raw_cid("p").to_string()));
            Ipld::Map(m)
        }
        8 => Ipld::List(
            (0..rng.below(6))
                .map(|_| random_ipld(rng, depth + 1))
                .collect(),
        ),
        _ => Ipld::Map(
            (0..rng.below(6))
                .map(|_| (random_string(rng), random_ipld(rng, depth + 1)))
                .collect(),
        ),
    }
}

fn random_string(rng: &mut XorShift) -> String {
    const PIECES: [&str; 8] = ["a", "b", "zz", "/", "é", "✓", "🦀", "key"];
    (0..rng.below(5))
        .map(|_| PIECES[rng.below(PIECES.len() as u64) as usize])
        .collect()
}

#[test]
fn lenient_equals_strict_on_random_values() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let value = random_ipld(&mut rng, 0);
        let bytes = encode_dag_cbor(&value).unwrap();
        let strict = strict_cbor(&bytes).unwrap();
        assert_eq!(lenient(&bytes).unwrap(), strict, "bytes {bytes:02x?}");
        // The link extractors agree on the strict decoder's view too.
        assert_eq!(
            links_in(&strict, DAG_CBOR),
            links(&cid_v1(DAG_CBOR, &bytes), &bytes).unwrap()
        );
    }
}

#[test]
fn lenient_accepts_non_canonical_cbor() {
    let link = raw_cid("l");
    let cid_bytes = link.to_bytes();
    let mut b = vec![
        0xbf, // indefinite map
        0x61,
        b'z',
        0x9f,
        0x01,
        0x18,
        0x02,
        0xff, // "z": [_ 1, 2] (non-minimal 2)
        0x61,
        b'a',
        0xf9,
        0x3e,
        0x00, // "a": half 1.5
        0x61,
        b'f',
        0xfa,
        0x3f,
        0xc0,
        0x00,
        0x00, // "f": single 1.5
        0x61,
        b'u',
        0xf7, // "u": undefined -> null
        0x61,
        b's',
        0xf8,
        0x20, // "s": simple(32) -> null
        0x05,
        0x61,
        b'i', // 5: "i" (integer key)
        0x42,
        0x68,
        0x69,
        0x61,
        b'b', // h'6869': "b" (bytes key)
        0x61,
        b'd',
        0x01,
        0x61,
        b'd',
        0x02, // duplicate "d": last wins
        0x61,
        b't',
        0xc1,
        0x1a,
        0x00,
        0x00,
        0x00,
        0x10, // "t": tag 1 (epoch) 16
        0x61,
        b'x',
        0x7f,
        0x62,
        0xc3,
        0xa9,
        0x61,
        b'!',
        0xff, // "x": indefinite text "é!"
        0x61,
        b'y',
        0x5f,
        0x41,
        0x01,
        0x41,
        0x02,
        0xff, // "y": indefinite bytes 01 02
        0x61,
        b'n',
        0x3b,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff,
        0xff, // "n": -2^64
        0x61,
        b'l',
        0xd8,
        0x2a,
        0x58,
        (cid_bytes.len() + 1) as u8,
        0x00,
    ];
    b.extend_from_slice(&cid_bytes);
    b.push(0xff);
    assert!(strict_cbor(&b).is_err());
    let value = lenient(&b).unwrap();
    let expected = ipld!({
        "z": [1, 2], "a": 1.5, "f": 1.5, "u": null, "s": null, "5": "i", "hi": "b",
        "d": 2, "t": 16, "x": "é!", "y": Ipld::Bytes(vec![1, 2]),
        "n": Ipld::Integer(-(1i128 << 64)), "l": link,
    });
    assert_eq!(value, expected);
    let found = links(&cid_v1(DAG_CBOR, &b), &b).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "l");
}

#[test]
fn half_float_special_values() {
    let dec = |bytes: &[u8]| lenient(bytes).unwrap();
    assert_eq!(dec(&[0xf9, 0x00, 0x01]), Ipld::Float(2f64.powi(-24)));
    assert_eq!(dec(&[0xf9, 0x7b, 0xff]), Ipld::Float(65504.0));
    assert_eq!(dec(&[0xf9, 0xc4, 0x00]), Ipld::Float(-4.0));
    assert_eq!(dec(&[0xf9, 0x7c, 0x00]), Ipld::Float(f64::INFINITY));
    assert!(matches!(dec(&[0xf9, 0x7e, 0x00]), Ipld::Float(f) if f.is_nan()));
}

#[test]
fn lenient_rejects_broken_input() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("trailing byte", vec![0x01, 0x00]),
        ("two items", vec![0x80, 0x80]),
        (
            "bytes longer than input",
            vec![0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        (
            "text longer than input",
            vec![0x7a, 0x00, 0x01, 0x00, 0x00, 0x61],
        ),
        (
            "array longer than input",
            vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        (
            "map longer than input",
            vec![0xba, 0x10, 0x00, 0x00, 0x00, 0x01],
        ),
        ("reserved ai", vec![0x1c]),
        ("reserved simple ai", vec![0xfc]),
        ("indefinite int", vec![0x1f]),
        ("lone break", vec![0xff]),
        ("break in definite array", vec![0x82, 0x01, 0xff]),
        ("break after key", vec![0xbf, 0x61, b'a', 0xff]),
        ("break after tag", vec![0x9f, 0xc1, 0xff]),
        ("tag without content", vec![0xc1]),
        ("unterminated indefinite", vec![0x9f, 0x01]),
        ("bad chunk in indefinite text", vec![0x7f, 0x41, 0x00, 0xff]),
        ("tag 42 on text", vec![0xd8, 0x2a, 0x61, 0x00]),
        ("tag 42 empty bytes", vec![0xd8, 0x2a, 0x40]),
        (
            "tag 42 without 0x00 prefix",
            vec![0xd8, 0x2a, 0x43, 0x01, 0x01, 0x55],
        ),
        (
            "tag 42 garbage cid",
            vec![0xd8, 0x2a, 0x43, 0x00, 0x07, 0x07],
        ),
    ];
    for (name, bytes) in cases {
        assert!(lenient(&bytes).is_err(), "{name}: {bytes:02x?} must fail");
    }
}

#[test]
fn tag42_with_trailing_bytes_after_cid_is_an_error() {
    let link = raw_cid("l");
    let mut inner = vec![0x00];
    inner.extend_from_slice(&link.to_bytes());
    inner.push(0xaa);
    let mut b = vec![0xd8, 0x2a, 0x58, inner.len() as u8];
    b.extend_from_slice(&inner);
    assert!(lenient(&b).is_err());
}

#[test]
fn decode_error_names_block_cid_and_codec() {
    let bytes = [0xa1, 0x61, b'p', 0xd8, 0x2a, 0x43, 0x00, 0x07, 0x07];
    let cid = cid_v1(DAG_CBOR, &bytes);
    let err = decode(&cid, &bytes).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&cid.to_string()), "{msg}");
    assert!(msg.contains("dag-cbor"), "{msg}");
    assert!(msg.contains("tag 42"), "{msg}");
    assert!(matches!(
        err,
        IpldError::Decode {
            codec: DAG_CBOR,
            ..
        }
    ));
}

#[test]
fn every_truncation_fails_without_panic() {
    let mut blocks: Vec<Vec<u8>> = corpus()
        .iter()
        .filter(|v| matches!(v, Ipld::Map(_) | Ipld::List(_) | Ipld::Link(_)))
        .map(|v| encode_dag_cbor(v).unwrap())
        .collect();
    blocks.push(non_utf8_block(&raw_cid("t")));
    // Indefinite containers too.
    blocks.push(vec![
        0x9f, 0xbf, 0x61, b'a', 0x7f, 0x61, b'b', 0xff, 0xff, 0xff,
    ]);
    for block in blocks {
        assert!(lenient(&block).is_ok());
        for cut in 0..block.len() {
            let prefix = &block[..cut];
            // An empty container prefix can itself be complete, e.g. "80" from "80 80";
            // the corpus blocks are single items, so any proper prefix must fail.
            assert!(lenient(prefix).is_err(), "prefix {cut} of {block:02x?}");
            assert!(links(&cid_v1(DAG_CBOR, prefix), prefix).is_err());
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut ok = 0usize;
    for _ in 0..4000 {
        let len = rng.below(64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        ok += usize::from(lenient(&bytes).is_ok());
    }
    // Mutations of valid blocks reach deeper code paths than pure noise.
    let valid: Vec<Vec<u8>> = corpus()
        .iter()
        .map(|v| encode_dag_cbor(v).unwrap())
        .filter(|b| b.len() < 4096)
        .collect();
    for i in 0..4000 {
        let mut bytes = valid[i % valid.len()].clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        ok += usize::from(lenient(&bytes).is_ok());
        // links() must not panic either (it goes through the same decoder).
        let _ = links(&cid_v1(DAG_CBOR, &bytes), &bytes);
    }
    assert!(ok > 0, "some random inputs are valid CBOR");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for open in [0x81u8, 0x9f] {
        let mut bytes = vec![open; 100_000];
        bytes.push(0x00);
        let err = lenient(&bytes).unwrap_err();
        assert!(err.to_string().contains("nesting"), "{err}");
    }
    // Maps nest through values.
    let mut bytes = Vec::new();
    for _ in 0..100_000 {
        bytes.extend_from_slice(&[0xa1, 0x61, b'k']);
    }
    bytes.push(0x00);
    assert!(lenient(&bytes).is_err());
    // A long chain of ignored tags is iterated, not recursed.
    let mut bytes = vec![0xc1; 100_000];
    bytes.push(0x07);
    assert_eq!(lenient(&bytes).unwrap(), Ipld::Integer(7));
}

#[test]
fn maps_as_keys_of_maps_decode_in_bounded_time() {
    // {{{…{"k": 0}…: 0}: 0}: 0}: each level's key is the rendering of the map below, which
    // escapes the quotes of the key inside it. Unbounded, the key doubled at every level
    // (found by fuzzing: ~80 levels never finished).
    let depth = MAX_DEPTH - 1;
    let mut bytes = vec![0xa1; depth];
    bytes.extend_from_slice(&[0x61, b'k']);
    bytes.extend(std::iter::repeat_n(0x00, depth));
    let started = std::time::Instant::now();
    let value = lenient(&bytes).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let Ipld::Map(m) = value else {
        panic!("not a map")
    };
    let key = m.keys().next().unwrap();
    assert!(key.len() <= 256, "{} bytes", key.len());
    assert!(key.starts_with('{'), "{key}");
    // A small container key is still rendered whole.
    let value = lenient(&[0xa1, 0x82, 0x01, 0x02, 0x00]).unwrap();
    let Ipld::Map(m) = value else {
        panic!("not a map")
    };
    assert_eq!(m.keys().next().map(String::as_str), Some("[1, 2]"));
}

#[test]
fn nesting_limit_is_exactly_max_depth() {
    let nested = |depth: usize| {
        let mut bytes = vec![0x81; depth];
        bytes.push(0x00);
        bytes
    };
    assert!(lenient(&nested(MAX_DEPTH)).is_ok());
    assert!(lenient(&nested(MAX_DEPTH + 1)).is_err());
}

// ---------------------------------------------------------------- hashes and CIDs

#[test]
fn verify_supported_hashes() {
    let data = b"arke block";
    let codes = [
        Code::Sha2_256,
        Code::Sha2_512,
        Code::Blake2b256,
        Code::Blake3_256,
    ];
    for code in codes {
        let cid = Cid::new_v1(RAW, code.digest(data));
        assert_eq!(verify(&cid, data), HashCheck::Valid, "{code:?}");
        let mut flipped = data.to_vec();
        flipped[3] ^= 0x01;
        assert_eq!(verify(&cid, &flipped), HashCheck::Mismatch, "{code:?}");
    }
    let identity = Cid::new_v1(RAW, Mh::wrap(0x00, data).unwrap());
    assert_eq!(verify(&identity, data), HashCheck::Valid);
    assert_eq!(verify(&identity, b"arke bloc"), HashCheck::Mismatch);
    assert_eq!(verify(&identity, b"arke blocK"), HashCheck::Mismatch);
    // CIDv0 is sha2-256 too.
    let v0 = Cid::new_v0(Code::Sha2_256.digest(data)).unwrap();
    assert_eq!(verify(&v0, data), HashCheck::Valid);
}

#[test]
fn verify_honours_declared_digest_size() {
    let data = b"truncated digest";
    let full = Code::Sha2_256.digest(data);
    let short = Cid::new_v1(RAW, Mh::wrap(0x12, &full.digest()[..20]).unwrap());
    assert_eq!(verify(&short, data), HashCheck::Valid);
    assert_eq!(verify(&short, b"other"), HashCheck::Mismatch);
    // Longer than sha2-256 can produce: can never match.
    let long = Cid::new_v1(RAW, Mh::wrap(0x12, &[0u8; 40]).unwrap());
    assert_eq!(verify(&long, data), HashCheck::Mismatch);
}

#[test]
fn verify_unknown_hashes_are_unverifiable() {
    let data = b"x";
    let sha3 = Cid::new_v1(RAW, Mh::wrap(0x16, &[0u8; 32]).unwrap());
    assert_eq!(verify(&sha3, data), HashCheck::Unverifiable { code: 0x16 });
    let made_up = Cid::new_v1(RAW, Mh::wrap(0x7777, &[1u8; 32]).unwrap());
    assert_eq!(
        verify(&made_up, data),
        HashCheck::Unverifiable { code: 0x7777 }
    );
    let empty_digest = Cid::new_v1(RAW, Mh::wrap(0x12, &[]).unwrap());
    assert_eq!(
        verify(&empty_digest, data),
        HashCheck::Unverifiable { code: 0x12 }
    );
}

#[test]
fn cid_v1_known_vectors() {
    assert_eq!(
        cid_v1(RAW, b"leaf").to_string(),
        "bafkreie7selb6q2dhze2nxtnw2anph3acwps4swjc4tcdijiizbicwcebm"
    );
    let empty_dir = [0x0a, 0x02, 0x08, 0x01];
    let v1 = cid_v1(DAG_PB, &empty_dir);
    let v0 = parse_cid("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn").unwrap();
    assert_eq!(v0.version(), cid::Version::V0);
    assert_eq!(v1.hash(), v0.hash());
    assert_eq!(
        Cid::new_v0(*v1.hash()).unwrap().to_string(),
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    );
    assert_eq!(verify(&v0, &empty_dir), HashCheck::Valid);
    // Prefixes from arke-data-model.md §4.
    assert!(cid_v1(DAG_CBOR, b"x").to_string().starts_with("bafyrei"));
    assert!(cid_v1(DAG_JSON, b"x").to_string().starts_with("baguqee"));
    assert!(cid_v1(DAG_PB, b"x").to_string().starts_with("bafybei"));
}

// ---------------------------------------------------------------- encoders

#[test]
fn dag_cbor_canonical_key_order_and_shapes() {
    let value = ipld!({"b": 1, "aa": 2, "a": 3});
    assert_eq!(
        encode_dag_cbor(&value).unwrap(),
        vec![
            0xa3, 0x61, b'a', 0x03, 0x61, b'b', 0x01, 0x62, b'a', b'a', 0x02
        ]
    );
    // Shortest integers, 64-bit floats.
    assert_eq!(encode_dag_cbor(&ipld!(24)).unwrap(), vec![0x18, 24]);
    assert_eq!(encode_dag_cbor(&ipld!(-1)).unwrap(), vec![0x20]);
    assert_eq!(
        encode_dag_cbor(&ipld!(1000)).unwrap(),
        vec![0x19, 0x03, 0xe8]
    );
    assert_eq!(
        encode_dag_cbor(&ipld!(1.5)).unwrap(),
        vec![0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
    );
    // Links as tag 42 with the 0x00 prefix.
    let link = raw_cid("leaf");
    let mut expected = vec![0xd8, 0x2a, 0x58, 37, 0x00];
    expected.extend_from_slice(&link.to_bytes());
    assert_eq!(encode_dag_cbor(&Ipld::Link(link)).unwrap(), expected);
    assert!(encode_dag_cbor(&Ipld::Float(f64::NAN)).is_err());
}

#[derive(serde::Serialize)]
struct OutOfOrder {
    zeta: u32,
    prev: Option<Cid>,
    alpha: String,
    id: Vec<u8>,
    none: Option<u8>,
}

#[test]
fn to_dag_cbor_struct_equals_canonical_map() {
    let prev = raw_cid("prev");
    let s = OutOfOrder {
        zeta: 7,
        prev: Some(prev),
        alpha: "a".into(),
        id: vec![1, 2],
        none: None,
    };
    let expected = ipld!({
        "alpha": "a", "id": [1, 2], "none": null, "prev": prev, "zeta": 7,
    });
    assert_eq!(
        to_dag_cbor(&s).unwrap(),
        encode_dag_cbor(&expected).unwrap()
    );
    assert_eq!(
        to_dag_json(&s).unwrap(),
        encode_dag_json(&expected).unwrap()
    );
    // The Cid field is a real tag-42 link.
    let bytes = to_dag_cbor(&s).unwrap();
    let found = links(&cid_v1(DAG_CBOR, &bytes), &bytes).unwrap();
    assert_eq!(
        found,
        vec![Link {
            cid: prev,
            shape: LinkShape::Tag42,
            path: "prev".into()
        }]
    );
}

#[test]
fn dag_json_encoding_and_round_trip() {
    let link = raw_cid("leaf");
    let value = ipld!({"b": Ipld::Bytes(vec![0, 1]), "a": 1, "l": link, "s": "x"});
    let bytes = encode_dag_json(&value).unwrap();
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        format!(r#"{{"a":1,"b":{{"/":{{"bytes":"AAE"}}}},"l":{{"/":"{link}"}},"s":"x"}}"#)
    );
    let cid = cid_v1(DAG_JSON, &bytes);
    assert_eq!(decode(&cid, &bytes).unwrap(), value);
    assert!(encode_dag_json(&Ipld::Float(f64::INFINITY)).is_err());
}

// ---------------------------------------------------------------- parse_cid

#[test]
fn parse_cid_accepts_and_trims() {
    let v1 = "bafkreie7selb6q2dhze2nxtnw2anph3acwps4swjc4tcdijiizbicwcebm";
    assert_eq!(parse_cid(&format!("{v1}\n")).unwrap().to_string(), v1);
    assert_eq!(parse_cid(&format!("  {v1}\r\n")).unwrap().to_string(), v1);
    let v0 = parse_cid("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn\n").unwrap();
    assert_eq!(v0.version(), cid::Version::V0);
    assert_eq!(v0.codec(), DAG_PB);
    // Other multibases: base58btc 'z' and base16 'f' of the same CIDv1.
    let cid = parse_cid(v1).unwrap();
    let b58 = cid
        .to_string_of_base(cid::multibase::Base::Base58Btc)
        .unwrap();
    let b16 = cid
        .to_string_of_base(cid::multibase::Base::Base16Lower)
        .unwrap();
    assert_eq!(parse_cid(&b58).unwrap(), cid);
    assert_eq!(parse_cid(&b16).unwrap(), cid);
}

#[test]
fn parse_cid_rejects_garbage() {
    for bad in [
        "",
        "  \n",
        "../x",
        "hello",
        "/ipfs/bafkreie7selb6q2dhze2nxtnw2anph3acwps4swjc4tcdijiizbicwcebm",
        "bafkreie7selb6q2dhze2nxtnw2anph3acwps4swjc4tcdijiizbicwce",
        "bafkreie7selb6q2dhze2nxtnw2anph3acwps4swjc4tcdijiizbicwcebm bafy",
    ] {
        let err = parse_cid(bad).unwrap_err();
        assert!(
            matches!(err, IpldError::InvalidCid { .. }),
            "{bad:?}: {err}"
        );
    }
}
#[test]
fn error_type_stays_small() {
    // Below clippy's result_large_err threshold (128 bytes), so every module that
    // returns or wraps IpldError stays lint-clean.
    assert!(std::mem::size_of::<IpldError>() < 128);
}
