//! A minimal keep-alive HTTP/1.1 client for the load generators (`cashback bench`).
//!
//! One request in flight per connection, no pipelining. Each request is written with one
//! `write` from a buffer the caller reuses; the answer is read into a reusable buffer and
//! its head parsed with `httparse` (the parser hyper itself uses). Only `Content-Length`
//! bodies are understood (every answer of `cashback serve` has one); anything else is an
//! error, as is an answer that does not fit in [`MAX_ANSWER`].
//!
//! Why not hyper's client: on this 2-core machine the generator shares the cores with the
//! server, and hyper's connection task, channel and header map cost 21–41 µs of CPU per
//! request (docs/benchmarks.md), a third of what a ranking request costs the server. This
//! client needs one `write` and usually one `read` per request, on the caller's task.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest answer (head + body) accepted.
pub const MAX_ANSWER: usize = 4 << 20;

/// Append a request to `out`: `method path`, `Host`, an optional `Authorization` value, and a JSON
/// body with its length when `body` is not empty (an empty `PUT` carries `Content-Length: 0`).
pub fn write_request(out: &mut Vec<u8>, method: &str, path: &str, authorization: Option<&[u8]>, body: &[u8]) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    if let Some(a) = authorization {
        out.extend_from_slice(b"authorization: ");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() {
        out.extend_from_slice(b"content-type: application/json\r\n");
    }
    if !body.is_empty() || method != "GET" {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// A parsed answer; `body` borrows the connection's buffer until the next request.
#[derive(Debug)]
pub struct Answer<'a> {
    pub status: u16,
    /// A `Retry-After` header was present.
    pub retry_after: bool,
    pub body: &'a [u8],
}

/// One keep-alive connection.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, buf: Vec::with_capacity(16 << 10), closed: false })
    }

    /// The last answer said `Connection: close`: connect again before the next request.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Send one complete request (from [`write_request`]) and read its answer. After an error
    /// the connection must be dropped.
    pub async fn exchange(&mut self, request: &[u8]) -> io::Result<Answer<'_>> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let (status, retry_after, head, body_len, close) = loop {
            if self.buf.len() == self.buf.capacity() {
                if self.buf.len() >= MAX_ANSWER {
                    return Err(invalid("answer head too large"));
                }
                self.buf.reserve(self.buf.len());
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the server"));
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf).map_err(|e| invalid(&format!("bad answer head: {e}")))? {
                httparse::Status::Partial => continue,
                httparse::Status::Complete(head) => {
                    let status = resp.code.ok_or_else(|| invalid("no status"))?;
                    let (mut len, mut retry_after, mut close) = (None, false, false);
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let v = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
                            len = Some(v.ok_or_else(|| invalid("bad content-length"))?);
                        } else if h.name.eq_ignore_ascii_case("retry-after") {
                            retry_after = true;
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            return Err(invalid("transfer-encoding is not supported"));
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    let len = len.ok_or_else(|| invalid("no content-length"))?;
                    break (status, retry_after, head, len, close);
                }
            }
        };
        let total =
            head.checked_add(body_len).filter(|&t| t <= MAX_ANSWER).ok_or_else(|| invalid("answer too large"))?;
        while self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-body"));
            }
        }
        if self.buf.len() > total {
            return Err(invalid("bytes after the answer (the server pipelined?)"));
        }
        self.closed = close;
        Ok(Answer { status, retry_after, body: &self.buf[head..total] })
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn requests_are_well_formed() {
        let mut out = Vec::new();
        write_request(&mut out, "GET", "/a?b=1", Some(b"Bearer tok"), b"");
        assert_eq!(out, b"GET /a?b=1 HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer tok\r\n\r\n");
        out.clear();
        write_request(&mut out, "PUT", "/x", None, b"");
        assert_eq!(out, b"PUT /x HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n");
        out.clear();
        write_request(&mut out, "PATCH", "/x", None, b"{}");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        let head = match req.parse(&out).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial"),
        };
        assert_eq!(req.method, Some("PATCH"));
        assert_eq!(&out[head..], b"{}");
    }

    /// A server that answers in pieces, twice on one connection, then closes.
    #[tokio::test]
    async fn reads_split_answers_and_reports_a_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            for body in ["hello", "{\"a\":1}"] {
                let _ = s.read(&mut buf).await.unwrap();
                let answer =
                    format!("HTTP/1.1 429 Too Many\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                let (a, b) = answer.as_bytes().split_at(20);
                s.write_all(a).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                s.write_all(b).await.unwrap();
            }
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n").await.unwrap();
        });
        let mut c = RawConn::connect(addr).await.unwrap();
        let mut req = Vec::new();
        write_request(&mut req, "GET", "/", None, b"");
        let a = c.exchange(&req).await.unwrap();
        assert_eq!((a.status, a.retry_after, a.body), (429, true, &b"hello"[..]));
        let a = c.exchange(&req).await.unwrap();
        assert_eq!(a.body, b"{\"a\":1}");
        assert!(!c.closed());
        let e = c.exchange(&req).await.unwrap_err();
        assert!(e.to_string().contains("transfer-encoding"), "{e}");
        server.await.unwrap();
    }
}
