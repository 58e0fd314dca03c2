//! The EC2 instance id, for the default prefix `backups/<instance-id>/`.

use std::time::Duration;

use aws_config::imds;
use aws_config::provider_config::ProviderConfig;

/// The instance id from the instance metadata service (IMDSv2: a session token first, since
/// IMDSv1 may be disabled), or `None` off EC2. `imds_base` is `http://169.254.169.254` in
/// production. Bounded: 2 s to connect and 2 s to answer, 3 attempts, 15 s in all. The answer
/// must look like an instance id (`i-` and hex), so that an odd proxy page never becomes a
/// folder name.
pub async fn instance_id(imds_base: &str) -> Option<String> {
    let provider = ProviderConfig::default().with_http_client(crate::http_client());
    let client = imds::Client::builder()
        .configure(&provider)
        .endpoint(imds_base)
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(2))
        .max_attempts(3)
        .build();
    let got = tokio::time::timeout(
        Duration::from_secs(15),
        client.get("/latest/meta-data/instance-id"),
    )
    .await;
    match got {
        Ok(Ok(id)) if is_instance_id(id.as_ref()) => Some(id.as_ref().to_string()),
        Ok(Ok(_)) => {
            tracing::warn!("IMDS answered something that is not an instance id");
            None
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "IMDS: no instance id");
            None
        }
        Err(_) => None,
    }
}

/// `^i-[0-9a-f]+$` (8 or 17 hex digits today; any length accepted, up to 32).
fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|hex| {
        !hex.is_empty()
            && hex.len() <= 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids() {
        assert!(is_instance_id("i-0123456789abcdef0") && is_instance_id("i-1234abcd"));
        for bad in [
            "",
            "i-",
            "i-XYZ",
            "i-0123 ",
            "<html>",
            "i-0123456789ABCDEF0",
            "x-123",
        ] {
            assert!(!is_instance_id(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_none_and_bounded() {
        // A loopback port nothing listens on: refused at once, three times, then None.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let t0 = std::time::Instant::now();
        assert_eq!(instance_id(&url).await, None);
        assert!(t0.elapsed() < Duration::from_secs(16));
    }
}
