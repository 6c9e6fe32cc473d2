#!/usr/bin/env python3
"""A virtual serial cable for trying `device serve` without hardware.

Creates two pseudo-terminals and copies bytes between them (like
`socat -d -d pty,raw,echo=0 pty,raw,echo=0`), printing their paths:

    $ tools/scripts/pty_cable.py
    device end: /dev/pts/3
    host end:   /dev/pts/4

Run `device serve --serial /dev/pts/3 ...` and `tools bench --serial /dev/pts/4 ...`.
A pty ignores the baud rate: bytes move at memory speed, so the measured round trip
can be below the "wire lower bound" a real UART at that baud would impose.
Stops on Ctrl-C.
"""
import os
import select
import sys
import tty


def main() -> int:
    ends = []
    for name in ("device end", "host end"):
        master, slave = os.openpty()
        tty.setraw(slave)
        ends.append((master, slave))
        print(f"{name + ':':12}{os.ttyname(slave)}", flush=True)
    (a, _sa), (b, _sb) = ends  # keep the slaves open so the masters never see EIO
    peer = {a: b, b: a}
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [])
            for fd in ready:
                data = os.read(fd, 4096)
                if data:
                    os.write(peer[fd], data)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
