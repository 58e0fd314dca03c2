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
    let provider = ProviderConfig::default().with_http_client(crate::http_client().ok()?);
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

    /// A minimal IMDSv2: a token from `PUT /latest/api/token` (with its TTL header), then the
    /// instance id only for requests that carry the token (IMDSv1 disabled).
    async fn fake_imds(answer: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let h = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let (status, body, extra) = if h.starts_with("put /latest/api/token")
                        && h.contains("x-aws-ec2-metadata-token-ttl-seconds:")
                    {
                        (
                            "200 OK",
                            "TOKEN-1",
                            "x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n",
                        )
                    } else if h.starts_with("get /latest/meta-data/instance-id")
                        && h.contains("x-aws-ec2-metadata-token: token-1")
                    {
                        ("200 OK", answer, "")
                    } else {
                        ("401 Unauthorized", "", "")
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = c.write_all(resp.as_bytes()).await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn imdsv2_token_then_instance_id() {
        let url = fake_imds("i-0abc123def4567890").await;
        assert_eq!(
            instance_id(&url).await.as_deref(),
            Some("i-0abc123def4567890")
        );
        let url = fake_imds("<html>captive portal</html>").await;
        assert_eq!(instance_id(&url).await, None);
    }
}
