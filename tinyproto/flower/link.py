"""The server's side of the wire: a message per client, the replies that come back in time.

Flower addresses SuperNodes by node id; the hello (server_app) maps each to its client. An
exchange pushes one message per client and pulls replies until every client has answered, its
SuperNode went offline (Flower's heartbeat), it replied with an error, or ``timeout`` seconds
passed: it never waits longer, whatever the clients do. A client whose message is still
unanswered is *busy*: a SuperNode works through one message at a time, so it gets no new
message until its late reply arrives (which is then discarded) or Flower reports the message
lost. Every message's size on the wire is measured (records.wire_bytes).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field

from flwr.app import Message as FlowerMessage
from flwr.app import RecordDict

from tinyproto.flower import records
from tinyproto.flower.polling import Backoff, quick_pulls

POLL = 0.2  # seconds between pulls, at most (from POLL_MIN after a push, growing by half)
POLL_MIN = 0.05
ONLINE_EVERY = 2.0  # seconds between asks for the SuperNodes Flower sees online


@dataclass
class Exchange:
    """What one exchange gave: replies and failures by client, wire bytes each way."""

    replies: dict[int, FlowerMessage] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)  # client -> why it gave no reply
    sent_bytes: dict[int, int] = field(default_factory=dict)
    received_bytes: dict[int, int] = field(default_factory=dict)


class Link:
    """Messages to clients by id over a Flower Grid, with a hard timeout per exchange."""

    def __init__(self, grid, timeout: float):
        self.grid = grid
        self.timeout = float(timeout)
        self.nodes: dict[int, int] = {}  # client id -> SuperNode id (set by the hello)
        self.busy: dict[str, int] = {}  # id of an unanswered message -> client id
        # a reply is announced before its objects are uploaded: Flower's grid retries soon
        if type(grid).__module__.startswith("flwr."):
            quick_pulls(sys.modules.get(type(grid).__module__))

    def online(self) -> set[int]:
        return set(self.grid.get_node_ids())

    def wait_for_nodes(self, count: int, timeout: float) -> list[int]:
        """The SuperNodes online once ``count`` are, or when ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            nodes = self.online()
            if len(nodes) >= count or time.monotonic() >= deadline:
                return sorted(nodes)
            time.sleep(POLL)

    def exchange(
        self,
        contents: dict[int, tuple[str, RecordDict]],
        group: str,
        nodes: dict[int, int] | None = None,
    ) -> Exchange:
        """Send ``contents`` ({client: (message type, content)}) and collect the replies.

        ``nodes`` maps the keys of ``contents`` to SuperNode ids (default: the clients'). Keys
        without an online SuperNode, or whose SuperNode is busy, are failed at once.
        """
        nodes = self.nodes if nodes is None else nodes
        ex = Exchange()
        online, busy = self.online(), set(self.busy.values())
        out: dict[int, FlowerMessage] = {}
        for key, (kind, content) in contents.items():
            node = nodes.get(key)
            if node is None or node not in online:
                ex.failed[key] = "no SuperNode online for it"
            elif key in busy:
                ex.failed[key] = "busy: its previous message is still unanswered"
            else:
                out[key] = FlowerMessage(content, node, kind, group_id=group)
        waiting: dict[str, int] = {}
        ids = list(self.grid.push_messages(list(out.values()))) if out else []
        for (key, msg), mid in zip(out.items(), ids):
            if not mid:
                ex.failed[key] = "Flower could not push its message"
                continue
            waiting[mid] = key
            ex.sent_bytes[key] = records.wire_bytes(msg)
        deadline = time.monotonic() + self.timeout
        checked = time.monotonic()
        poll = Backoff(POLL_MIN, POLL, 1.5)
        while waiting:
            for reply in self.grid.pull_messages([*waiting, *self.busy]):
                mid = reply.metadata.reply_to_message_id
                if self.busy.pop(mid, None) is not None or mid not in waiting:
                    continue  # a late reply to an exchange that gave up on it, or a repeat
                key = waiting.pop(mid)
                if reply.has_error():
                    ex.failed[key] = f"error {reply.error.code}: {reason(reply.error.reason)}"
                else:
                    ex.replies[key] = reply
                    ex.received_bytes[key] = records.wire_bytes(reply)
            now = time.monotonic()
            if not waiting or now >= deadline:
                break
            if now - checked >= ONLINE_EVERY:
                checked, online = now, self.online()
                for mid, key in list(waiting.items()):
                    if nodes[key] not in online:
                        self.busy[mid] = waiting.pop(mid)
                        ex.failed[key] = "its SuperNode went offline"
            time.sleep(poll.next())
        for mid, key in waiting.items():
            self.busy[mid] = key
            ex.failed[key] = f"no reply within round-timeout={self.timeout:g} s"
        return ex


def reason(text: str) -> str:
    """A ClientApp's exception as Flower reports it, one line: "<class 'X'>:<'message'>" from a
    SuperNode, a Ray traceback from the simulation; a ConfigError's own line when there is one."""
    text = str(text)
    config = re.search(r"ConfigError(?:'>:<'|: )(.+?)(?:'>|\n|$)", text)
    if config:
        return f"ConfigError: {config.group(1).strip()}"
    if text.startswith("<class '") and ":<'" in text:
        kind = text[len("<class '") : text.index("'>")].rsplit(".", 1)[-1]
        text = f"{kind}: {text[text.index(':<') + 3 :].removesuffix(chr(39) + '>')}"
    return " ".join(text.split())[:300]
