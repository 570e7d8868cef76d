"""Request ids (``core.ids``): well-formed, distinct, and a forked child's are not its parent's."""

from __future__ import annotations

import os
import re

from core import ids


def test_tokens_are_128_bits_in_hex_and_distinct():
    tokens = [ids.token() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tokens)
    assert len(set(tokens)) == len(tokens)


def test_a_forked_child_does_not_repeat_its_parents_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, ",".join(ids.token() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode().split(",")
    os.close(read)
    parent = [ids.token() for _ in range(5)]
    assert len(child) == 5 and not set(child) & set(parent)
