//! The `forward` option's value: where a sink sends its dumps instead of a file.
//! `unix:///path`, `udp://host:port`, `tcp://host:port` or `tls://host:port`; an IPv6 address
//! is written in brackets (`tcp://[::1]:514`).

use std::fmt;

/// How dumps travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A local datagram socket such as `/dev/log`.
    Unix,
    /// RFC 5426.
    Udp,
    /// RFC 6587, octet counting.
    Tcp,
    /// RFC 5425.
    Tls,
}

/// A parsed `forward` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ForwardTarget {
    pub transport: Transport,
    /// The socket's path (unix), or the host name or address (without brackets).
    pub host: String,
    /// 0 for unix.
    pub port: u16,
}

/// What `forward` accepts, for error messages.
pub const ACCEPTED: &str = "\"unix:///path\", \"udp://host:port\", \"tcp://host:port\" or \"tls://host:port\"";

impl ForwardTarget {
    pub fn parse(text: &str) -> Result<ForwardTarget, String> {
        let (scheme, rest) = text.split_once("://").ok_or("no scheme")?;
        let transport = match scheme {
            "unix" => Transport::Unix,
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => return Err(format!("unknown scheme '{scheme}'")),
        };
        if transport == Transport::Unix {
            if !rest.starts_with('/') {
                return Err("a unix socket needs an absolute path".into());
            }
            return Ok(ForwardTarget { transport, host: rest.to_string(), port: 0 });
        }
        let (host, port) = rest.rsplit_once(':').ok_or("no port")?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or("unclosed '[' around the address")?,
            None if host.contains(':') => return Err("an IPv6 address must be written in brackets".into()),
            None => host,
        };
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return Err(format!("bad host '{host}'"));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("bad port '{port}'")),
        };
        Ok(ForwardTarget { transport, host: host.to_string(), port })
    }
}

impl fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Unix => return write!(f, "unix://{}", self.host),
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        match self.host.contains(':') {
            true => write!(f, "{scheme}://[{}]:{}", self.host, self.port),
            false => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for text in ["unix:///dev/log", "udp://127.0.0.1:514", "tcp://logs.example.org:601", "tls://[::1]:6514"] {
            assert_eq!(ForwardTarget::parse(text).expect(text).to_string(), text);
        }
        let tls = ForwardTarget::parse("tls://[::1]:6514").expect("parses");
        assert_eq!((tls.transport, tls.host.as_str(), tls.port), (Transport::Tls, "::1", 6514));
    }

    #[test]
    fn bad_targets_say_why() {
        for (text, why) in [
            ("/dev/log", "no scheme"),
            ("http://x:1", "unknown scheme 'http'"),
            ("unix://dev/log", "absolute path"),
            ("tcp://host", "no port"),
            ("tcp://host:0", "bad port '0'"),
            ("tcp://host:70000", "bad port '70000'"),
            ("tcp://:514", "bad host ''"),
            ("tcp://::1:514", "brackets"),
        ] {
            let error = ForwardTarget::parse(text).expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
