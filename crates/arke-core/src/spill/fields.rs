//! The fields of a spilled record: what a [`super::Record`] writes with [`Writer`] it reads back
//! with [`Fields`], field by field in the same order. Spill files are anonymous and die with the
//! process, so this format is private to one run and may change freely.
//!
//! Numbers are unsigned varints; bytes, text and CIDs are a varint length then the bytes; an
//! option is a flag (0 or 1) then, when present, its field.

use std::io;

use cid::Cid;

/// Appends fields to a record's bytes.
#[derive(Debug)]
pub struct Writer<'a>(&'a mut Vec<u8>);

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Writer<'a> {
        Writer(out)
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        let mut buf = unsigned_varint::encode::u64_buffer();
        self.0
            .extend_from_slice(unsigned_varint::encode::u64(v, &mut buf));
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u64(u64::from(v))
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn cid(&mut self, c: &Cid) -> &mut Self {
        self.bytes(&c.to_bytes())
    }

    /// A flag, then the value written by `put` when there is one.
    pub fn opt<T: ?Sized>(
        &mut self,
        v: Option<&T>,
        put: impl for<'w> FnOnce(&'w mut Self, &T) -> &'w mut Self,
    ) -> &mut Self {
        self.bool(v.is_some());
        match v {
            Some(v) => put(self, v),
            None => self,
        }
    }
}

/// Reads back the fields of one record. A short or malformed record is an
/// [`io::ErrorKind::InvalidData`] error, never a panic nor a different record.
#[derive(Debug)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

/// The error of a record that does not read back.
pub fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("spill record: {what}"))
}

impl<'a> Fields<'a> {
    pub fn new(record: &'a [u8]) -> Fields<'a> {
        Fields { rest: record }
    }

    /// Reads one whole record with `get`: bytes left over are an error too.
    pub fn read<T>(
        record: &'a [u8],
        get: impl FnOnce(&mut Fields<'a>) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut f = Fields::new(record);
        let v = get(&mut f)?;
        f.end()?;
        Ok(v)
    }

    pub fn u64(&mut self) -> io::Result<u64> {
        let (v, rest) = unsigned_varint::decode::u64(self.rest).map_err(|_| damaged("a number"))?;
        self.rest = rest;
        Ok(v)
    }

    pub fn bool(&mut self) -> io::Result<bool> {
        match self.u64()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(damaged("a flag")),
        }
    }

    pub fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let len = usize::try_from(self.u64()?).map_err(|_| damaged("a length"))?;
        if self.rest.len() < len {
            return Err(damaged("truncated"));
        }
        let (field, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(field)
    }

    pub fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| damaged("text not UTF-8"))
    }

    pub fn cid(&mut self) -> io::Result<Cid> {
        Cid::try_from(self.bytes()?).map_err(|e| damaged(&format!("cid: {e}")))
    }

    /// The value read by `get` when the flag says there is one.
    pub fn opt<T>(
        &mut self,
        get: impl FnOnce(&mut Self) -> io::Result<T>,
    ) -> io::Result<Option<T>> {
        match self.bool()? {
            false => Ok(None),
            true => get(self).map(Some),
        }
    }

    /// The record's end: bytes left over mean it was not the record read.
    pub fn end(self) -> io::Result<()> {
        match self.rest {
            [] => Ok(()),
            _ => Err(damaged("bytes after the last field")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{DAG_CBOR, cid_v1};

    /// One field of each kind, with a present and an absent option.
    fn record() -> Vec<u8> {
        let mut out = Vec::new();
        Writer::new(&mut out)
            .u64(0)
            .u64(u64::MAX)
            .bool(true)
            .bytes(&[0, 255, 7])
            .str("ü/x")
            .cid(&cid_v1(DAG_CBOR, b"c"))
            .opt(Some(&300u64), |w, v| w.u64(*v))
            .opt(None::<&str>, Writer::str)
            .bytes(&[]);
        out
    }

    fn read(b: &[u8]) -> io::Result<()> {
        Fields::read(b, check)
    }

    fn check(f: &mut Fields) -> io::Result<()> {
        assert_eq!(f.u64()?, 0);
        assert_eq!(f.u64()?, u64::MAX);
        assert!(f.bool()?);
        assert_eq!(f.bytes()?, &[0, 255, 7]);
        assert_eq!(f.string()?, "ü/x");
        assert_eq!(f.cid()?, cid_v1(DAG_CBOR, b"c"));
        assert_eq!(f.opt(Fields::u64)?, Some(300));
        assert_eq!(f.opt(Fields::string)?, None);
        assert_eq!(f.bytes()?, &[] as &[u8]);
        Ok(())
    }

    #[test]
    fn every_kind_of_field_reads_back_as_written() {
        read(&record()).unwrap();
    }

    /// Every prefix of a record, and the record with a byte more, is an error, not a panic.
    #[test]
    fn a_short_or_longer_record_is_invalid_data() {
        let b = record();
        for n in 0..b.len() {
            let e = read(&b[..n]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{n} bytes: {e}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(
            read(&longer).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn malformed_fields_are_invalid_data() {
        let bad = |b: &[u8], get: fn(&mut Fields) -> io::Result<()>| {
            let e = get(&mut Fields::new(b)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{b:?}: {e}");
        };
        bad(&[2], |f| f.bool().map(drop));
        bad(&[0xff; 11], |f| f.u64().map(drop));
        bad(&[2, 0xc3, 0x28], |f| f.string().map(drop));
        bad(&[2, 1, 2], |f| f.cid().map(drop));
        bad(&[5, 1, 2], |f| f.bytes().map(drop));
    }
}
