#!/usr/bin/env python3
"""Black-box checks of a NATS server with the standard Python client (nats-py).

Usage: python3 tests/py/nats_py_client.py nats://127.0.0.1:4222

Runs against natrium (tests/client_nats_py.rs) and against the reference nats-server
(the same test file), so every check here is validated on the reference. Prints one
line per check and exits 1 with a clear message on the first failure (2 on a usage or
import error).

Connections are picked by the parity of the INFO `client_id`: natrium serves a
connection with an even id on shard 0 and an odd one on shard 1 (with `--shards 2`), so
every check has publishers and subscribers on both shards. nats-server's ids are
sequential, so the same selection works there (parity just means nothing).

Every wait is bounded (hang protection, never a timing assertion). The checks use the
usual client pattern: a subscriber's `flush()` (PING/PONG) means its SUB/UNSUB is in
effect server-wide, a publisher's `flush()` means its messages were delivered, as
nats-server does on one server.
"""

import asyncio
import os
import sys
import time
import traceback

try:
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeoutError
except ImportError as e:  # pragma: no cover
    print(f"FAIL import nats-py: {e}; run `python3 -m pip install nats-py`")
    sys.exit(2)

WAIT = 10.0  # seconds, bound on every single wait
TOTAL = 110.0  # seconds, bound on the whole script
QUIET = 0.3  # seconds to wait for a message that must NOT arrive


class CheckFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def expect_eq(got, want, what):
    if got != want:
        g, w = repr(got), repr(want)
        if len(g) > 300:
            g = g[:300] + "..."
        if len(w) > 300:
            w = w[:300] + "..."
        raise CheckFailed(f"{what}: got {g}, want {w}")


URL = None
ASYNC_ERRORS = []
ALL_CONNS = []


async def connect(name):
    async def error_cb(e):
        ASYNC_ERRORS.append(f"{name}: {type(e).__name__}: {e}")

    nc = await asyncio.wait_for(
        nats.connect(
            URL,
            name=name,
            allow_reconnect=False,
            connect_timeout=5,
            max_reconnect_attempts=0,
            drain_timeout=int(WAIT),
            error_cb=error_cb,
        ),
        WAIT,
    )
    ALL_CONNS.append(nc)
    return nc


class Pool:
    """Connections by the parity of their client id (natrium's shard)."""

    def __init__(self):
        self.by_shard = {0: [], 1: []}
        self.n = 0

    async def get(self, shard, name):
        for _ in range(64):
            if self.by_shard[shard]:
                return self.by_shard[shard].pop(0)
            self.n += 1
            nc = await connect(f"py-{self.n}")
            expect(nc.client_id is not None, "INFO has no client_id")
            self.by_shard[nc.client_id % 2].append(nc)
        raise CheckFailed(f"no connection with client_id % 2 == {shard} in 64 tries")


async def next_msg(sub, what):
    try:
        return await sub.next_msg(timeout=WAIT)
    except NatsTimeoutError:
        raise CheckFailed(f"{what}: no message within {WAIT}s")


async def nothing_more(sub, what):
    try:
        m = await sub.next_msg(timeout=QUIET)
    except NatsTimeoutError:
        return
    raise CheckFailed(f"{what}: unexpected extra message {m.subject} {m.data[:60]!r}")


async def read_n(sub, n, what):
    return [await next_msg(sub, f"{what} (message {i + 1} of {n})") for i in range(n)]


async def wait_until(pred, what):
    deadline = time.monotonic() + WAIT
    while not pred():
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {WAIT}s")
        await asyncio.sleep(0.005)


async def flush(*conns):
    """A PING/PONG round trip on each connection, ordered after everything it sent.

    nats-py 2.16's `flush()` writes PING straight to the socket, ahead of commands still
    in the client's pending buffer (written by its flusher task), so a SUB, UNSUB or PUB
    issued just before can reach the server after the PING: seen against nats-server
    too. So the pending buffer is written out first, then `flush()` does the round trip.
    """
    for nc in conns:
        if hasattr(nc, "_flush_pending"):
            await asyncio.wait_for(nc._flush_pending(force_flush=True), WAIT)
            await nc.flush(timeout=WAIT)
        else:
            # Public-API fallback: a request goes through the pending buffer, and the
            # no-responders status comes back after everything sent before it.
            try:
                await nc.request(f"sync.{nc.new_inbox()}", b"", timeout=WAIT)
                raise CheckFailed("sync request got a reply")
            except NoRespondersError:
                pass


async def request(nc, subject, payload=b"", headers=None):
    try:
        return await nc.request(subject, payload, timeout=WAIT, headers=headers)
    except NatsTimeoutError:
        raise CheckFailed(f"request on {subject}: no reply within {WAIT}s")


def seq(n):
    return [str(i).encode() for i in range(n)]


def subject_matches(pattern, subject):
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


# ---------------------------------------------------------------------------------------
# Checks. `c` holds the connections: c.e[i] on shard 0, c.o[i] on shard 1.
# ---------------------------------------------------------------------------------------


async def check_connect(c):
    for nc in c.e + c.o:
        expect(nc.is_connected, f"connection {nc.client_id} not connected")
        info = nc._server_info
        expect(info.get("headers") is True, f"INFO headers: {info.get('headers')!r}")
        expect_eq(info.get("max_payload"), 1048576, "INFO max_payload")
    await flush(*(c.e + c.o))
    return f"client ids {[nc.client_id for nc in c.e + c.o]}"


async def check_pubsub_exact(c):
    payloads = [
        b"hello",
        b"",
        b"\x00\x01\xff\r\n\r\nMSG fake 1 2\r\n",
        "héllo wörld ✓".encode(),
        b"x" * 4096,
        bytes(range(256)),
    ]
    for pub, subs in ((c.e[0], [c.o[0], c.e[1]]), (c.o[0], [c.e[0], c.o[1]])):
        ss = [await nc.subscribe("ps.exact") for nc in subs]
        await flush(*subs)
        for p in payloads:
            await pub.publish("ps.exact", p)
        await pub.publish("ps.exact", b"r", reply="my.reply.subject")
        await flush(pub)
        for nc, s in zip(subs, ss):
            what = f"pub {pub.client_id} -> sub {nc.client_id}"
            got = await read_n(s, len(payloads) + 1, what)
            expect_eq([m.data for m in got[:-1]], payloads, f"{what} payloads")
            expect_eq({m.subject for m in got}, {"ps.exact"}, f"{what} subjects")
            expect_eq([m.reply for m in got[:-1]], [""] * len(payloads), f"{what} reply")
            expect_eq(got[-1].reply, "my.reply.subject", f"{what} reply subject")
            expect_eq(got[-1].headers, None, f"{what} headers")
            await nothing_more(s, what)
            await s.unsubscribe()
        await flush(*subs)
    return f"{len(payloads) + 1} payloads, both directions"


async def check_wildcards(c):
    patterns = [(c.o[1], "w.*"), (c.o[1], "w.>"), (c.e[1], "*.a.*"), (c.e[2], "w.a.>"), (c.o[2], "w.a.b")]
    subjects = ["w", "w.a", "w.a.b", "w.a.b.c", "x.a.b", "w.b", "x.a", "x.a.b.c", "ww.a", "w.a.b"]
    # Sanity of the expectation itself (exact, not only computed).
    expect_eq([s for s in subjects if subject_matches("w.*", s)], ["w.a", "w.b"], "matcher")
    for pub in (c.e[0], c.o[0]):
        subs = [(p, await nc.subscribe(p)) for nc, p in patterns]
        await flush(*{id(nc): nc for nc, _ in patterns}.values())
        for s in subjects:
            await pub.publish(s, s.encode())
        await flush(pub)
        for p, sub in subs:
            want = [s for s in subjects if subject_matches(p, s)]
            what = f"'{p}' (publisher {pub.client_id})"
            got = await read_n(sub, len(want), what)
            expect_eq([m.subject for m in got], want, f"{what} subjects")
            expect_eq([m.data for m in got], [s.encode() for s in want], f"{what} payloads")
            await nothing_more(sub, what)
            await sub.unsubscribe()
    return "w.* w.> *.a.* w.a.> and a literal, from both shards"


async def check_queue_groups(c):
    n = 300
    for round_, pub in enumerate((c.e[0], c.o[0])):
        members_nc = [c.e[1], c.o[1], c.o[2]] if round_ == 0 else [c.e[1], c.e[2], c.o[1]]
        got = [[] for _ in members_nc]

        def collector(k):
            async def cb(msg):
                got[k].append(int(msg.data))

            return cb

        qsubs = [await nc.subscribe("qg.work", queue="workers", cb=collector(k)) for k, nc in enumerate(members_nc)]
        plain_nc = c.o[0] if pub is c.e[0] else c.e[0]
        plain = await plain_nc.subscribe("qg.work")
        await flush(*members_nc, plain_nc)
        for i in range(n):
            await pub.publish("qg.work", str(i).encode())
        await flush(pub)
        what = f"queue group, publisher {pub.client_id}"
        await wait_until(lambda: sum(map(len, got)) >= n, f"{what}: {n} deliveries")
        await asyncio.sleep(QUIET)
        total = sorted(x for g in got for x in g)
        expect_eq(total, list(range(n)), f"{what}: each message exactly once")
        for k, g in enumerate(got):
            expect(len(g) > 0, f"{what}: member {k} got none of {n} ({[len(x) for x in got]})")
            expect_eq(g, sorted(g), f"{what}: member {k} order")
        pm = await read_n(plain, n, f"{what}: plain subscriber")
        expect_eq([m.data for m in pm], seq(n), f"{what}: plain subscriber beside the group")
        await nothing_more(plain, f"{what}: plain subscriber")
        for s in qsubs + [plain]:
            await s.unsubscribe()
        await flush(*members_nc, plain_nc)
        counts = [len(g) for g in got]
    return f"{n} msgs x2 exactly once over 3 members, last split {counts}"


async def echo_responder(nc, subject, prefix=b"re:"):
    async def cb(msg):
        await nc.publish(msg.reply, prefix + msg.data, headers=msg.headers)

    sub = await nc.subscribe(subject, cb=cb)
    await flush(nc)
    return sub


async def check_request_reply(c):
    responder = await echo_responder(c.o[2], "svc.echo")
    for req in (c.e[0], c.o[0]):
        what = f"request from {req.client_id} to responder {c.o[2].client_id}"
        r = await request(req, "svc.echo", b"hi")
        expect_eq(r.data, b"re:hi", what)
        payloads = [f"req-{req.client_id}-{i}".encode() for i in range(50)]
        replies = await asyncio.gather(*(request(req, "svc.echo", p) for p in payloads))
        expect_eq([m.data for m in replies], [b"re:" + p for p in payloads], f"{what}: 50 concurrent")
    # Explicit reply subject and inbox subscription (old style), cross shard.
    inbox = c.e[1].new_inbox()
    isub = await c.e[1].subscribe(inbox)
    await flush(c.e[1])
    await c.e[1].publish("svc.echo", b"manual", reply=inbox)
    m = await next_msg(isub, "reply to an explicit inbox")
    expect_eq((m.subject, m.data), (inbox, b"re:manual"), "reply to an explicit inbox")
    await isub.unsubscribe()
    # A queue-group responder on the other shard.
    qr = []
    for k, nc in enumerate((c.e[2], c.o[1])):

        def mk(nc, k):
            async def cb(msg):
                await nc.publish(msg.reply, f"{k}:".encode() + msg.data)

            return cb

        qr.append(await nc.subscribe("svc.q", queue="svc", cb=mk(nc, k)))
    await flush(c.e[2], c.o[1])
    replies = await asyncio.gather(*(request(c.e[0], "svc.q", str(i).encode()) for i in range(50)))
    for i, r in enumerate(replies):
        k, _, body = r.data.partition(b":")
        expect(k in (b"0", b"1") and body == str(i).encode(), f"queue responder reply {i}: {r.data!r}")
    for s in qr + [responder]:
        await s.unsubscribe()
    await flush(c.e[2], c.o[1], c.o[2])
    return "both shards, 50 concurrent x2, explicit inbox, queue responders"


async def check_headers(c):
    hdrs = {
        "X-One": "1",
        "X-Two": "two words",
        "Nats-Msg-Id": "id-42",
        "X-Url": "http://a:b@host:1/p?q=1",
    }
    for pub, subnc in ((c.e[0], c.o[0]), (c.o[0], c.e[0])):
        what = f"headers {pub.client_id} -> {subnc.client_id}"
        sub = await subnc.subscribe("hdr.t")
        await flush(subnc)
        await pub.publish("hdr.t", b"body", headers=hdrs)
        await pub.publish("hdr.t", b"", headers={"Only": "header"})
        await pub.publish("hdr.t", b"plain")
        await pub.publish("hdr.t", b"with reply", reply="hdr.reply", headers={"K": "v"})
        await flush(pub)
        m = await read_n(sub, 4, what)
        expect_eq((m[0].data, m[0].headers), (b"body", hdrs), f"{what}: multiple keys")
        expect_eq((m[1].data, m[1].headers), (b"", {"Only": "header"}), f"{what}: empty payload")
        expect_eq((m[2].data, m[2].headers), (b"plain", None), f"{what}: no headers")
        expect_eq((m[3].data, m[3].headers, m[3].reply), (b"with reply", {"K": "v"}, "hdr.reply"), f"{what}: reply")
        await nothing_more(sub, what)
        await sub.unsubscribe()
        await flush(subnc)
    # Request with headers through an echoing responder on the other shard.
    responder = await echo_responder(c.o[1], "hdr.echo")
    r = await request(c.e[0], "hdr.echo", b"q", headers=hdrs)
    expect_eq((r.data, r.headers), (b"re:q", hdrs), "request headers echoed back")
    await responder.unsubscribe()
    await flush(c.o[1])
    return f"{len(hdrs)} keys, both directions, empty payload, request echo"


async def check_no_responders(c):
    for nc in (c.e[0], c.o[0]):
        t0 = time.monotonic()
        try:
            r = await nc.request("nobody.home", b"x", timeout=WAIT)
            raise CheckFailed(f"request with no subscribers got a reply: {r}")
        except NoRespondersError:
            pass
        except NatsTimeoutError:
            raise CheckFailed("request with no subscribers timed out instead of NoRespondersError")
        expect(time.monotonic() - t0 < WAIT, "no-responders too slow")
    # Interest appears and disappears across shards.
    responder = await echo_responder(c.o[1], "nr.svc")
    r = await request(c.e[0], "nr.svc", b"a")
    expect_eq(r.data, b"re:a", "responder on the other shard")
    await responder.unsubscribe()
    await flush(c.o[1])
    try:
        await c.e[0].request("nr.svc", b"b", timeout=WAIT)
        raise CheckFailed("request after the only responder unsubscribed (flushed) got a reply")
    except NoRespondersError:
        pass
    except NatsTimeoutError:
        raise CheckFailed("request after responder UNSUB (flushed) timed out instead of NoRespondersError")
    return "both shards, and after UNSUB on the other shard"


async def check_sub_drain(c):
    n = 300
    for pub, subnc in ((c.e[0], c.o[1]), (c.o[1], c.o[1]), (c.o[0], c.e[1])):
        what = f"subscription drain, publisher {pub.client_id}, subscriber {subnc.client_id}"
        got = []

        async def cb(msg):
            got.append(msg.data)
            if len(got) % 10 == 0:
                await asyncio.sleep(0.001)  # keep messages pending in the client

        sub = await subnc.subscribe("sd.t", cb=cb)
        await flush(subnc)
        for i in range(n):
            await pub.publish("sd.t", str(i).encode())
        await flush(pub)
        await asyncio.wait_for(sub.drain(), WAIT)
        expect_eq(got, seq(n), f"{what}: all messages published before drain")
        # drain() sends UNSUB through the pending buffer and PING directly (see flush):
        # make sure the UNSUB reached the server before asking for responders.
        await flush(subnc)
        # Interest gone server-wide.
        try:
            await c.e[0].request("sd.t", b"x", timeout=WAIT)
            raise CheckFailed(f"{what}: drained subscription still answered")
        except NoRespondersError:
            pass
        except NatsTimeoutError:
            raise CheckFailed(f"{what}: request after drain timed out instead of NoRespondersError")
    return f"{n} msgs, cross shard both ways and same connection"


async def check_conn_drain(c, pool):
    n = 300
    for shard, pub in ((1, c.e[0]), (0, c.e[0]), (0, c.o[0])):
        dc = await pool.get(shard, "drain")
        what = f"connection drain of {dc.client_id}, publisher {pub.client_id}"
        got = {"cd.one": [], "cd.two": []}

        async def cb(msg):
            got[msg.subject].append(msg.data)
            if len(got[msg.subject]) % 10 == 0:
                await asyncio.sleep(0.001)

        await dc.subscribe("cd.one", cb=cb)
        await dc.subscribe("cd.two", cb=cb)
        await flush(dc)
        for i in range(n):
            await pub.publish("cd.one", str(i).encode())
            await pub.publish("cd.two", str(i).encode())
        await flush(pub)
        await asyncio.wait_for(dc.drain(), WAIT + 5)
        expect_eq(got["cd.one"], seq(n), f"{what}: cd.one")
        expect_eq(got["cd.two"], seq(n), f"{what}: cd.two")
        expect(dc.is_closed, f"{what}: connection not closed after drain")
    return f"2 subs x {n} msgs, 3 times (cross shard and same shard)"


async def check_unsubscribe_max(c, pool):
    for shard, pub in ((1, c.e[0]), (0, c.e[0])):
        # Dedicated connections: their in_msgs count is exactly what the server sent.
        u = await pool.get(shard, "unsub")
        what = f"unsubscribe(limit=5) on {u.client_id}, publisher {pub.client_id}"
        sub = await u.subscribe("lim.a")
        await sub.unsubscribe(limit=5)
        end = await u.subscribe("lim.end")
        await flush(u)
        for i in range(10):
            await pub.publish("lim.a", str(i).encode())
        await pub.publish("lim.end", b"end")
        await flush(pub)
        await next_msg(end, f"{what}: end marker")
        got = []
        while sub.pending_msgs:
            got.append((await sub.next_msg(timeout=WAIT)).data)
        expect_eq(got, seq(5), what)
        expect_eq(u.stats["in_msgs"], 6, f"{what}: messages the server sent (5 + end marker)")
        try:
            await pub.request("lim.a", b"x", timeout=WAIT)
            raise CheckFailed(f"{what}: interest still there after 5 messages")
        except NoRespondersError:
            pass
        except NatsTimeoutError:
            raise CheckFailed(f"{what}: request after auto-unsubscribe timed out, not NoRespondersError")

        # subscribe(max_msgs=3) with a callback.
        m = await pool.get(shard, "maxmsgs")
        got = []

        async def cb(msg):
            got.append(msg.data)

        await m.subscribe("lim.b", cb=cb, max_msgs=3)
        end = await m.subscribe("lim.end")
        await flush(m)
        for i in range(10):
            await pub.publish("lim.b", str(i).encode())
        await pub.publish("lim.end", b"end")
        await flush(pub)
        await next_msg(end, "max_msgs end marker")
        await wait_until(lambda: len(got) >= 3, "max_msgs callback")
        await asyncio.sleep(0.05)
        expect_eq(got, seq(3), f"subscribe(max_msgs=3) on {m.client_id}")
        # nats-py applies max_msgs in the client (it sends no UNSUB): the server sends all.
        expect_eq(m.stats["in_msgs"], 11, f"subscribe(max_msgs=3) on {m.client_id}: messages the server sent")
        for nc in (u, m):
            await nc.close()
    return "UNSUB <sid> 5 (server sent exactly 5) and client-side max_msgs=3, both shards"


async def check_flush(c):
    n = 500
    # Same connection: after flush every message to itself is already in the client.
    s = await c.e[0].subscribe("fl.self")
    await flush(c.e[0])
    for i in range(n):
        await c.e[0].publish("fl.self", str(i).encode())
    await flush(c.e[0])
    expect_eq(s.pending_msgs, n, "same connection: messages buffered right after flush")
    await read_n(s, n, "fl.self")
    await s.unsubscribe()
    # Other connection (other shard): after the publisher's flush and then the
    # subscriber's flush, every message is in the subscriber.
    for pub, subnc in ((c.e[0], c.o[0]), (c.o[0], c.e[1])):
        what = f"flush: publisher {pub.client_id}, subscriber {subnc.client_id}"
        s = await subnc.subscribe("fl.other")
        await flush(subnc)
        for i in range(n):
            await pub.publish("fl.other", str(i).encode())
        await flush(pub)
        await flush(subnc)
        expect_eq(s.pending_msgs, n, f"{what}: messages buffered after both flushes")
        got = await read_n(s, n, what)
        expect_eq([m.data for m in got], seq(n), what)
        await s.unsubscribe()
        await flush(subnc)
    # The client API itself, on every connection.
    for nc in c.e + c.o:
        await nc.flush(timeout=WAIT)
    return f"{n} msgs, same connection and cross shard"


async def check_large_payload(c):
    big = os.urandom(900 * 1024)
    for pub, subnc in ((c.e[0], c.o[0]), (c.o[0], c.e[1])):
        what = f"900KB {pub.client_id} -> {subnc.client_id}"
        s = await subnc.subscribe("big.t")
        await flush(subnc)
        for k in range(3):
            await pub.publish("big.t", big[k:] + bytes([k]) * k)
        await pub.publish("big.t", big, headers={"X-Big": "yes"})
        await flush(pub)
        got = await read_n(s, 4, what)
        for k in range(3):
            expect(got[k].data == big[k:] + bytes([k]) * k, f"{what}: payload {k} differs (len {len(got[k].data)})")
        expect(got[3].data == big and got[3].headers == {"X-Big": "yes"}, f"{what}: with headers")
        await nothing_more(s, what)
        await s.unsubscribe()
        await flush(subnc)
    responder = await echo_responder(c.o[1], "big.echo", prefix=b"")
    r = await request(c.e[0], "big.echo", big)
    expect(r.data == big, f"900KB request/reply differs (len {len(r.data)})")
    await responder.unsubscribe()
    await flush(c.o[1])
    return f"{len(big)} bytes, both directions, headers, request/reply"


async def check_ordering(c):
    n = 2000
    for pub, subncs in ((c.e[0], [c.o[0], c.e[1], c.o[1]]), (c.o[0], [c.e[0], c.o[1], c.e[2]])):
        subs = [await nc.subscribe("ord.t") for nc in subncs]
        await flush(*subncs)
        for i in range(n):
            await pub.publish("ord.t", str(i).encode())
        await flush(pub)
        for nc, s in zip(subncs, subs):
            what = f"ordering {pub.client_id} -> {nc.client_id}"
            got = await read_n(s, n, what)
            data = [m.data for m in got]
            if data != seq(n):
                bad = next(i for i, d in enumerate(data) if d != str(i).encode())
                raise CheckFailed(f"{what}: message {bad} is {data[bad]!r}")
            await nothing_more(s, what)
            await s.unsubscribe()
        await flush(*subncs)
    return f"{n} msgs to 3 connections on both shards, x2"


class Conns:
    pass


async def run():
    pool = Pool()
    c = Conns()
    c.e = [await pool.get(0, "e") for _ in range(3)]
    c.o = [await pool.get(1, "o") for _ in range(3)]
    checks = [
        ("connect", lambda: check_connect(c)),
        ("pub/sub exact payloads", lambda: check_pubsub_exact(c)),
        ("wildcards", lambda: check_wildcards(c)),
        ("queue groups", lambda: check_queue_groups(c)),
        ("request/reply", lambda: check_request_reply(c)),
        ("headers", lambda: check_headers(c)),
        ("no responders", lambda: check_no_responders(c)),
        ("subscription drain", lambda: check_sub_drain(c)),
        ("connection drain", lambda: check_conn_drain(c, pool)),
        ("unsubscribe max msgs", lambda: check_unsubscribe_max(c, pool)),
        ("flush", lambda: check_flush(c)),
        ("large payload", lambda: check_large_payload(c)),
        ("ordering", lambda: check_ordering(c)),
    ]
    for name, coro in checks:
        try:
            detail = await coro()
        except Exception as e:
            if not isinstance(e, CheckFailed):
                traceback.print_exc()
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            if ASYNC_ERRORS:
                print(f"     client async errors: {ASYNC_ERRORS}", flush=True)
            return 1
        if ASYNC_ERRORS:
            print(f"FAIL {name}: client async errors: {ASYNC_ERRORS}", flush=True)
            return 1
        for nc in c.e + c.o:
            if not nc.is_connected:
                print(f"FAIL {name}: connection {nc.client_id} lost", flush=True)
                return 1
        print(f"ok   {name}: {detail}", flush=True)
    for nc in c.e + c.o:
        await nc.drain()
    print("all nats-py checks passed", flush=True)
    return 0


async def main():
    try:
        return await asyncio.wait_for(run(), TOTAL)
    except asyncio.TimeoutError:
        print(f"FAIL: script did not finish within {TOTAL}s", flush=True)
        return 1
    finally:
        for nc in ALL_CONNS:
            if not nc.is_closed:
                try:
                    await asyncio.wait_for(nc.close(), 2)
                except Exception:
                    pass


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: nats_py_client.py nats://HOST:PORT", file=sys.stderr)
        sys.exit(2)
    URL = sys.argv[1]
    sys.exit(asyncio.run(main()))
