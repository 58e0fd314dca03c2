//! The top-level error of an arke-dr run, and the one place that says which exit code each
//! error of the core gets.
//!
//! [`Error`] has one variant per error family of the core; [`Error::exit`] is an exhaustive
//! `match`, and so is the `exit()` of every family (a family that wraps another, such as
//! [`SourceError::Node`], asks the wrapped one). Adding a family or a variant does not compile
//! until it has a code.
//!
//! Some of the core still returns `anyhow::Result` (restore, build, prune), and the binaries add
//! `.context(..)`; such an error becomes [`Error::Context`]. Its code comes from
//! [`causes_exit`]: the outermost of its causes that belongs to a family decides, with
//! that family's `exit()`. The families it knows are listed once, in [`family_exit`], and each
//! has a test.

use crate::blocks::SourceError;
use crate::car::CarError;
use crate::closure::walk::WalkError;
use crate::events::EventError;
use crate::ipld::IpldError;
use crate::kubo::KuboError;
use crate::model::ModelError;
use crate::model::layout::FormatError;
use crate::pointer::PointerError;
use crate::report::{ErrorEntry, Exit, Failure};
use crate::shard::IdError;
use crate::snapshot::LoadError;
use crate::tips::IndexError;
use crate::unixfs::UnixfsError;

/// Here rather than beside [`ErrorEntry`] so that the report (the bottom layer) does not
/// import the error that gathers every family above it.
impl ErrorEntry {
    /// The entry for an error that ended a run: its class and its one-line message.
    pub fn from_error(err: &Error) -> Self {
        ErrorEntry {
            kind: err.exit(),
            message: crate::report::one_line(err),
            cid: None,
            role: None,
        }
    }
}

/// An error an arke-dr binary ends with. Display and `source()` are the wrapped error's, so the
/// one-line error message is the same whichever variant carries it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An outcome with an explicit code (locked, usage, "incomplete: 3 blocks missing").
    #[error(transparent)]
    Failure(#[from] Failure),
    #[error(transparent)]
    Kubo(#[from] KuboError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error(transparent)]
    Car(#[from] CarError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Pointer(#[from] PointerError),
    #[error(transparent)]
    Events(#[from] EventError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Ipld(#[from] IpldError),
    #[error(transparent)]
    Unixfs(#[from] UnixfsError),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An `anyhow` error (a core call that returns `anyhow::Result`, or context added by a
    /// binary); its code is [`causes_exit`]'s.
    #[error(transparent)]
    Context(#[from] anyhow::Error),
}

impl Error {
    /// An error with an explicit code and one line: a job step's refusal, a usage mistake.
    pub fn new(exit: Exit, message: impl Into<String>) -> Error {
        Error::Failure(Failure::new(exit, message))
    }

    /// The error and its causes on one line, each cause once (the log's and the record's).
    pub fn line(&self) -> String {
        crate::report::one_line(self)
    }

    /// The documented exit code for this error.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Failure(e) => e.exit,
            Error::Kubo(e) => e.exit(),
            Error::Source(e) => e.exit(),
            Error::Walk(e) => e.exit(),
            Error::Car(e) => e.exit(),
            Error::Index(e) => e.exit(),
            Error::Pointer(e) => e.exit(),
            Error::Events(e) => e.exit(),
            Error::Load(e) => e.exit(),
            Error::Format(e) => e.exit(),
            Error::Model(e) => e.exit(),
            Error::Ipld(e) => e.exit(),
            Error::Unixfs(e) => e.exit(),
            Error::Id(e) => e.exit(),
            Error::Io(_) => Exit::Io,
            Error::Context(e) => causes_exit(e.as_ref()),
        }
    }
}

/// The exit code of an error and its causes (outermost first): the first error that belongs
/// to a family of [`Error`] decides; an error with none is [`Exit::Failed`].
pub fn causes_exit(err: &(dyn std::error::Error + 'static)) -> Exit {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(x) = family_exit(e) {
            return x;
        }
        cur = e.source();
    }
    Exit::Failed
}

/// The `anyhow` edge: the families [`causes_exit`] recognises, one line each (the same list as
/// [`Error`]'s variants, tested in `every_family_at_the_anyhow_edge`).
fn family_exit(e: &(dyn std::error::Error + 'static)) -> Option<Exit> {
    fn code<T: std::error::Error + 'static>(
        e: &(dyn std::error::Error + 'static),
        exit: fn(&T) -> Exit,
    ) -> Option<Exit> {
        e.downcast_ref::<T>().map(exit)
    }
    code::<Error>(e, Error::exit)
        .or_else(|| code::<Failure>(e, |f| f.exit))
        .or_else(|| code::<KuboError>(e, KuboError::exit))
        .or_else(|| code::<SourceError>(e, SourceError::exit))
        .or_else(|| code::<WalkError>(e, WalkError::exit))
        .or_else(|| code::<CarError>(e, CarError::exit))
        .or_else(|| code::<IndexError>(e, IndexError::exit))
        .or_else(|| code::<PointerError>(e, PointerError::exit))
        .or_else(|| code::<EventError>(e, EventError::exit))
        .or_else(|| code::<LoadError>(e, LoadError::exit))
        .or_else(|| code::<FormatError>(e, FormatError::exit))
        .or_else(|| code::<ModelError>(e, ModelError::exit))
        .or_else(|| code::<IpldError>(e, IpldError::exit))
        .or_else(|| code::<UnixfsError>(e, UnixfsError::exit))
        .or_else(|| code::<IdError>(e, IdError::exit))
        .or_else(|| code::<std::io::Error>(e, |_| Exit::Io))
}

impl KuboError {
    /// Data absent or wrong is [`Exit::Failed`], a local file [`Exit::Io`], the rest is the
    /// node's fault ([`Exit::Node`]).
    pub fn exit(&self) -> Exit {
        match self {
            KuboError::NotFound { .. }
            | KuboError::BlockMissing { .. }
            | KuboError::CidMismatch { .. } => Exit::Failed,
            KuboError::Io { .. } => Exit::Io,
            KuboError::Unreachable { .. }
            | KuboError::Timeout { .. }
            | KuboError::Auth { .. }
            | KuboError::Api { .. }
            | KuboError::Stream { .. }
            | KuboError::BadResponse { .. } => Exit::Node,
        }
    }
}

impl SourceError {
    pub fn exit(&self) -> Exit {
        match self {
            SourceError::Node(k) => k.exit(),
            SourceError::Missing { .. }
            | SourceError::Corrupt { .. }
            | SourceError::Unverifiable { .. } => Exit::Failed,
        }
    }
}

impl WalkError {
    pub fn exit(&self) -> Exit {
        match self {
            WalkError::Source { source, .. } => source.exit(),
            WalkError::Sink(_) => Exit::Io,
        }
    }
}

impl CarError {
    /// Only the file system failing is [`Exit::Io`]; a bad file is [`Exit::Failed`].
    pub fn exit(&self) -> Exit {
        match self {
            CarError::Io { .. } => Exit::Io,
            CarError::NotCar { .. }
            | CarError::BadHeader { .. }
            | CarError::UnsupportedVersion(_)
            | CarError::NoRoots
            | CarError::TruncatedVarint { .. }
            | CarError::BadVarint { .. }
            | CarError::TruncatedSection { .. }
            | CarError::SectionTooLarge { .. }
            | CarError::BadCid { .. }
            | CarError::ZeroLengthSection { .. }
            | CarError::V2 { .. }
            | CarError::BlockTooLarge { .. }
            | CarError::AfterError { .. } => Exit::Failed,
        }
    }
}

impl IndexError {
    pub fn exit(&self) -> Exit {
        match self {
            IndexError::Node { source, .. } => source.exit(),
            IndexError::Car { source, .. } => source.exit(),
            IndexError::Io(_) => Exit::Io,
            IndexError::Missing { .. } | IndexError::Corrupt { .. } | IndexError::Bad { .. } => {
                Exit::Failed
            }
        }
    }
}

impl PointerError {
    pub fn exit(&self) -> Exit {
        match self {
            PointerError::Node { source, .. } => source.exit(),
            PointerError::Invalid { source, .. } => source.exit(),
            PointerError::Contended { .. } => Exit::Failed,
            PointerError::Ambiguous { .. } => Exit::Usage,
        }
    }
}

impl EventError {
    pub fn exit(&self) -> Exit {
        match self {
            EventError::Fetch { source, .. } => source.exit(),
            EventError::Decode { .. } | EventError::Cycle { .. } => Exit::Failed,
        }
    }
}

impl LoadError {
    pub fn exit(&self) -> Exit {
        match self {
            LoadError::Fetch { source, .. } => source.exit(),
            LoadError::Decode { .. } | LoadError::Inconsistent { .. } => Exit::Failed,
        }
    }
}

impl FormatError {
    pub fn exit(&self) -> Exit {
        match self {
            FormatError::CidTooLong { .. }
            | FormatError::BlockTooLarge { .. }
            | FormatError::Encode { .. } => Exit::Failed,
        }
    }
}

impl ModelError {
    /// Data that does not match its schema.
    pub fn exit(&self) -> Exit {
        Exit::Failed
    }
}

impl IpldError {
    pub fn exit(&self) -> Exit {
        match self {
            IpldError::UnsupportedCodec { .. }
            | IpldError::Decode { .. }
            | IpldError::Encode(_)
            | IpldError::InvalidCid { .. } => Exit::Failed,
        }
    }
}

impl UnixfsError {
    pub fn exit(&self) -> Exit {
        match self {
            UnixfsError::Malformed { .. }
            | UnixfsError::MultiBlock { .. }
            | UnixfsError::Codec { .. }
            | UnixfsError::MissingChunk { .. }
            | UnixfsError::TooLarge { .. } => Exit::Failed,
        }
    }
}

impl IdError {
    pub fn exit(&self) -> Exit {
        match self {
            IdError::Empty
            | IdError::TooLong { .. }
            | IdError::TooShort { .. }
            | IdError::BadChar { .. } => Exit::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::Cid;

    fn cid() -> Cid {
        crate::ipld::parse_cid("bafkqaaa").unwrap()
    }

    fn kubo_unreachable() -> KuboError {
        KuboError::Unreachable {
            url: "http://x".into(),
            reason: "refused".into(),
        }
    }

    fn kubo_missing() -> KuboError {
        KuboError::BlockMissing {
            cid: "bafy".into(),
            message: "not found".into(),
        }
    }

    fn io() -> std::io::Error {
        std::io::Error::other("disk full")
    }

    /// One error of every family (and, for a family that wraps another, a wrapped node error),
    /// with the code it must get.
    fn families() -> Vec<(Error, Exit)> {
        vec![
            (Failure::new(Exit::Locked, "locked").into(), Exit::Locked),
            (Failure::new(Exit::Usage, "bad flag").into(), Exit::Usage),
            (kubo_unreachable().into(), Exit::Node),
            (
                KuboError::Timeout {
                    call: "block/get",
                    arg: "bafy".into(),
                    reason: "slow".into(),
                }
                .into(),
                Exit::Node,
            ),
            (kubo_missing().into(), Exit::Failed),
            (
                KuboError::Io {
                    call: "dag/import",
                    path: "/tmp/x.car".into(),
                    source: io(),
                }
                .into(),
                Exit::Io,
            ),
            (SourceError::Corrupt { cid: cid() }.into(), Exit::Failed),
            (SourceError::Node(kubo_unreachable()).into(), Exit::Node),
            (
                WalkError::Source {
                    cid: cid(),
                    role: "snapshot".into(),
                    source: kubo_unreachable(),
                }
                .into(),
                Exit::Node,
            ),
            (WalkError::Sink(io()).into(), Exit::Io),
            (
                CarError::Io {
                    offset: 0,
                    source: io(),
                }
                .into(),
                Exit::Io,
            ),
            (CarError::NoRoots.into(), Exit::Failed),
            (
                IndexError::Node {
                    root: "/arke/index".into(),
                    source: kubo_unreachable(),
                }
                .into(),
                Exit::Node,
            ),
            (IndexError::Io(io()).into(), Exit::Io),
            (
                IndexError::Bad {
                    path: "p".into(),
                    reason: "r".into(),
                }
                .into(),
                Exit::Failed,
            ),
            (
                PointerError::Node {
                    path: "/arke/index_pointer".into(),
                    source: kubo_unreachable(),
                }
                .into(),
                Exit::Node,
            ),
            (
                PointerError::Contended {
                    path: "p".into(),
                    attempts: 3,
                }
                .into(),
                Exit::Failed,
            ),
            (
                EventError::Fetch {
                    cid: cid(),
                    walked: 1,
                    source: SourceError::Node(kubo_unreachable()),
                }
                .into(),
                Exit::Node,
            ),
            (
                EventError::Cycle {
                    cid: cid(),
                    walked: 2,
                }
                .into(),
                Exit::Failed,
            ),
            (
                LoadError::Fetch {
                    snapshot: cid(),
                    role: "chunk".into(),
                    cid: cid(),
                    source: SourceError::Missing {
                        cid: cid(),
                        message: "gone".into(),
                    },
                }
                .into(),
                Exit::Failed,
            ),
            (
                FormatError::Encode {
                    what: "w".into(),
                    reason: "r".into(),
                }
                .into(),
                Exit::Failed,
            ),
            (
                ModelError::NoSchema {
                    expected: "snapshot",
                }
                .into(),
                Exit::Failed,
            ),
            (IpldError::Encode("x".into()).into(), Exit::Failed),
            (
                UnixfsError::Codec {
                    cid: cid(),
                    codec: 0x55,
                }
                .into(),
                Exit::Failed,
            ),
            (IdError::Empty.into(), Exit::Failed),
            (io().into(), Exit::Io),
            (anyhow::anyhow!("something else").into(), Exit::Failed),
        ]
    }

    #[test]
    fn every_family_has_its_code() {
        for (err, want) in families() {
            assert_eq!(err.exit(), want, "{err:?}");
        }
    }

    /// The same errors behind `anyhow` context, as the binaries see them: the edge table
    /// recognises every family and gives the same code.
    #[test]
    fn every_family_at_the_anyhow_edge() {
        for (err, want) in families() {
            let shown = err.to_string();
            let wrapped: anyhow::Error = match err {
                Error::Context(a) => a.context("outer"),
                Error::Failure(f) => anyhow::Error::new(f).context("outer"),
                Error::Kubo(e) => anyhow::Error::new(e).context("outer"),
                Error::Source(e) => anyhow::Error::new(e).context("outer"),
                Error::Walk(e) => anyhow::Error::new(e).context("outer"),
                Error::Car(e) => anyhow::Error::new(e).context("outer"),
                Error::Index(e) => anyhow::Error::new(e).context("outer"),
                Error::Pointer(e) => anyhow::Error::new(e).context("outer"),
                Error::Events(e) => anyhow::Error::new(e).context("outer"),
                Error::Load(e) => anyhow::Error::new(e).context("outer"),
                Error::Format(e) => anyhow::Error::new(e).context("outer"),
                Error::Model(e) => anyhow::Error::new(e).context("outer"),
                Error::Ipld(e) => anyhow::Error::new(e).context("outer"),
                Error::Unixfs(e) => anyhow::Error::new(e).context("outer"),
                Error::Id(e) => anyhow::Error::new(e).context("outer"),
                Error::Io(e) => anyhow::Error::new(e).context("outer"),
            };
            let top = Error::from(wrapped);
            assert_eq!(top.exit(), want, "{shown}");
            assert_eq!(causes_exit(&top), want, "{shown}");
            // The message keeps the context and the cause.
            let line = crate::report::one_line(&top);
            assert!(line.starts_with("outer: "), "{line}");
            assert!(line.contains(&shown), "{line}");
        }
    }

    #[test]
    fn a_typed_error_deeper_than_an_unknown_one_decides() {
        #[derive(Debug, thiserror::Error)]
        #[error("opaque: {0}")]
        struct Opaque(#[source] KuboError);
        let e = anyhow::Error::new(Opaque(kubo_unreachable())).context("reading the pointer");
        assert_eq!(Error::from(e).exit(), Exit::Node);
    }
}
