"""``xen.remus.profile`` (legacy-api.md section 9.2)."""
from __future__ import annotations

import time


class ProfileBlock(object):
    def __init__(self, name: str) -> None:
        self.name = name

    def enter(self) -> None:
        print("PROF: entered %s at %f" % (self.name, time.time()))

    def exit(self) -> None:
        print("PROF: exited %s at %f" % (self.name, time.time()))


class NullProfiler(object):
    def enter(self, name: str) -> None:
        pass

    def exit(self, name=None) -> None:
        pass


class Profiler(object):
    def __init__(self) -> None:
        self.blocks = {}
        self.running = []

    def enter(self, name: str) -> None:
        try:
            block = self.blocks[name]
        except KeyError:
            block = ProfileBlock(name)
            self.blocks[name] = block
        block.enter()
        self.running.append(block)

    def exit(self, name=None) -> None:
        if name is not None:
            block = None
            while self.running:
                tmp = self.running.pop()
                if tmp.name == name:
                    block = tmp
                    break
                tmp.exit()
            if not block:
                raise KeyError("block %s not running" % name)
        else:
            try:
                block = self.running.pop()
            except IndexError:
                raise KeyError("no block running")
        block.exit()
