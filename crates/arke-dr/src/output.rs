//! stdout is for results only. A closed pipe (`| head`) is not an error worth a stack of
//! messages: it ends the output quietly, as Unix tools do.

use std::io::Write;

/// Prints one line of result on stdout.
pub fn print_line(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let r = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    ignore_broken_pipe(r)
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> std::io::Result<()> {
    let s = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    print_line(&s)
}

fn ignore_broken_pipe(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A run's start, for the `--json` envelope (`arke_core::Report`).
#[derive(Debug, Clone)]
pub struct Started {
    tool: &'static str,
    at: chrono::DateTime<chrono::Utc>,
    clock: std::time::Instant,
}

impl Started {
    pub fn now(tool: &'static str) -> Started {
        Started {
            tool,
            at: chrono::Utc::now(),
            clock: std::time::Instant::now(),
        }
    }

    /// The envelope around `result`: status and exit code from `exit`, each error finding as
    /// an error entry (class `failed`, with its CID and role).
    pub fn envelope<T>(
        &self,
        exit: arke_core::Exit,
        result: T,
        findings: &[&arke_core::Finding],
    ) -> arke_core::Report<T> {
        let (status, exit_code, finished_at, duration_ms, errors) = self.closing(exit, findings);
        arke_core::Report {
            schema_version: arke_core::REPORT_SCHEMA_VERSION,
            tool: self.tool.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            status,
            exit_code,
            started_at: rfc3339(self.at),
            finished_at,
            duration_ms,
            result,
            errors,
        }
    }

    fn closing(
        &self,
        exit: arke_core::Exit,
        findings: &[&arke_core::Finding],
    ) -> (
        arke_core::Status,
        u8,
        String,
        u64,
        Vec<arke_core::ErrorEntry>,
    ) {
        let status = if exit == arke_core::Exit::Ok {
            arke_core::Status::Ok
        } else {
            arke_core::Status::Failed
        };
        let errors = findings
            .iter()
            .filter(|f| f.severity == arke_core::Severity::Error)
            .map(|f| arke_core::ErrorEntry {
                kind: arke_core::Exit::Failed,
                message: f.message.clone(),
                cid: f.cid.clone(),
                role: f.role.clone(),
            })
            .collect();
        let duration = u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        (
            status,
            exit.code(),
            rfc3339(chrono::Utc::now()),
            duration,
            errors,
        )
    }

    /// The envelope written as a stream, for a result too large to hold: `open` writes the
    /// envelope's first keys and `"result":`, the caller writes the result's JSON value, and
    /// `close` writes the rest. The keys are the same as [`Started::envelope`]'s.
    pub fn open_stream(&self, out: &mut impl Write) -> std::io::Result<()> {
        write!(
            out,
            "{{\"schema_version\":{},\"tool\":{},\"version\":{},\"started_at\":{},\"result\":",
            arke_core::REPORT_SCHEMA_VERSION,
            serde_json::Value::from(self.tool),
            serde_json::Value::from(env!("CARGO_PKG_VERSION")),
            serde_json::Value::from(rfc3339(self.at)),
        )
    }

    pub fn close_stream(
        &self,
        out: &mut impl Write,
        exit: arke_core::Exit,
        findings: &[&arke_core::Finding],
    ) -> std::io::Result<()> {
        let (status, exit_code, finished_at, duration_ms, errors) = self.closing(exit, findings);
        let rest = serde_json::json!({
            "status": status,
            "exit_code": exit_code,
            "finished_at": finished_at,
            "duration_ms": duration_ms,
            "errors": errors,
        });
        let rest = rest.to_string();
        // `{"status":…}` without its opening brace: the envelope's remaining keys.
        writeln!(out, ",{}", rest.strip_prefix('{').unwrap_or(&rest))?;
        out.flush()
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// stdout for a streamed result, a closed pipe ending it quietly (see [`print_line`]).
pub fn stdout_stream() -> impl Write {
    QuietPipe(std::io::BufWriter::new(std::io::stdout()))
}

struct QuietPipe<W>(W);

impl<W: Write> Write for QuietPipe<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(buf.len()),
            other => other,
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        ignore_broken_pipe(self.0.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed envelope reads back as the same `Report` the whole one is.
    #[test]
    fn a_streamed_envelope_is_a_report() {
        let started = Started::now("inspect-archive");
        let finding = arke_core::Finding {
            severity: arke_core::Severity::Error,
            kind: arke_core::FindingKind::Missing,
            id: None,
            cid: Some("bafkreiaaaa".into()),
            role: Some("entity X v2, component a.txt".into()),
            message: "missing".into(),
        };
        let mut out = Vec::new();
        started.open_stream(&mut out).unwrap();
        out.extend_from_slice(br#"{"entities":[{"id":"A"}],"entity_count":1}"#);
        started
            .close_stream(&mut out, arke_core::Exit::Failed, &[&finding])
            .unwrap();
        let streamed: arke_core::Report<serde_json::Value> = serde_json::from_slice(&out).unwrap();
        let whole = started.envelope(
            arke_core::Exit::Failed,
            serde_json::json!({"entities": [{"id": "A"}], "entity_count": 1}),
            &[&finding],
        );
        assert_eq!(streamed.result, whole.result);
        assert_eq!(streamed.errors, whole.errors);
        assert_eq!(streamed.errors[0].role, finding.role);
        assert_eq!(streamed.status, arke_core::Status::Failed);
        assert_eq!(streamed.exit_code, 1);
        assert_eq!(streamed.tool, "inspect-archive");
        assert_eq!(streamed.schema_version, arke_core::REPORT_SCHEMA_VERSION);
    }
}
