"""pyzmq PUSH/PULL links over ``ipc://`` sockets (Unix domain sockets).

Each worker binds a PULL socket the feed PUSHes to; the aggregator binds one
PULL socket every worker PUSHes to. A batch is sent with ``copy=False``, so
libzmq sends from the array itself (the stages never reuse an array they
sent), and received with ``copy=False``, so the records are read in place in
libzmq's message. One event per message uses the plain ``send`` / ``recv``
of bytes. The socket files live in the run's private directory.
"""
import os

import zmq

LINGER_MS = 1_000
RECONNECT_MS = 1  # a PUSH may connect before its PULL is bound: retry at once, not after 100 ms


class Sender:
    def __init__(self, socket):
        self.socket = socket

    def put(self, records):
        self.socket.send(records)

    def put_batch(self, arrays):
        for a in arrays:
            self.socket.send(a, copy=False)

    def close(self):
        self.socket.close(linger=LINGER_MS)


class Receiver:
    def __init__(self, socket):
        self.socket = socket

    def get(self):
        return self.socket.recv()

    def get_batch(self):
        return [self.socket.recv(copy=False).buffer]

    def close(self):
        self.socket.close(linger=0)


class Transport:
    """Socket addresses of one run; sockets are made in each process after the
    fork (a zmq context must not cross a fork). High-water marks of
    ``depth_in`` / ``depth_out`` messages on each side make a full link block
    its producers, like the engine's rings."""

    label = "zmq ipc"

    def __init__(self, ctx, n_workers, tmpdir, depth_in, depth_out, in_bytes, out_bytes):
        self.inputs = [f"ipc://{os.path.join(tmpdir, f'in.{w}')}" for w in range(n_workers)]
        self.output = f"ipc://{os.path.join(tmpdir, 'out')}"
        self.depth_in = depth_in
        self.depth_out = depth_out

    def _socket(self, kind, hwm):
        s = zmq.Context.instance().socket(kind)
        s.setsockopt(zmq.SNDHWM if kind == zmq.PUSH else zmq.RCVHWM, hwm)
        return s

    def _push(self, address, hwm):
        s = self._socket(zmq.PUSH, hwm)
        s.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        s.connect(address)
        return Sender(s)

    def feed_side(self):
        return [self._push(address, self.depth_in) for address in self.inputs]

    def worker_side(self, w):
        pull = self._socket(zmq.PULL, self.depth_in)
        pull.bind(self.inputs[w])
        return Receiver(pull), self._push(self.output, self.depth_out)

    def aggregator_side(self):
        pull = self._socket(zmq.PULL, self.depth_out)
        pull.bind(self.output)
        return Receiver(pull)

    def finish(self):
        zmq.Context.instance().term()

    def close(self):
        pass
