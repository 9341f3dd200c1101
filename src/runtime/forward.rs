//! Forwarding a dump to a syslog collector (`forward`) instead of writing it to a file.
//!
//! Each record of the dump (see `records`) is one syslog message, sent in order: datagrams to a
//! local socket (`unix://`, syslog(3)'s form) or over UDP (RFC 5426); over TCP (RFC 6587,
//! octet counting) and TLS (RFC 5425) each dump has a connection of its own. After the last
//! message the connection is half-closed and the collector's close awaited: a collector that
//! closes has read every byte, while one that died before reading them resets the connection,
//! so the dump counts as failed and its lines are kept. Runs on a writer lane of its own per
//! target, never on Prosody's thread.

use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::pure::forward_target::{ForwardTarget, Transport};
use crate::pure::options::{Output, SYSTEM_CA_FILE};
use crate::pure::records::{self, Framing, Wire};
use crate::pure::ring::Ring;

/// How long connecting, one write, or the collector's close may take...
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// ...and while Prosody shuts down, which waits for it.
pub(crate) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest datagram sent; longer messages are cut (RFC 5426 allows receivers to cut too).
const MAX_DATAGRAM: usize = 65_507;

/// A checked `forward` target, ready to send dumps to.
#[derive(Debug)]
pub(crate) struct Forwarder {
    pub(crate) target: ForwardTarget,
    tls: Option<Arc<ClientConfig>>,
}

impl Forwarder {
    /// The forwarder for `output.forward`, if any: a host name must resolve and a TLS
    /// collector's CA certificates must load. `Err` says why, for Prosody's log.
    pub(crate) fn new(output: &Output) -> Result<Option<Forwarder>, String> {
        let Some(target) = output.forward.clone() else { return Ok(None) };
        if target.transport != Transport::Unix {
            addresses(&target).map_err(|e| format!("cannot resolve '{}': {}", target.host, describe(&e)))?;
        }
        let tls = match target.transport {
            Transport::Tls => Some(tls_config(output.ca_file.as_deref().unwrap_or(SYSTEM_CA_FILE))?),
            _ => None,
        };
        Ok(Some(Forwarder { target, tls }))
    }

    /// Sends the dump's records, in order; `Err` if the collector may have missed any. Each
    /// step (connecting, a write, the collector's close) may take up to `timeout`.
    pub(crate) fn send(&self, framing: &Framing, lines: &Ring, timeout: Duration) -> io::Result<()> {
        match self.target.transport {
            Transport::Unix => {
                let socket = UnixDatagram::unbound()?;
                socket.set_write_timeout(Some(timeout))?;
                records::write(framing, Wire::Local, lines, |message| {
                    socket.send_to(&message[..message.len().min(MAX_DATAGRAM)], &self.target.host).map(drop)
                })
            }
            Transport::Udp => {
                let to = addresses(&self.target)?[0];
                let from: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
                let socket = UdpSocket::bind(from)?;
                socket.connect(to)?;
                socket.set_write_timeout(Some(timeout))?;
                records::write(framing, Wire::Network, lines, |message| {
                    socket.send(&message[..message.len().min(MAX_DATAGRAM)]).map(drop)
                })
            }
            Transport::Tcp => {
                let stream = connect(&self.target, timeout)?;
                let mut out = BufWriter::with_capacity(256 * 1024, &stream);
                records::write(framing, Wire::Network, lines, |message| framed(&mut out, message))?;
                out.flush()?;
                drop(out);
                stream.shutdown(Shutdown::Write)?;
                await_close(&mut &stream)
            }
            Transport::Tls => {
                let config = self.tls.clone().ok_or_else(|| io::Error::other("no TLS settings"))?;
                let name = ServerName::try_from(self.target.host.clone()).map_err(io::Error::other)?;
                let connection = ClientConnection::new(config, name).map_err(io::Error::other)?;
                let mut stream = StreamOwned::new(connection, connect(&self.target, timeout)?);
                let mut out = BufWriter::with_capacity(256 * 1024, &mut stream);
                records::write(framing, Wire::Network, lines, |message| framed(&mut out, message))?;
                out.flush()?;
                drop(out);
                stream.conn.send_close_notify();
                stream.flush()?;
                stream.sock.shutdown(Shutdown::Write)?;
                await_close(&mut stream)
            }
        }
    }
}

/// One message with RFC 6587's octet counting: `LEN SP MSG`.
fn framed(out: &mut impl Write, message: &[u8]) -> io::Result<()> {
    write!(out, "{} ", message.len())?;
    out.write_all(message)
}

/// Reads until the collector closes; its close (TLS's close_notify, or the connection's end)
/// shows that it read everything before it.
fn await_close(stream: &mut impl Read) -> io::Result<()> {
    let mut scratch = [0u8; 4096];
    loop {
        match stream.read(&mut scratch) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // A TLS peer may end the connection without close_notify once it has read all.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the collector did not close the connection"));
            }
            Err(e) => return Err(e),
        }
    }
}

fn addresses(target: &ForwardTarget) -> io::Result<Vec<SocketAddr>> {
    let found: Vec<SocketAddr> = (target.host.as_str(), target.port).to_socket_addrs()?.collect();
    match found.is_empty() {
        true => Err(io::Error::new(io::ErrorKind::NotFound, "no address")),
        false => Ok(found),
    }
}

/// A TCP connection to the first address of the target that answers.
fn connect(target: &ForwardTarget, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for address in addresses(target)? {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => {
                stream.set_write_timeout(Some(timeout))?;
                stream.set_read_timeout(Some(timeout))?;
                stream.set_nodelay(false)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// TLS settings that check the collector against the CA certificates in `ca_file` (PEM).
fn tls_config(ca_file: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let unreadable = |e: rustls::pki_types::pem::Error| match e {
        rustls::pki_types::pem::Error::Io(e) => format!("cannot read {ca_file}: {}", describe(&e)),
        e => format!("cannot read {ca_file}: {e}"),
    };
    for certificate in CertificateDer::pem_file_iter(ca_file).map_err(unreadable)? {
        let certificate = certificate.map_err(unreadable)?;
        roots.add(certificate).map_err(|e| format!("bad CA certificate in {ca_file}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("no CA certificate in {ca_file}"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An error as Prosody's log shows it: the C library's words for OS errors.
pub(crate) fn describe(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(_) => super::os::reason(error),
        None => error.to_string(),
    }
}

/// This machine's name for RFC 5424's HOSTNAME (`-` if it cannot be read).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::records::{Format, Identity};
    use crate::pure::ring::{Limit, Meta};
    use crate::runtime::test_dir::TestDir;
    use std::net::TcpListener;

    fn output(forward: &str) -> Output {
        Output {
            format: Format::Rfc5424,
            forward: Some(ForwardTarget::parse(forward).expect("target")),
            ca_file: None,
            app_name: "prosody".into(),
            facility: 3,
        }
    }

    fn framing() -> Framing {
        Framing {
            format: Format::Rfc5424,
            time: 1_700_000_000,
            notes: Vec::new(),
            id: "1-0".into(),
            reason: "test".into(),
            identity: Identity { hostname: "h".into(), app_name: "prosody".into(), pid: 1, facility: 3 },
        }
    }

    fn lines(count: usize) -> Ring {
        let mut ring = Ring::new(Limit::Lines(count));
        for n in 0..count {
            ring.push(format!("c2s{n}\tdebug\tline {n}\n").as_bytes(), Meta { time: 1_700_000_000, source_at: 0 });
        }
        ring
    }

    /// Splits octet-counted frames.
    fn frames(mut bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let space = bytes.iter().position(|&b| b == b' ').expect("length");
            let len: usize = std::str::from_utf8(&bytes[..space]).expect("digits").parse().expect("length");
            out.push(String::from_utf8(bytes[space + 1..space + 1 + len].to_vec()).expect("utf8"));
            bytes = &bytes[space + 1 + len..];
        }
        out
    }

    #[test]
    fn tcp_sends_octet_counted_messages_and_waits_for_the_close() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let reader = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut bytes = Vec::new();
            stream.read_to_end(&mut bytes).expect("read");
            bytes
        });
        let forwarder = Forwarder::new(&output(&format!("tcp://127.0.0.1:{port}"))).expect("ok").expect("some");
        forwarder.send(&framing(), &lines(3), IO_TIMEOUT).expect("sent");
        let got = frames(&reader.join().expect("reader"));
        assert_eq!(got.len(), 5, "begin, 3 lines, end: {got:?}");
        assert!(got[2].ends_with("c2s1 [ringbuffer@32473 dump=\"1-0\" seq=\"2\"] line 1"), "{}", got[2]);
    }

    #[test]
    fn a_collector_that_resets_fails_the_dump() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let closer = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            // Closing with unread bytes resets the connection: once some have come.
            stream.peek(&mut [0u8; 1]).expect("bytes to come");
            drop(stream);
        });
        let forwarder = Forwarder::new(&output(&format!("tcp://127.0.0.1:{port}"))).expect("ok").expect("some");
        assert!(forwarder.send(&framing(), &lines(20_000), IO_TIMEOUT).is_err());
        closer.join().expect("closer");
    }

    #[test]
    fn nobody_listening_is_an_error_at_once() {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let forwarder = Forwarder::new(&output(&format!("tcp://127.0.0.1:{port}"))).expect("ok").expect("some");
        let error = forwarder.send(&framing(), &lines(1), IO_TIMEOUT).expect_err("refused");
        assert_eq!(describe(&error), "Connection refused");
    }

    #[test]
    fn unix_datagrams_are_one_message_each() {
        let dir = TestDir::new("forward-unix");
        let path = dir.file("log.sock");
        let socket = UnixDatagram::bind(&path).expect("bind");
        let forwarder = Forwarder::new(&output(&format!("unix://{path}"))).expect("ok").expect("some");
        forwarder.send(&framing(), &lines(2), IO_TIMEOUT).expect("sent");
        let mut got = Vec::new();
        let mut buffer = [0u8; 4096];
        for _ in 0..4 {
            let n = socket.recv(&mut buffer).expect("recv");
            got.push(String::from_utf8(buffer[..n].to_vec()).expect("utf8"));
        }
        assert!(got[1].starts_with("<31>") && got[1].contains(" prosody[1]: c2s0 [ringbuffer@32473 "), "{}", got[1]);
    }

    #[test]
    fn bad_settings_are_found_when_the_sink_is_made() {
        let unresolvable = Forwarder::new(&output("tcp://no-such-host.invalid:514")).expect_err("unresolvable");
        assert!(unresolvable.contains("cannot resolve 'no-such-host.invalid'"), "{unresolvable}");
        let dir = TestDir::new("forward-ca");
        let empty = dir.file("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let mut tls = output("tls://127.0.0.1:6514");
        tls.ca_file = Some(empty.clone());
        assert_eq!(Forwarder::new(&tls).expect_err("no CA"), format!("no CA certificate in {empty}"));
        tls.ca_file = Some(dir.file("missing.pem"));
        assert!(Forwarder::new(&tls).expect_err("missing").starts_with("cannot read "));
    }
}
