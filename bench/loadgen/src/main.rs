//! The load generator of `make bench-server`: `clients` XMPP c2s sessions on loopback that log
//! in for real (stream, SASL PLAIN, resource bind, initial presence), then send pre-built chat
//! messages, pipelined, to each other's bare JIDs: first `warmup` messages (untimed, they fill
//! the sinks), then the timed `messages`. The timed part ends when every message has arrived.
//!
//! It prints one line, `result key=value ...`: messages, seconds, messages/s, the CPU share of a
//! core that the server (`--server-pid`) and this process used during the timed part (from
//! /proc/<pid>/stat), and, with `--count-file`, the lines and bytes that file grew by meanwhile
//! (and its size before, all that was logged into it at login and during the warm-up).
//! `--before-timed` and `--after-timed` name shell commands run just before and after the timed
//! part (to start and stop a profiler). Each client has a writer and a reader thread; both only copy bytes, so the generator costs a
//! few per cent of a core while the server is at 100%.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Clock ticks per second of /proc/<pid>/stat times (Linux's USER_HZ, 100 on every architecture
/// Debian builds for).
const CLOCK_TICKS: f64 = 100.0;

/// What the command line says.
struct Options {
    port: u16,
    host: String,
    clients: usize,
    messages: usize,
    warmup: usize,
    password: String,
    server_pid: u32,
    count_file: Option<String>,
    timeout: Duration,
    before_timed: Option<String>,
    after_timed: Option<String>,
}

fn parse_options() -> Result<Options, String> {
    let mut map = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(key) = args.next() {
        let name = key.strip_prefix("--").ok_or_else(|| format!("unexpected argument {key}"))?.to_string();
        let value = args.next().ok_or_else(|| format!("{key} needs a value"))?;
        map.insert(name, value);
    }
    fn number<T: std::str::FromStr>(map: &HashMap<String, String>, key: &str, default: Option<T>) -> Result<T, String> {
        match map.get(key) {
            Some(text) => text.parse().map_err(|_| format!("--{key}: not a number: {text}")),
            None => default.ok_or_else(|| format!("--{key} is required")),
        }
    }
    let options = Options {
        port: number(&map, "port", None)?,
        host: map.get("host").cloned().unwrap_or_else(|| "localhost".to_string()),
        clients: number(&map, "clients", Some(20))?,
        messages: number(&map, "messages", Some(20000))?,
        warmup: number(&map, "warmup", Some(2000))?,
        password: map.get("password").cloned().unwrap_or_else(|| "bench".to_string()),
        server_pid: number(&map, "server-pid", None)?,
        count_file: map.get("count-file").cloned(),
        timeout: Duration::from_secs(number(&map, "timeout", Some(300))?),
        before_timed: map.get("before-timed").cloned(),
        after_timed: map.get("after-timed").cloned(),
    };
    if options.clients < 2 {
        return Err("--clients must be at least 2".to_string());
    }
    Ok(options)
}

/// Standard base64 of `data` (for SASL PLAIN).
fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads from `stream` into `buffer` until it contains `marker`; fails on `<failure`, errors, EOF.
fn read_until(stream: &mut TcpStream, buffer: &mut Vec<u8>, marker: &str) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(buffer);
        if text.contains(marker) {
            buffer.clear();
            return Ok(());
        }
        if text.contains("<failure") || text.contains("<stream:error") {
            return Err(format!("server refused: {text}"));
        }
        let n = stream.read(&mut chunk).map_err(|e| format!("read while waiting for {marker}: {e}"))?;
        if n == 0 {
            return Err(format!("connection closed while waiting for {marker}: {text}"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn stream_header(host: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{host}' version='1.0'>"
    )
}

/// Logs user `u<index>` in: stream, SASL PLAIN, restart, bind, initial presence, and a ping
/// round trip so that the presence has been handled before any message is sent to this user.
fn login(options: &Options, index: usize) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", options.port))
        .map_err(|e| format!("connect to port {}: {e}", options.port))?;
    stream.set_nodelay(true).map_err(|e| format!("set_nodelay: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| format!("set_read_timeout: {e}"))?;
    let mut buffer = Vec::new();
    let send =
        |stream: &mut TcpStream, text: &str| stream.write_all(text.as_bytes()).map_err(|e| format!("write: {e}"));
    send(&mut stream, &stream_header(&options.host))?;
    read_until(&mut stream, &mut buffer, "</stream:features>")?;
    let user = format!("u{index}");
    let credentials = base64(format!("\0{user}\0{}", options.password).as_bytes());
    send(
        &mut stream,
        &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"),
    )?;
    read_until(&mut stream, &mut buffer, "<success")?;
    send(&mut stream, &stream_header(&options.host))?;
    read_until(&mut stream, &mut buffer, "</stream:features>")?;
    send(&mut stream, "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>")?;
    read_until(&mut stream, &mut buffer, "</iq>")?;
    send(&mut stream, "<presence/><iq type='get' id='barrier1'><ping xmlns='urn:xmpp:ping'/></iq>")?;
    read_until(&mut stream, &mut buffer, "barrier1")?;
    stream.set_read_timeout(Some(options.timeout)).map_err(|e| format!("set_read_timeout: {e}"))?;
    Ok(stream)
}

/// The messages client `index` sends in one phase: `count` chats to the other users in turn.
fn build_messages(options: &Options, index: usize, phase: &str, count: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0..count {
        let to = (index + 1 + k % (options.clients - 1)) % options.clients;
        out.extend_from_slice(
            format!(
                "<message to='u{to}@{}' type='chat' id='{phase}{k}'><body>Message {k} from u{index}: \
                 how is the weather where you are?</body></message>",
                options.host
            )
            .as_bytes(),
        );
    }
    out
}

/// Counts delivered chat messages (the end of their only child and of the message,
/// `</body></message>`, which an error bounce lacks) in a byte stream that arrives in chunks.
struct Counter {
    /// The last bytes of the previous chunk, shorter than the pattern, and the new chunk.
    window: Vec<u8>,
    count: usize,
}

impl Counter {
    const PATTERN: &'static [u8] = b"</body></message>";

    fn feed(&mut self, bytes: &[u8]) {
        self.window.extend_from_slice(bytes);
        self.count += self.window.windows(Self::PATTERN.len()).filter(|w| *w == Self::PATTERN).count();
        let keep = self.window.len().min(Self::PATTERN.len() - 1);
        self.window.drain(..self.window.len() - keep);
    }
}

/// utime + stime of process `pid`, in seconds.
fn cpu_seconds(pid: &str) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = text.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| format!("{path}: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let field = |i: usize| -> Result<f64, String> {
        fields.get(i).and_then(|f| f.parse::<f64>().ok()).ok_or_else(|| format!("{path}: no field {}", i + 3))
    };
    Ok((field(11)? + field(12)?) / CLOCK_TICKS)
}

fn file_size(path: &str) -> Result<u64, String> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| format!("{path}: {e}"))
}

/// Newlines in `path` between byte offsets `from` and `to`.
fn count_lines(path: &str, from: u64, to: u64) -> Result<u64, String> {
    let mut file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    file.seek(SeekFrom::Start(from)).map_err(|e| format!("{path}: {e}"))?;
    let mut left = to.saturating_sub(from);
    let mut chunk = vec![0u8; 1 << 16];
    let mut lines = 0;
    while left > 0 {
        let want = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        let n = file.read(&mut chunk[..want]).map_err(|e| format!("{path}: {e}"))?;
        if n == 0 {
            break;
        }
        lines += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        left -= n as u64;
    }
    Ok(lines)
}

/// Runs shell command `command` (profiling hooks around the timed part) and waits for it.
fn hook(command: &Option<String>) -> Result<(), String> {
    let Some(command) = command else { return Ok(()) };
    let status =
        std::process::Command::new("sh").arg("-c").arg(command).status().map_err(|e| format!("hook {command}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("hook {command} failed: {status}"))
    }
}

fn run() -> Result<(), String> {
    let options = parse_options()?;
    let per_client_warmup = options.warmup / options.clients;
    let per_client = options.messages / options.clients;
    let mut streams = Vec::new();
    for index in 0..options.clients {
        streams.push(login(&options, index).map_err(|e| format!("client u{index}: {e}"))?);
    }
    // Each reader reports (phase) when its count reaches the end of the warm-up, then of the run.
    let (done_tx, done_rx) = mpsc::channel::<Result<usize, String>>();
    let mut writers = Vec::new();
    for (index, stream) in streams.iter().enumerate() {
        let mut reader = stream.try_clone().map_err(|e| format!("clone socket: {e}"))?;
        let done = done_tx.clone();
        let targets = [per_client_warmup, per_client_warmup + per_client];
        thread::spawn(move || {
            let mut counter = Counter { window: Vec::with_capacity(1 << 17), count: 0 };
            let mut chunk = vec![0u8; 1 << 16];
            let mut phase = 0;
            while phase < targets.len() {
                while phase < targets.len() && counter.count >= targets[phase] {
                    let _ = done.send(Ok(phase));
                    phase += 1;
                }
                if phase == targets.len() {
                    break;
                }
                match reader.read(&mut chunk) {
                    Ok(0) => {
                        let _ = done.send(Err(format!("client u{index}: server closed the connection")));
                        return;
                    }
                    Ok(n) => counter.feed(&chunk[..n]),
                    Err(e) => {
                        let _ = done.send(Err(format!("client u{index}: read: {e}")));
                        return;
                    }
                }
            }
        });
        writers.push(stream.try_clone().map_err(|e| format!("clone socket: {e}"))?);
    }
    drop(done_tx);
    let wait_phase = |what: &str| -> Result<(), String> {
        for _ in 0..options.clients {
            match done_rx.recv_timeout(options.timeout) {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(format!("{what}: not every message arrived within {:?}", options.timeout)),
            }
        }
        Ok(())
    };
    let send_phase = |phase: &str, count: usize| -> Vec<thread::JoinHandle<Result<(), String>>> {
        writers
            .iter()
            .enumerate()
            .map(|(index, stream)| {
                let data = build_messages(&options, index, phase, count);
                let stream = stream.try_clone();
                thread::spawn(move || {
                    let mut stream = stream.map_err(|e| format!("clone socket: {e}"))?;
                    stream.write_all(&data).map_err(|e| format!("client u{index}: write: {e}"))
                })
            })
            .collect()
    };
    let join = |handles: Vec<thread::JoinHandle<Result<(), String>>>| -> Result<(), String> {
        for handle in handles {
            handle.join().map_err(|_| "writer thread panicked".to_string())??;
        }
        Ok(())
    };

    let handles = send_phase("w", per_client_warmup);
    wait_phase("warm-up")?;
    join(handles)?;

    hook(&options.before_timed)?;
    let server_pid = options.server_pid.to_string();
    let count_from = match &options.count_file {
        Some(path) => Some(file_size(path)?),
        None => None,
    };
    let server_before = cpu_seconds(&server_pid)?;
    let own_before = cpu_seconds("self")?;
    let start = Instant::now();
    let handles = send_phase("m", per_client);
    wait_phase("timed part")?;
    let seconds = start.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(&server_pid)? - server_before;
    let own_cpu = cpu_seconds("self")? - own_before;
    join(handles)?;
    hook(&options.after_timed)?;
    let messages = per_client * options.clients;
    let mut line = format!(
        "result messages={messages} seconds={seconds:.4} rate={:.1} server_cpu={:.3} generator_cpu={:.3}",
        messages as f64 / seconds,
        server_cpu / seconds,
        own_cpu / seconds
    );
    if let (Some(path), Some(from)) = (&options.count_file, count_from) {
        let to = file_size(path)?;
        line.push_str(&format!(
            " count_lines={} count_bytes={} count_before_bytes={from}",
            count_lines(path, from, to)?,
            to - from
        ));
    }
    println!("{line}");
    for mut stream in streams {
        let _ = stream.write_all(b"</stream:stream>");
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench-loadgen: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::{base64, Counter};

    #[test]
    fn counts_messages_split_across_chunks() {
        let stream = b"<message id='a'><body>x</body></message><message type='error'><error/></message>\
                       <message id='b'><body>y</body></message>";
        for split in 1..stream.len() {
            let mut counter = Counter { window: Vec::new(), count: 0 };
            for chunk in stream.chunks(split) {
                counter.feed(chunk);
            }
            assert_eq!(counter.count, 2, "chunks of {split}");
        }
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"\0u0\0pw"), "AHUwAHB3");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }
}
