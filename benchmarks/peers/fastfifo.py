"""faster_fifo.Queue links: a circular buffer in shared memory under a
process-shared mutex, with ``put_many`` / ``get_many`` moving many messages
for one lock.

Messages are the raw bytes of record arrays, not pickles. A message received
is a memoryview into the queue's receive buffer, valid until the next get on
that queue: the stages consume every message before they get again.
"""
from queue import Empty, Full

import faster_fifo

WAIT_S = 1.0  # the library raises after a timeout; blocking means retrying


def _raw(message):
    return message


class Sender:
    def __init__(self, queue):
        self.queue = queue

    def put(self, records):
        self.put_batch([records])

    def put_batch(self, arrays):
        messages = [a.tobytes() for a in arrays]
        while True:
            try:
                self.queue.put_many(messages, timeout=WAIT_S)
                return
            except Full:
                continue

    def close(self):
        pass


class Receiver:
    def __init__(self, queue, most):
        self.queue = queue
        self.most = most

    def get(self):
        return self._get(1)[0]

    def get_batch(self):
        return self._get(self.most)

    def _get(self, most):
        while True:
            try:
                return self.queue.get_many(timeout=WAIT_S, max_messages_to_get=most)
            except Empty:
                continue

    def close(self):
        pass


class Transport:
    """One queue per worker (feed -> worker) and one shared by all workers
    (workers -> aggregator), of ``in_bytes`` / ``out_bytes``: a full queue
    blocks its producers, like the engine's rings."""

    label = "faster-fifo"

    def __init__(self, ctx, n_workers, tmpdir, depth_in, depth_out, in_bytes, out_bytes):
        self.depth_in = depth_in
        self.depth_out = depth_out
        self.inputs = [faster_fifo.Queue(in_bytes, loads=_raw, dumps=_raw)
                       for _ in range(n_workers)]
        self.output = faster_fifo.Queue(out_bytes, loads=_raw, dumps=_raw)

    def feed_side(self):
        return [Sender(q) for q in self.inputs]

    def worker_side(self, w):
        return Receiver(self.inputs[w], self.depth_in), Sender(self.output)

    def aggregator_side(self):
        return Receiver(self.output, self.depth_out)

    def finish(self):
        pass

    def close(self):
        for q in self.inputs + [self.output]:
            q.close()
