"""The Remus engine: the checkpoint loop, transports, the receiver service.

Nothing here imports the legacy facade, the CLIs or the Python 2 runner."""
