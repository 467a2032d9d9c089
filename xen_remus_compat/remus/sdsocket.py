"""Listening sockets handed over by systemd (socket activation).

``remus-receiver.socket`` makes systemd listen on the relocation port and
start ``remus-receiver.service`` on the first connection, passing the
listening socket as file descriptor 3 with ``LISTEN_PID``/``LISTEN_FDS``
set (sd_listen_fds(3)).  :func:`inherited` returns that socket, or None when
this process was not started that way, and removes the variables from the
environment as sd_listen_fds(unset_environment=1) does, so that
``xl migrate-receive`` and other children do not believe the descriptors
are theirs.  No libsystemd binding is needed: the protocol is three
environment variables and a descriptor number.
"""
from __future__ import annotations

import os
import socket
from typing import MutableMapping, Optional

from ..errors import ReceiverError

#: the first passed descriptor (SD_LISTEN_FDS_START)
FIRST_FD = 3
VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def inherited(env: Optional[MutableMapping[str, str]] = None,
              pid: Optional[int] = None) -> Optional[socket.socket]:
    """The listening TCP socket systemd passed to this process, or None.

    Exactly one listening stream socket is accepted (the receiver serves one
    address); anything else is a configuration error, reported as
    :class:`ReceiverError` in one line.
    """
    env = os.environ if env is None else env
    pid = os.getpid() if pid is None else pid
    raw_pid, raw_fds = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    for name in VARIABLES:
        env.pop(name, None)
    if not raw_pid or not raw_fds:
        return None
    try:
        if int(raw_pid) != pid:
            return None             # meant for another process (our parent)
        count = int(raw_fds)
    except ValueError:
        raise ReceiverError(f"unreadable LISTEN_PID={raw_pid!r} or "
                            f"LISTEN_FDS={raw_fds!r} from systemd") from None
    if count != 1:
        raise ReceiverError(f"systemd passed {count} sockets; remus-receiver "
                            "serves one (give remus-receiver.socket exactly one "
                            "ListenStream=)")
    try:
        sock = socket.socket(fileno=FIRST_FD)
    except OSError as e:
        raise ReceiverError(f"descriptor {FIRST_FD} passed by systemd is not a "
                            f"socket: {e.strerror}") from None
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()
        raise ReceiverError("the socket passed by systemd is not a listening "
                            "stream socket (remus-receiver.socket needs "
                            "ListenStream= and Accept=no)")
    os.set_inheritable(FIRST_FD, False)
    return sock
