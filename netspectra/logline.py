"""One warning line to stderr that never waits for stderr's reader.

The epoch loop (and the threads holding a lock it needs) warn through say():
with `2>pipe` and nobody reading, print() would block once the pipe is full
and freeze counting.  say() writes only what the pipe takes at once (one
write of at most PIPE_BUF bytes, which a writable pipe takes whole) and
otherwise drops the line, counts it and says how many were dropped with the
next line that gets through.
"""

from __future__ import annotations

import os
import select
import threading

_lock = threading.Lock()
dropped = 0  # lines given up since the last one written


def say(log, text: str) -> bool:
    """text and a newline to log; False if it was dropped (not writable now)."""
    global dropped
    try:
        fd = log.fileno()
    except (AttributeError, OSError, ValueError):  # io.StringIO and the like never block
        log.write(text + "\n")
        log.flush()
        return True
    with _lock:
        line = text + "\n"
        if dropped:
            line = f"netspectra: {dropped} earlier warning lines were dropped (stderr was not writable)\n" + line
        data = line.encode(errors="replace")[: select.PIPE_BUF]
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        try:
            if any(ev & select.POLLOUT for _, ev in poll.poll(0)):
                os.write(fd, data)
                dropped = 0
                return True
        except OSError:  # EPIPE: nobody will ever read it
            pass
        dropped += 1
        return False
