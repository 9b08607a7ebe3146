#!/usr/bin/env python3
"""Traffic endpoints for the kernel tests, run inside a test namespace with `ip netns exec`.

  netpeer.py serve --tcp PORT... --udp PORT...      echo server (tcp: line echo, udp: datagram echo)
  netpeer.py connect tcp|udp HOST PORT [--source ADDR] [--timeout S]
        exit 0 when a round trip succeeded, 1 when it did not (refused, dropped, timed out)
  netpeer.py agent
        reads one JSON command per line ({"kind", "host", "port", "source", "timeout"}) and
        answers "ok" or "fail <reason>" per line; a resident prober, so that a check made
        1 s before a deadline is not delayed by starting a process on a loaded machine
  netpeer.py listen tcp|udp,HOST,PORT[,dual]...
        binds each socket (tcp ones listen; dual: IPv6 without IPV6_V6ONLY), prints "ready",
        then holds them, answering nothing, until stdin closes
  netpeer.py hold HOST PORT [--source ADDR]
        opens one TCP connection, then for each line on stdin sends it and prints the echo
        (or "ERROR <reason>"); proves an established flow keeps working
"""
import argparse
import json
import select
import socket
import sys


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def serve(args):
    sockets = []
    for port in args.tcp:
        for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
            s.listen(64)
            sockets.append(("tcp-listen", s))
    for port in args.udp:
        for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
            sockets.append(("udp", s))
    print("ready", flush=True)
    kinds = {s.fileno(): (kind, s) for kind, s in sockets}
    while True:
        readable, _, _ = select.select([s for _, s in kinds.values()], [], [])
        for s in readable:
            kind, _ = kinds[s.fileno()]
            if kind == "tcp-listen":
                conn, _ = s.accept()
                kinds[conn.fileno()] = ("tcp", conn)
            elif kind == "udp":
                data, peer = s.recvfrom(2048)
                s.sendto(data, peer)
            else:
                try:
                    data = s.recv(2048)
                except OSError:
                    data = b""
                if data:
                    s.sendall(data)
                else:
                    del kinds[s.fileno()]
                    s.close()


def listen(args):
    sockets = []
    for spec in args.specs:
        kind, host, port, *flags = spec.split(",")
        s = socket.socket(family_of(host), socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        if family_of(host) == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if "dual" in flags else 1)
        s.bind((host, int(port)))
        if kind == "tcp":
            s.listen(8)
        sockets.append(s)
    print("ready", flush=True)
    sys.stdin.read()
    return 0


def open_socket(kind, host, source):
    s = socket.socket(family_of(host), socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    if source:
        s.bind((source, 0))
    return s


def round_trip(kind, host, port, source, timeout):
    """None when a full round trip worked, else why not."""
    s = open_socket(kind, host, source)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        s.sendall(b"ping\n")
        reply = s.recv(64)
        return None if reply == b"ping\n" else f"unexpected reply {reply!r}"
    except OSError as error:
        return str(error)
    finally:
        s.close()


def connect(args):
    failure = round_trip(args.kind, args.host, args.port, args.source, args.timeout)
    if failure:
        print(f"no round trip: {failure}", file=sys.stderr)
    return 1 if failure else 0


def agent():
    for line in sys.stdin:
        command = json.loads(line)
        failure = round_trip(command["kind"], command["host"], command["port"],
                             command.get("source"), command["timeout"])
        print("ok" if failure is None else f"fail {failure}", flush=True)
    return 0


def hold(args):
    s = open_socket("tcp", args.host, args.source)
    s.settimeout(args.timeout)
    try:
        s.connect((args.host, args.port))
    except OSError as error:
        print(f"ERROR {error}", flush=True)
        return 1
    print("connected", flush=True)
    for line in sys.stdin:
        try:
            s.sendall(line.encode())
            print(s.recv(2048).decode().strip(), flush=True)
        except OSError as error:
            print(f"ERROR {error}", flush=True)
    return 0


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--tcp", type=int, nargs="*", default=[])
    p.add_argument("--udp", type=int, nargs="*", default=[])
    p = sub.add_parser("connect")
    p.add_argument("kind", choices=["tcp", "udp"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--source")
    p.add_argument("--timeout", type=float, default=1.0)
    sub.add_parser("agent")
    p = sub.add_parser("listen")
    p.add_argument("specs", nargs="+")
    p = sub.add_parser("hold")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--source")
    p.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
        return 0
    if args.command == "agent":
        return agent()
    if args.command == "listen":
        return listen(args)
    return connect(args) if args.command == "connect" else hold(args)


if __name__ == "__main__":
    sys.exit(main())
