"""A simulated ``remus-receiver --sim`` on loopback, for the end-to-end
tests that protect a simulated guest over ``-p``."""
import threading
from typing import List, Tuple

from xen_remus_compat.remus.receiver import ReceiverService


def start_sim_receiver() -> Tuple[int, List, threading.Thread]:
    """Bind on 127.0.0.1 (a free port) and serve one session in a daemon
    thread: (port, the list its sessions are appended to, the thread)."""
    svc = ReceiverService(listen="127.0.0.1", port=0, sim=True)
    port = svc.bind()
    sessions: List = []
    thread = threading.Thread(target=lambda: sessions.extend(svc.serve(once=True)),
                              daemon=True)
    thread.start()
    return port, sessions, thread
