"""multiprocessing.Queue links: the standard library's way between processes.

Every message is a bytes copy of a record array; the queue pickles it on a
feeder thread and writes it into a pipe, and the reader unpickles it. There
is no batched receive, so a batch is one message and ``get_batch`` returns
one message.
"""


class Sender:
    def __init__(self, queue):
        self.queue = queue

    def put(self, records):
        self.queue.put(records.tobytes())

    def put_batch(self, arrays):
        for a in arrays:
            self.queue.put(a.tobytes())

    def close(self):
        # The feeder thread must have written everything before the process exits.
        self.queue.close()
        self.queue.join_thread()


class Receiver:
    def __init__(self, queue):
        self.queue = queue

    def get(self):
        return self.queue.get()

    def get_batch(self):
        return [self.queue.get()]

    def close(self):
        pass


class Transport:
    """One queue per worker (feed -> worker) and one shared by all workers
    (workers -> aggregator), each bounded to ``depth_in`` / ``depth_out``
    messages so a slow stage blocks the one before it, like the engine's rings."""

    label = "mp.Queue"

    def __init__(self, ctx, n_workers, tmpdir, depth_in, depth_out, in_bytes, out_bytes):
        self.inputs = [ctx.Queue(depth_in) for _ in range(n_workers)]
        self.output = ctx.Queue(depth_out)

    def feed_side(self):
        return [Sender(q) for q in self.inputs]

    def worker_side(self, w):
        return Receiver(self.inputs[w]), Sender(self.output)

    def aggregator_side(self):
        return Receiver(self.output)

    def finish(self):
        pass

    def close(self):
        for q in self.inputs + [self.output]:
            q.close()
            q.cancel_join_thread()

