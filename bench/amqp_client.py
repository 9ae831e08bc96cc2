"""A minimal AMQP 0-9-1 publisher (standard library only) for the amqp benchmarks.

    python3 bench/amqp_client.py URL QUEUE publish N TYPE      # N persistent task messages, confirmed
    python3 bench/amqp_client.py URL QUEUE latency TYPE FILE   # 100 single messages on an idle host
    python3 bench/amqp_client.py URL QUEUE delete              # the queue and QUEUE.dead

`latency` publishes one task at a time from an open connection and waits for the worker to append
"<id> <epoch seconds>" to FILE; it prints the median publish-to-worker-start time.
"""
import json
import socket
import statistics
import struct
import sys
import time
import urllib.parse


def shortstr(s):
    b = s.encode()
    return struct.pack("B", len(b)) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


class Amqp:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
        self.s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 5672))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.s.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(0, 10, 10)  # connection.start
        login = b"\x00" + (u.username or "guest").encode() + b"\x00" + urllib.parse.unquote(u.password or "guest").encode()
        self.method(0, 10, 11, struct.pack(">I", 0) + shortstr("PLAIN") + longstr(login) + shortstr("en_US"))
        tune = self.expect(0, 10, 30)
        channel_max, frame_max, _ = struct.unpack(">HIH", tune[:8])
        self.frame_max = frame_max or 131072
        self.method(0, 10, 31, struct.pack(">HIH", channel_max, self.frame_max, 0))
        self.method(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00")
        self.expect(0, 10, 41)
        self.method(1, 20, 10, shortstr(""))
        self.expect(1, 20, 11)
        self.method(1, 85, 10, b"\x00")  # confirm.select: the broker acks every publish
        self.expect(1, 85, 11)
        self.published = 0

    def frame(self, kind, channel, payload):
        return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"

    def method(self, channel, cls, mth, args):
        self.s.sendall(self.frame(1, channel, struct.pack(">HH", cls, mth) + args))

    def read_frame(self):
        while True:
            if len(self.buf) >= 7:
                kind, channel, size = struct.unpack(">BHI", self.buf[:7])
                if len(self.buf) >= 8 + size:
                    payload = self.buf[7 : 7 + size]
                    self.buf = self.buf[8 + size :]
                    return kind, channel, payload
            data = self.s.recv(65536)
            if not data:
                raise SystemExit("the broker closed the connection")
            self.buf += data

    def expect(self, channel, cls, mth):
        while True:
            kind, ch, payload = self.read_frame()
            if kind != 1 or ch != channel:
                continue
            c, m = struct.unpack(">HH", payload[:4])
            if (c, m) == (cls, mth):
                return payload[4:]
            if (c, m) in ((10, 50), (20, 40)):
                raise SystemExit(f"closed by the broker: {payload[6:6 + payload[6]].decode(errors='replace')}")

    def publish_bytes(self, queue, body):
        """basic.publish + content header (content-type json, persistent) + body."""
        method = struct.pack(">HHH", 60, 40, 0) + shortstr("") + shortstr(queue) + b"\x00"
        props = shortstr("application/json") + b"\x02"
        header = struct.pack(">HHQH", 60, 0, len(body), 0x8000 | 0x1000) + props
        return self.frame(1, 1, method) + self.frame(2, 1, header) + self.frame(3, 1, body)

    def publish(self, queue, body):
        self.s.sendall(self.publish_bytes(queue, body))

    def confirmed(self, n):
        """Waits until the broker confirmed the first n publishes (basic.ack, maybe `multiple`)."""
        while self.published < n:
            kind, ch, payload = self.read_frame()
            if kind == 1 and ch == 1 and payload[:4] == struct.pack(">HH", 60, 80):
                self.published = max(self.published, struct.unpack(">Q", payload[4:12])[0])
            elif kind == 1 and payload[:4] == struct.pack(">HH", 60, 120):
                raise SystemExit("the broker refused a message (basic.nack)")

    def message_count(self, queue):
        """queue.declare passive: a round trip that also proves every earlier publish was processed."""
        self.method(1, 50, 10, struct.pack(">H", 0) + shortstr(queue) + b"\x01" + struct.pack(">I", 0))
        ok = self.expect(1, 50, 11)
        n = ok[0]
        return struct.unpack(">I", ok[1 + n : 5 + n])[0]


def task(i, kind, prefix="t"):
    return json.dumps({"id": f"{prefix}{i}", "type": kind, "params": {"text": "abc"}}).encode()


def main():
    url, queue, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    c = Amqp(url)
    if mode == "delete":
        for q in (queue, queue + ".dead"):
            c.method(1, 50, 40, struct.pack(">H", 0) + shortstr(q) + b"\x00")
            c.expect(1, 50, 41)
        return
    if mode == "publish":
        n, kind = int(sys.argv[4]), sys.argv[5]
        batch = b""
        for i in range(1, n + 1):
            batch += c.publish_bytes(queue, task(i, kind))
            if len(batch) > 256 * 1024:
                c.s.sendall(batch)
                batch = b""
        c.s.sendall(batch)
        c.confirmed(n)
        print(c.message_count(queue))
        return
    kind, starts = sys.argv[4], sys.argv[5]

    def seen():
        try:
            with open(starts) as f:
                return dict(l.split() for l in f if l.strip())
        except FileNotFoundError:
            return {}

    lat = []
    for i in range(100):
        tid = f"lat{i}"
        time.sleep(0.2)  # idle again: the host waits in its claim
        t0 = time.time()
        c.publish(queue, task(i, kind, "lat"))
        deadline = t0 + 10
        while tid not in (st := seen()):
            if time.time() > deadline:
                raise SystemExit(f"task {tid} never started")
            time.sleep(0.001)
        lat.append((float(st[tid]) - t0) * 1000)
    lat.sort()
    print(
        f"latency publish -> worker start, 100 tasks on an idle host: median {statistics.median(lat):.2f} ms, "
        f"p90 {lat[89]:.2f} ms, min {lat[0]:.2f} ms, max {lat[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main()
