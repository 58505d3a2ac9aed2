#!/usr/bin/python3
"""An SMTP sink for the tests (aiosmtpd, Debian's python3-aiosmtpd).

Accepts every message and writes each, as received, to DIR/<n>.eml (written
to a temporary name first, then renamed: a reader never sees half a file).
With --user and --password it requires AUTH (PLAIN or LOGIN) with them and
refuses anything else with 535. Prints "ready <port>" once it listens;
stops on SIGTERM or SIGINT.

    /usr/bin/python3 scripts/smtp-sink.py --port 2525 --dir /tmp/mail [--user u --password p]
"""
import argparse
import itertools
import pathlib
import signal
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, out: pathlib.Path):
        self.out = out
        self.n = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        i = next(self.n)
        tmp = self.out / f".{i}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(self.out / f"{i}.eml")
        return "250 OK stored"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()
    out = pathlib.Path(a.dir)
    out.mkdir(parents=True, exist_ok=True)

    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == a.user
            and auth_data.password.decode() == a.password
        )
        return AuthResult(success=ok)

    kwargs = {}
    if a.user:
        kwargs = dict(authenticator=check, auth_required=True, auth_require_tls=False)
    controller = Controller(Sink(out), hostname="127.0.0.1", port=a.port, **kwargs)
    controller.start()
    print("ready", a.port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
