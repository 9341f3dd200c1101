#!/usr/bin/env python3
"""A TCP syslog collector that misbehaves on purpose, for the e2e specs (see bad_collector.lua).

Usage: bad_collector.py MODE DIR OWNER_PID

Listens on a free loopback port, which it writes to DIR/port once it listens. MODE says what it
does with each connection it accepts:

  never-read          keeps it open and reads nothing, ever (a stuck collector);
  half-close-first    the first one: shutdown(SHUT_WR) at once, reads nothing, and resets it
                      (SO_LINGER 0) a second later; every later one is read to its end, appended
                      to DIR/received, and closed (a good collector).

It exits when the process OWNER_PID (the Lua process that started it) is gone, so an
interrupted run leaves nothing behind.
"""
import os
import socket
import struct
import sys
import threading
import time


def watch_owner(owner):
    while os.path.exists("/proc/%d" % owner):
        time.sleep(0.5)
    os._exit(0)


def reset_later(conn):
    time.sleep(1.0)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def read_to_end(conn, path):
    chunks = []
    while True:
        data = conn.recv(65536)
        if not data:
            break
        chunks.append(data)
    with open(path, "ab") as out:
        out.write(b"".join(chunks))
    conn.close()


def main():
    mode, directory, owner = sys.argv[1], sys.argv[2], int(sys.argv[3])
    threading.Thread(target=watch_owner, args=(owner,), daemon=True).start()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    with open(os.path.join(directory, "port.tmp"), "w") as f:
        f.write("%d\n" % server.getsockname()[1])
    os.rename(os.path.join(directory, "port.tmp"), os.path.join(directory, "port"))
    held, accepted = [], 0
    while True:
        conn, _ = server.accept()
        accepted += 1
        with open(os.path.join(directory, "accepted"), "w") as f:
            f.write("%d\n" % accepted)
        if mode == "never-read":
            held.append(conn)
        elif mode == "half-close-first" and accepted == 1:
            conn.shutdown(socket.SHUT_WR)
            threading.Thread(target=reset_later, args=(conn,), daemon=True).start()
        else:
            received = os.path.join(directory, "received")
            threading.Thread(target=read_to_end, args=(conn, received), daemon=True).start()


if __name__ == "__main__":
    main()
