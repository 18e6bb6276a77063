//! A TCP proxy in front of a plain-HTTP Kubernetes API server that records the permission each
//! request needs, for processes (the listener binary) whose client cannot be wrapped in a
//! [`crate::access::RecordLayer`]. HTTP/1.1 only, as the test server speaks: request heads are
//! parsed, bodies forwarded by `Content-Length`, responses (watch streams included) piped back.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf},
    task::JoinHandle,
};

use crate::access::{Recorded, needed};

/// A running proxy.
pub struct RecordingProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// What the requests through it needed.
    pub recorded: Recorded,
    task: JoinHandle<()>,
}

impl RecordingProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let recorded = Recorded::default();
        let task = tokio::spawn({
            let recorded = recorded.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(connection(client, upstream, recorded.clone()));
                }
            }
        });
        Ok(Self { addr, recorded, task })
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The parts of a request head that say what it needs and how long its body is.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query, empty if none.
    pub query: String,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Length` (0 if absent).
    pub content_length: usize,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

/// Parses an HTTP/1.1 request head (up to and including the blank line).
pub fn parse_head(head: &str) -> Option<Head> {
    let mut lines = head.split("\r\n");
    let mut request = lines.next()?.split(' ');
    let method = request.next()?.to_owned();
    let target = request.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut parsed = Head {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        content_type: None,
        content_length: 0,
        chunked: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => parsed.content_type = Some(value.to_owned()),
            "content-length" => parsed.content_length = value.parse().ok()?,
            "transfer-encoding" => parsed.chunked = value.eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    Some(parsed)
}

async fn connection(client: TcpStream, upstream: SocketAddr, recorded: Recorded) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let responses = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let _ = requests(client_read, &mut server_write, &recorded).await;
    let _ = server_write.shutdown().await;
    let _ = responses.await;
}

async fn requests(
    mut client: OwnedReadHalf,
    server: &mut tokio::net::tcp::OwnedWriteHalf,
    recorded: &Recorded,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if client.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let head = parse_head(&String::from_utf8_lossy(&buf[..end]))
            .ok_or_else(|| std::io::Error::other("not an HTTP/1.1 request head"))?;
        recorded.add(needed(
            &head.method,
            &head.path,
            &head.query,
            head.content_type.as_deref(),
        ));
        server.write_all(&buf[..end]).await?;
        buf.drain(..end);
        if head.chunked {
            // Not sent by the clients under test; pass the rest through unparsed.
            server.write_all(&buf).await?;
            tokio::io::copy(&mut client, server).await?;
            return Ok(());
        }
        let mut remaining = head.content_length;
        while remaining > 0 {
            if buf.is_empty() && client.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
            let take = remaining.min(buf.len());
            server.write_all(&buf[..take]).await?;
            buf.drain(..take);
            remaining -= take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_gives_method_target_and_body_length() {
        let head = parse_head(
            "PATCH /apis/a/v1/namespaces/n/x/y?fieldManager=m HTTP/1.1\r\nhost: h\r\nContent-Type: application/merge-patch+json\r\ncontent-length: 12\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.method, "PATCH");
        assert_eq!(head.path, "/apis/a/v1/namespaces/n/x/y");
        assert_eq!(head.query, "fieldManager=m");
        assert_eq!(head.content_type.as_deref(), Some("application/merge-patch+json"));
        assert_eq!(head.content_length, 12);
        assert!(!head.chunked);
        let get = parse_head("GET /api/v1/pods HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((get.query.as_str(), get.content_length), ("", 0));
        assert!(parse_head("GET /x HTTP/1.1\r\ncontent-length: many\r\n\r\n").is_none());
    }
}
