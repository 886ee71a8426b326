#!/usr/bin/env python3
"""A Flowmetal function worker written only against PROTOCOL.md (section 5), with nats-py.

Serves the function `interop.py.upper`: input {"text": str, "mode": str}, output
{"upper": TEXT, "attempt": n, "by": "python"}. The mode makes it fail on purpose, so the tests can watch
every branch of the call/result protocol:
  ok        succeed
  flaky     fail retryably on attempt 1 (nak with backoff), succeed on attempt 2
  terminal  fail terminally (the function says so): error result at once
  always    fail retryably on every attempt: error result once attempts are used up
  slow      overrun timeoutMs on attempt 1, succeed on attempt 2
  hang      run until a cancel notice arrives

Usage: python3 worker.py <nats-url> [prefix]
Prints one JSON object per line on stdout: ready, call, nak, reply, cancelled, ...
"""

import asyncio
import json
import random
import signal
import sys
import time

import nats
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

FUNCTION = "interop.py.upper"
# §5: the consumer's ack_wait must be longer than a call's timeoutMs (nodes use timeoutMs + 30 s). The
# consumer is created before any call is seen, so this worker supports calls with timeoutMs up to 30 s.
ACK_WAIT_S = 60.0


def log(event, **fields):
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


class TerminalError(Exception):
    """A failure the function knows is final: no retry."""

    def __init__(self, message, details=None):
        super().__init__(message)
        self.details = details


class RetryableError(Exception):
    """A failure worth another attempt."""


async def upper(inp, attempt, call_id):
    """The function itself. call_id is the idempotency key for outside changes (there are none here)."""
    if not isinstance(inp, dict) or not isinstance(inp.get("text"), str):
        raise TerminalError("input needs a string 'text'")
    text = inp["text"]
    mode = inp.get("mode", "ok")
    if mode == "terminal":
        raise TerminalError(f"python refuses to upper-case {text!r}", {"text": text, "worker": "python"})
    if mode == "always":
        raise RetryableError(f"python transient failure on attempt {attempt}")
    if mode == "flaky" and attempt == 1:
        raise RetryableError("python transient failure on attempt 1")
    if mode == "hang" or (mode == "slow" and attempt == 1):
        await asyncio.sleep(3600)
    return {"upper": text.upper(), "attempt": attempt, "by": "python"}


def backoff_ms(retry, attempt):
    """§5 step 4: min(maxBackoffMs, initialBackoffMs × multiplier^(attempt−1)), ±20 % jitter."""
    base = min(retry["maxBackoffMs"], retry["initialBackoffMs"] * retry["multiplier"] ** (attempt - 1))
    return base * (0.8 + 0.4 * random.random())


class Worker:
    def __init__(self, url, prefix):
        self.url = url
        self.prefix = prefix
        self.stream = prefix.upper().replace("-", "_") + "_FX"
        self.consumer = "fn-" + FUNCTION.replace(".", "_")
        self.running = {}  # callId -> asyncio.Task of the function
        self.tasks = set()
        self.cancelled = set()  # callIds named by a cancel notice
        self.stopping = asyncio.Event()

    async def ensure_consumer(self):
        """§5 Consumer: one durable pull consumer per function, created if it does not exist."""
        config = ConsumerConfig(
            durable_name=self.consumer,
            filter_subject=f"{self.prefix}.fx.call.{FUNCTION}",
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=-1,
            ack_wait=ACK_WAIT_S,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                # Only if it does not exist: add_consumer on an existing durable would rewrite its configuration.
                await self.jsm.consumer_info(self.stream, self.consumer)
                return
            except NotFoundError:
                pass
            try:
                await self.jsm.add_consumer(self.stream, config=config)
                return
            except NotFoundError:
                # The stream is made by the nodes; wait for the first one.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def reply(self, call, body):
        """§5 step 3/4: publish the result to replyTo with JetStream, deduped by <callId>.result."""
        headers = {
            "Fm-Kind": "result",
            "Fm-Call": call["callId"],
            "Content-Type": "application/json",
            "Nats-Msg-Id": f"{call['callId']}.result",
        }
        return await self.js.publish(call["replyTo"], json.dumps(body).encode(), headers=headers)

    async def heartbeat(self, msg):
        while True:
            await asyncio.sleep(ACK_WAIT_S / 3)
            await msg.in_progress()

    async def handle(self, msg):
        attempt = msg.metadata.num_delivered
        try:
            call = json.loads(msg.data)
            assert isinstance(call["callId"], str) and isinstance(call["replyTo"], str)
            # §5: answer only into the calling actor's inbox, fm.in.<program>.<key>.
            program, _, key = str(call.get("actor", "")).partition("/")
            assert program and key and call["replyTo"] == f"{self.prefix}.in.{program}.{key}", "replyTo is not the actor's inbox"
        except Exception as e:  # noqa: BLE001 - a call no worker can answer
            log("malformed", error=str(e), seq=msg.metadata.sequence.stream)
            await msg.term()
            return
        call_id = call["callId"]
        retry = call["retry"]
        max_attempts = retry["maxAttempts"]
        log("call", callId=call_id, fn=call.get("fn"), actor=call.get("actor"), attempt=attempt, input=call.get("input"))

        if attempt > max_attempts:
            # §5 step 1: earlier deliveries died without answering; they count as attempts.
            await self.reply(call, {"callId": call_id, "error": {
                "code": "FM_ERR_FUNCTION_FAILED", "message": f"no attempt of {max_attempts} finished", "retryable": False}})
            await msg.ack()
            log("reply", callId=call_id, attempt=attempt, ok=False, code="FM_ERR_FUNCTION_FAILED")
            return

        task = asyncio.ensure_future(upper(call.get("input"), attempt, call_id))
        self.running[call_id] = task
        beat = asyncio.ensure_future(self.heartbeat(msg))
        try:
            output = await asyncio.wait_for(task, call["timeoutMs"] / 1000)
            error = None
        except asyncio.CancelledError:
            if call_id not in self.cancelled:
                raise
            # A cancel notice: the actor left the invoking state and drops any result. Nothing to answer.
            log("cancelled", callId=call_id, attempt=attempt)
            await msg.ack()
            return
        except asyncio.TimeoutError:
            error = {"code": "FM_ERR_FUNCTION_TIMEOUT", "message": f"attempt {attempt} took longer than {call['timeoutMs']} ms", "retryable": True}
        except TerminalError as e:
            error = {"code": "FM_ERR_FUNCTION_FAILED", "message": str(e), "retryable": False}
            if e.details is not None:
                error["details"] = e.details
        except Exception as e:  # noqa: BLE001 - anything else is retryable
            error = {"code": "FM_ERR_FUNCTION_FAILED", "message": str(e), "retryable": True}
        finally:
            beat.cancel()
            self.running.pop(call_id, None)
            self.cancelled.discard(call_id)

        if error is None:
            ack = await self.reply(call, {"callId": call_id, "output": output})
            await msg.ack()
            log("reply", callId=call_id, attempt=attempt, ok=True, output=output, duplicate=bool(ack.duplicate))
            return
        if error["retryable"] and attempt < max_attempts:
            delay = backoff_ms(retry, attempt)
            await msg.nak(delay=delay / 1000)
            log("nak", callId=call_id, attempt=attempt, delayMs=delay, error=error)
            return
        error["retryable"] = False
        await self.reply(call, {"callId": call_id, "error": error})
        await msg.ack()
        log("reply", callId=call_id, attempt=attempt, ok=False, code=error["code"], message=error["message"])

    def on_done(self, task):
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log("handler-failed", error=repr(task.exception()))

    async def on_cancel(self, msg):
        try:
            call_id = json.loads(msg.data)["callId"]
        except Exception:  # noqa: BLE001 - cancels are best-effort
            return
        log("cancel-notice", callId=call_id)
        task = self.running.get(call_id)
        if task is not None:
            self.cancelled.add(call_id)
            task.cancel()

    async def run(self):
        self.nc = await nats.connect(self.url, name="interop-python-worker", max_reconnect_attempts=-1)
        self.js = self.nc.jetstream()
        self.jsm = self.nc.jsm()
        await self.ensure_consumer()
        psub = await self.js.pull_subscribe_bind(durable=self.consumer, stream=self.stream)
        await self.nc.subscribe(f"{self.prefix}.fx.cancel.{FUNCTION}", cb=self.on_cancel)
        await self.nc.flush()
        log("ready", function=FUNCTION, consumer=self.consumer, stream=self.stream)
        while not self.stopping.is_set():
            try:
                msgs = await psub.fetch(batch=16, timeout=0.5)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            for m in msgs:
                t = asyncio.ensure_future(self.handle(m))
                self.tasks.add(t)
                t.add_done_callback(self.on_done)
        # Stop taking calls; let running ones answer (an unanswered call is redelivered after ack_wait anyway).
        await psub.unsubscribe()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=5)
        await self.nc.close()


async def main():
    url = sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"
    prefix = sys.argv[2] if len(sys.argv) > 2 else "fm"
    w = Worker(url, prefix)
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, w.stopping.set)
    await w.run()
    log("stopped")


if __name__ == "__main__":
    asyncio.run(main())
