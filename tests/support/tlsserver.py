#!/usr/bin/env python3
"""A tiny TLS server standing in for a real service, for tests only.

    python tlsserver.py --cert FULLCHAIN --key KEY --port PORT --pidfile FILE

Binds 127.0.0.1:PORT, loads the certificate chain and key itself (so it reads
them with the rights of whoever runs it, like a real daemon), and then accepts
connections forever: handshake, send b"ok\\n", close.  The pid is written to
FILE (atomically) once the socket is listening.

SIGHUP reloads the certificate and key; if that fails the old ones stay in use
(as nginx or haproxy would).  Every reload attempt logs one line on stderr
starting with "tlsserver: reloaded" or "tlsserver: reload failed", which the
control script of tests/support/service.py waits for.  SIGTERM exits.

Standard library only; must run on Python 3.6 and later.
"""
import argparse
import os
import signal
import socket
import ssl
import sys

HANDSHAKE_TIMEOUT = 5.0


def log(message):
    sys.stderr.write("tlsserver: {}\n".format(message))
    sys.stderr.flush()  # stderr to a file is block-buffered before 3.9


def load_context(cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def write_pidfile(path):
    tmp = "{}.{}.tmp".format(path, os.getpid())
    with open(tmp, "w") as f:
        f.write("{}\n".format(os.getpid()))
    os.rename(tmp, path)


class Server(object):
    def __init__(self, args):
        self.args = args
        self.context = load_context(args.cert, args.key)
        self.reloads = 0

    def reload(self, signum=None, frame=None):
        self.reloads += 1
        try:
            context = load_context(self.args.cert, self.args.key)
        except (OSError, ssl.SSLError, ValueError) as e:
            log("reload failed ({}): keeping the old certificate: {}".format(self.reloads, e))
            return
        self.context = context
        log("reloaded ({}) {} {}".format(self.reloads, self.args.cert, self.args.key))

    def serve(self, sock):
        while True:
            conn, _ = sock.accept()
            try:
                conn.settimeout(HANDSHAKE_TIMEOUT)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok\n")
            except Exception as e:  # one bad client must not stop the service
                log("connection failed: {!r}".format(e))
            finally:
                conn.close()


def terminate(signum, frame):
    raise SystemExit(0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cert", required=True, help="certificate chain (PEM), leaf first")
    parser.add_argument("--key", required=True, help="private key (PEM)")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--pidfile", required=True)
    args = parser.parse_args(argv)

    try:
        server = Server(args)
    except (OSError, ssl.SSLError, ValueError) as e:
        log("cannot load certificate {} / key {}: {}".format(args.cert, args.key, e))
        return 1

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
        sock.listen(16)
    except OSError as e:
        log("cannot listen on 127.0.0.1:{}: {}".format(args.port, e))
        return 1

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, server.reload)
    try:
        write_pidfile(args.pidfile)
    except OSError as e:
        log("cannot write pidfile {}: {}".format(args.pidfile, e))
        return 1
    log("listening on 127.0.0.1:{} as uid {} (pid {})".format(args.port, os.getuid(), os.getpid()))
    try:
        server.serve(sock)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
