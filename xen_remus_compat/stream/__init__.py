"""The migration-stream layer: what ``xl remus`` sends and ``xl
migrate-receive -r`` reads (xl-side.md §3; docs/decisions.d/stream.md).

One module per format or job, nothing imported here (no import-time work):

* ``xl``        xl header, handshake strings (§3.1-§3.2)
* ``libxl``     libxl stream v2 header, record table, writers (§3.3)
* ``libxc``     libxc image v3 headers, record table, PAGE_DATA (§3.4)
* ``records``   framing shared by both record layers
* ``source``    exact reads with offsets; StreamError and friends
* ``reader``    StreamWalker: checkpoint-aware record iterator (§3.5)
* ``verify``    our verifier, and Xen's own classes driven checkpoint-aware (§5.5)
* ``receiver``  the backup: buffer epochs, fail over (§3.6)
* ``writer``    the few bytes the engine writes around libxc's stream
* ``simpage``   page contents of the simulated guest (shared with simxen)
* ``simstream`` a Python reference sender for tests and the demo
"""
