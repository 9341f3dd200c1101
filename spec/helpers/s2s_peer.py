"""A remote XMPP server's side of an incoming s2s connection, as far as authenticating it, for
spec/e2e/jid_filter_spec.lua: connects to Prosody's s2s port, opens a stream from ORIGIN to
TARGET, upgrades it with STARTTLS presenting the certificate CERT (key KEY, for ORIGIN, of a CA
the server trusts), authenticates with SASL EXTERNAL (RFC 6120, XEP-0178), restarts the stream,
then closes it. Prints "established" once Prosody took it; exits 1 with what it got otherwise.

Usage: python3 s2s_peer.py PORT ORIGIN TARGET CERT KEY
"""

import base64
import re
import socket
import ssl
import sys


def main():
    port, origin, target, cert, key = sys.argv[1:6]
    header = (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server'"
        " xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'"
        f" from='{origin}' to='{target}' version='1.0'>"
    ).encode()

    def until(conn, pattern):
        got = b""
        while not re.search(pattern, got):
            chunk = conn.recv(65536)
            if not chunk:
                sys.exit(f"closed while waiting for {pattern!r}; got {got!r}")
            got += chunk
        return got

    plain = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
    plain.sendall(header)
    until(plain, rb"</stream:features>")
    plain.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    until(plain, rb"<proceed")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # (the server's own certificate is not what is tested)
    context.load_cert_chain(cert, key)
    conn = context.wrap_socket(plain, server_hostname=target)
    conn.sendall(header)
    features = until(conn, rb"</stream:features>")
    if b"EXTERNAL" not in features:
        sys.exit(f"no SASL EXTERNAL offered: {features!r}")
    conn.sendall(
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
        + base64.b64encode(origin.encode())
        + b"</auth>"
    )
    reply = until(conn, rb"<success|<failure")
    if b"<failure" in reply:
        sys.exit(f"SASL EXTERNAL refused: {reply!r}")
    conn.sendall(header)
    until(conn, rb"<stream:features")
    print("established", flush=True)
    conn.sendall(b"</stream:stream>")
    try:
        until(conn, rb"</stream:stream>")
    except (OSError, SystemExit):
        pass
    conn.close()


if __name__ == "__main__":
    main()
