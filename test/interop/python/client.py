#!/usr/bin/env python3
"""A Flowmetal client written only against PROTOCOL.md (sections 3, 6 and 9), with nats-py and cbor2.

Drives the actor ledger/<key>: events by JetStream publish (JSON and CBOR, with Nats-Msg-Id), waits for their
steps through state notices, asks, reads state and history, sends one undecodable event to watch it reach
the dead-letter stream. Prints one JSON report on stdout for the test to check.

Usage: python3 client.py <nats-url> <key> [prefix]
"""

import asyncio
import datetime
import json
import sys
import time

import cbor2
import nats
from nats.js.errors import NotFoundError


class Flowmetal:
    def __init__(self, nc, prefix):
        self.nc = nc
        self.js = nc.jetstream()
        self.prefix = prefix

    async def api(self, verb, body, timeout=15.0):
        """§9: request/reply, JSON object in, {ok, result} or {ok, error} out."""
        msg = await self.nc.request(f"{self.prefix}.api.{verb}", json.dumps(body).encode(), timeout=timeout)
        return json.loads(msg.data)

    async def must(self, verb, body, timeout=15.0):
        r = await self.api(verb, body, timeout)
        if not r["ok"]:
            raise RuntimeError(f"{verb}: {r['error']['code']}: {r['error']['message']}")
        return r["result"]

    async def publish(self, program, key, body, content_type, msg_id):
        """§3: JetStream publish to <prefix>.in.<program>.<key>; the PubAck means durably accepted."""
        return await self.js.publish(
            f"{self.prefix}.in.{program}.{key}",
            body,
            headers={"Content-Type": content_type, "Nats-Msg-Id": msg_id},
        )


def ack_dict(ack):
    return {"stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate)}


async def main():
    url, key = sys.argv[1], sys.argv[2]
    prefix = sys.argv[3] if len(sys.argv) > 3 else "fm"
    nc = await nats.connect(url, name="interop-python-client")
    fm = Flowmetal(nc, prefix)
    actor = f"ledger/{key}"
    report = {"key": key}

    # §6: subscribe to the actor's state notices before sending, so none slips past.
    notices = asyncio.Queue()

    async def on_notice(m):
        await notices.put(json.loads(m.data))

    sub = await nc.subscribe(f"{prefix}.state.ledger.{key}", cb=on_notice)
    await nc.flush()

    # §3: a JSON event, the same Nats-Msg-Id again (stored once), then a CBOR event with a tag-0 date.
    json_event = json.dumps({"type": "ADD", "amount": 5, "note": "py-json"}).encode()
    ack1 = await fm.publish("ledger", key, json_event, "application/json", f"{key}-json-1")
    ack1_again = await fm.publish("ledger", key, json_event, "application/json", f"{key}-json-1")
    cbor_event = cbor2.dumps({
        "type": "ADD",
        "amount": 2.5,
        "note": "py-cbor",
        "tags": ["a", "b"],
        "nested": {"deep": {"n": 1, "ok": True, "nothing": None}},
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    })
    ack2 = await fm.publish("ledger", key, cbor_event, "application/cbor", f"{key}-cbor-1")
    report["pubAcks"] = [ack_dict(ack1), ack_dict(ack1_again), ack_dict(ack2)]

    # The notices of the steps that took them, matched by inbox seq.
    want = {ack1.seq, ack2.seq}
    seen = []

    async def collect():
        while want:
            n = await notices.get()
            if n.get("seq") in want:
                want.discard(n["seq"])
                seen.append(n)

    await asyncio.wait_for(collect(), 15)
    await sub.unsubscribe()
    report["notices"] = seen

    # §9 ask: an event, one the state does not accept, then the first again with its msgId (a retry: stored once,
    # answered with the step that took it). The retry waits at most 3 s.
    event = {"type": "ADD", "amount": 10, "note": "py-ask"}
    report["ask"] = await fm.api("ask", {"actor": actor, "event": event, "msgId": f"{key}-ask-1"})
    report["askNotAccepted"] = await fm.api("ask", {"actor": actor, "event": {"type": "NOPE"}})
    started = time.monotonic()
    report["askAgain"] = await fm.api("ask", {"actor": actor, "event": event, "msgId": f"{key}-ask-1", "timeoutMs": 3000})
    report["askAgainMs"] = (time.monotonic() - started) * 1000

    # §9 get, history page by page (limit 2, `next` passed back as `after` until a page has no `next`).
    report["get"] = await fm.must("get", {"actor": actor})
    pages = []
    after = None
    while len(pages) < 20:
        req = {"actor": actor, "limit": 2}
        if after is not None:
            req["after"] = after
        page = await fm.api("history", req)
        pages.append(page)
        if not page["ok"] or "next" not in page["result"]:
            break
        after = page["result"]["next"]
    report["historyPages"] = pages
    report["historyAt2"] = await fm.must("history", {"actor": actor, "at": 2})
    report["unknownActor"] = await fm.api("get", {"actor": f"ledger/{key}-nobody"})
    report["badAddress"] = await fm.api("get", {"actor": "no-slash"})
    report["programs"] = await fm.must("programs", {})

    # §3.3: an unsupported content type is dead-lettered to <prefix>.dead.<program>.<key> with the reason.
    dead_key = f"{key}-dead"
    dead_ack = await fm.publish("ledger", dead_key, b"type=ADD", "text/plain", f"{dead_key}-1")
    dead = None
    for _ in range(200):
        try:
            dead = await nc.jsm().get_last_msg(prefix.upper().replace("-", "_") + "_DEAD", f"{prefix}.dead.ledger.{dead_key}")
            break
        except NotFoundError:
            await asyncio.sleep(0.05)
    report["deadLetter"] = None if dead is None else {
        "subject": dead.subject,
        "data": dead.data.decode(),
        "headers": dict(dead.headers or {}),
        "inboxSeq": dead_ack.seq,
    }
    report["deadActor"] = await fm.api("get", {"actor": f"ledger/{dead_key}"})

    print(json.dumps(report), flush=True)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
