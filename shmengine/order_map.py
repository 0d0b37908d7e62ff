"""The order map: every live order of a worker's books, by venue and order id.

    orders, order_info, displaced = new_order_map(max_orders=1 << 20)
    j = find_symbol_order(orders, order_info, venue_info, order_key(order_id, venue), s)

The kernels take ``venue_info`` (int64[n_local, n_venues, 2]: GENERATION,
VENUE_ORDERS of each (symbol, venue)) beside the map's own arrays, and are
inlined into the book kernel (``book.process``).

A slot holds a live order only while its
generation equals the generation of its (symbol, venue): EV_CLEAR bumps that
and so empties a venue's book in O(1); stale slots are reused by an add of
the same key or freed by a sweep when the map fills.

The map is open addressing with linear probing. It starts keyed by the order
id itself (home slot = id modulo the size): feeds number their orders in
one sequence (ITCH order reference numbers, the synthetic market's ids), so
an add lands next to the one before it and the orders a feed is about to
touch sit in few cache lines. Ids that do not spread that way (a stride of
the map's size, or venues that number their orders each from 1) pile up on
few homes; once some key lies more than _SEQUENTIAL_LIMIT slots past its home,
even with the stale slots freed, the map rehashes itself in place, once, to
Fibonacci hashing of the key.

Deleting shifts back the keys after the hole that may fill it, which only a
key lying past its home can. Keyed by id, few do, but the cluster after a
recent order is long (the orders after it are mostly live): `displaced`
counts, per block of 64 slots, the keys lying past their home, and a delete
with none in reach of the hole only empties its slot.
"""
import numpy as np
from numba import njit

from .atomics import prefetch
from .layout import EV_ADD, EV_REPLACE, MAX_VENUES

MAX_ORDER_ID = 1 << 61  # the order map key keeps the venue in the low three bits
assert MAX_VENUES <= 8

ORDER = np.dtype([
    ("key", "<u8"),         # (order_id << 3) | venue; 0 marks an empty slot
    ("price", "<i8"),
    ("qty", "<u4"),
    ("generation", "<u4"),
    ("symbol", "<i4"),      # local symbol index
    ("side", "u1"),
    ("moving", "u1"),       # 1 while a rehash has still to move the slot's key
    ("_pad", "u1", 2),
], align=True)
assert ORDER.itemsize == 32

# order_info words
LIVE = 0              # live orders
OCCUPIED = 1          # slots in use, live or stale
MAX_ORDERS = 2        # live orders the map accepts
HASH_SHIFT = 3        # 32 - log2(len(orders))
MAX_DISPLACEMENT = 4  # no key lies further than this past its home slot
HASHED = 5            # 0: homes by order id; 1: by Fibonacci hashing
N_ORDER_INFO = 6

_SEQUENTIAL_LIMIT = 32  # a displacement past this turns hashing on
_BLOCK_SHIFT = 6        # displaced keys are counted per 2**_BLOCK_SHIFT slots

# venue_info words
GENERATION = 0
VENUE_ORDERS = 1  # live orders of the (symbol, venue)


def _capacity(max_orders):
    """Slots of a map for max_orders: live orders fill at most half of it (a sweep
    frees stale slots at three quarters)."""
    capacity = 8
    while capacity < 2 * max_orders:
        capacity *= 2
    return capacity


def map_nbytes(max_orders):
    """Bytes of the arrays new_order_map(max_orders) makes."""
    capacity = _capacity(max_orders)
    return capacity * ORDER.itemsize + N_ORDER_INFO * 8 + max(1, capacity >> _BLOCK_SHIFT)


def new_order_map(max_orders):
    """(orders, order_info, displaced) of an empty map for up to max_orders live orders."""
    capacity = _capacity(max_orders)
    order_info = np.zeros(N_ORDER_INFO, np.int64)
    order_info[MAX_ORDERS] = max_orders
    order_info[HASH_SHIFT] = 32 - (capacity.bit_length() - 1)
    return (np.zeros(capacity, ORDER), order_info,
            np.zeros(max(1, capacity >> _BLOCK_SHIFT), np.uint8))


@njit(cache=True, _nrt=False, inline="always")
def valid_order_id(order_id):
    return order_id != 0 and (order_id >> np.uint64(61)) == 0


@njit(cache=True, _nrt=False, inline="always")
def order_key(order_id, venue):
    return (order_id << np.uint64(3)) | np.uint64(venue)


@njit(cache=True, _nrt=False, inline="always")
def key_venue(key):
    return np.int64(key & np.uint64(7))


@njit(cache=True, _nrt=False, inline="always")
def home_slot(key, order_info):
    hash_shift = np.uint64(order_info[HASH_SHIFT])
    if order_info[HASHED]:
        # Fibonacci hashing of the key folded to 32 bits: the product stays
        # below 2**64, so it neither wraps nor warns when run as plain Python.
        folded = (key ^ (key >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
        return np.int64(((folded * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFFFF))
                        >> hash_shift)
    return np.int64((key >> np.uint64(3))
                    & ((np.uint64(1) << (np.uint64(32) - hash_shift)) - np.uint64(1)))


@njit(cache=True, _nrt=False, inline="always")
def find_slot(orders, order_info, key):
    """Slot holding key (live or stale), or -1."""
    mask = orders.shape[0] - 1
    home = home_slot(key, order_info)
    bound = order_info[MAX_DISPLACEMENT]
    j = home
    while True:
        k = orders[j]["key"]
        if k == key:
            return j
        if k == 0 or ((j - home) & mask) >= bound:
            return -1
        j = (j + 1) & mask


@njit(cache=True, _nrt=False, inline="always")
def is_live(orders, venue_info, j):
    if j < 0:
        return False
    o = orders[j]
    return np.int64(o["generation"]) == venue_info[o["symbol"], key_venue(o["key"]), GENERATION]


@njit(cache=True, _nrt=False, inline="always")
def find_symbol_order(orders, order_info, venue_info, key, s):
    """Slot of the live order key of local symbol s, or -1."""
    j = find_slot(orders, order_info, key)
    if is_live(orders, venue_info, j) and orders[j]["symbol"] == s:
        return j
    return -1


@njit(cache=True, _nrt=False, inline="always")
def insert_order(orders, order_info, displaced, venue_info, key, s, side, price, qty):
    """Insert a key that is not live (a stale slot of the same key is reused)."""
    capacity = orders.shape[0]
    if order_info[OCCUPIED] >= capacity - capacity // 4:
        _sweep(orders, order_info, displaced, venue_info)
    mask = capacity - 1
    home = home_slot(key, order_info)
    j = home
    while orders[j]["key"] != 0 and orders[j]["key"] != key:
        j = (j + 1) & mask
    fresh = orders[j]["key"] == 0
    if fresh:
        order_info[OCCUPIED] += 1
    venue = key_venue(key)
    _put(orders[j], key, price, qty, venue_info[s, venue, GENERATION], s, side)
    order_info[LIVE] += 1
    venue_info[s, venue, VENUE_ORDERS] += 1
    displacement = (j - home) & mask
    if fresh and displacement != 0:
        displaced[j >> _BLOCK_SHIFT] += 1
    if displacement > order_info[MAX_DISPLACEMENT]:
        order_info[MAX_DISPLACEMENT] = displacement
        if displacement > _SEQUENTIAL_LIMIT and not order_info[HASHED]:
            _spread_out(orders, order_info, displaced, venue_info)


@njit(cache=True, _nrt=False)
def _spread_out(orders, order_info, displaced, venue_info):
    """A key lies too far past its home: free the stale slots first (a cleared
    book's orders may be what lengthens the cluster), and rehash only if some
    key still lies more than _SEQUENTIAL_LIMIT past its home."""
    if order_info[OCCUPIED] > order_info[LIVE]:
        _sweep(orders, order_info, displaced, venue_info)
        mask = orders.shape[0] - 1
        furthest = 0
        for j in range(orders.shape[0]):
            if orders[j]["key"] != 0:
                furthest = max(furthest, (j - home_slot(orders[j]["key"], order_info)) & mask)
        order_info[MAX_DISPLACEMENT] = furthest
    if order_info[MAX_DISPLACEMENT] > _SEQUENTIAL_LIMIT:
        _rehash(orders, order_info, displaced, venue_info)


@njit(cache=True, _nrt=False, inline="always")
def _put(o, key, price, qty, generation, s, side):
    o["key"] = key
    o["price"] = price
    o["qty"] = qty
    o["generation"] = generation
    o["symbol"] = s
    o["side"] = side
    o["moving"] = 0


@njit(cache=True, _nrt=False, inline="always")
def remove_order(orders, order_info, displaced, venue_info, j):
    o = orders[j]
    order_info[LIVE] -= 1
    venue_info[o["symbol"], key_venue(o["key"]), VENUE_ORDERS] -= 1
    _free_slot(orders, order_info, displaced, j)


@njit(cache=True, _nrt=False, inline="always")
def _free_slot(orders, order_info, displaced, j):
    """Empty slot j, shifting back later keys of its cluster so probes stay unbroken.

    A key may fill the hole unless its home lies cyclically in (hole, k]: it
    must lie at least k - hole past its home. No key lies more than
    MAX_DISPLACEMENT past its home, so the search ends that far past the hole,
    and it is skipped when the blocks of the slots in reach count no key
    lying past its home.
    """
    mask = orders.shape[0] - 1
    bound = order_info[MAX_DISPLACEMENT]
    if j != home_slot(orders[j]["key"], order_info):
        displaced[j >> _BLOCK_SHIFT] -= 1
    if (bound > 1 << _BLOCK_SHIFT or displaced[((j + 1) & mask) >> _BLOCK_SHIFT] != 0
            or displaced[((j + bound) & mask) >> _BLOCK_SHIFT] != 0):
        j = _shift_back(orders, order_info, displaced, j)
    orders[j]["key"] = 0
    order_info[OCCUPIED] -= 1


@njit(cache=True, _nrt=False)
def _shift_back(orders, order_info, displaced, j):
    """Move later keys of the cluster back into the hole at slot j, one by one;
    returns the slot left empty."""
    mask = orders.shape[0] - 1
    bound = order_info[MAX_DISPLACEMENT]
    hole = j
    k = (j + 1) & mask
    while orders[k]["key"] != 0 and ((k - hole) & mask) <= bound:
        past = (k - home_slot(orders[k]["key"], order_info)) & mask
        if past >= ((k - hole) & mask):
            orders[hole] = orders[k]
            displaced[k >> _BLOCK_SHIFT] -= 1
            if past != ((k - hole) & mask):
                displaced[hole >> _BLOCK_SHIFT] += 1
            hole = k
        k = (k + 1) & mask
    return hole


@njit(cache=True, _nrt=False)
def _rehash(orders, order_info, displaced, venue_info):
    """Turn Fibonacci hashing on, moving every live key in place; stale slots are freed.

    Slots still to move are marked. Each is taken out and its key carried to
    its new home: the first slot on from there that is empty takes it, and one
    still to move swaps with it, its key carried on in turn. A moved key never
    probes past a slot still to move, so emptying such a slot breaks no probe.
    """
    mask = orders.shape[0] - 1
    for j in range(orders.shape[0]):
        orders[j]["moving"] = orders[j]["key"] != 0
    order_info[HASHED] = 1
    order_info[MAX_DISPLACEMENT] = 0
    for j in range(orders.shape[0]):
        if not orders[j]["moving"]:
            continue
        if not is_live(orders, venue_info, j):
            orders[j]["key"] = 0
            orders[j]["moving"] = 0
            order_info[OCCUPIED] -= 1
            continue
        o = orders[j]
        key, price, qty = o["key"], o["price"], o["qty"]
        generation, s, side = o["generation"], o["symbol"], o["side"]
        o["key"] = 0
        o["moving"] = 0
        while True:
            home = home_slot(key, order_info)
            t = home
            while orders[t]["key"] != 0 and not orders[t]["moving"]:
                t = (t + 1) & mask
            order_info[MAX_DISPLACEMENT] = max(order_info[MAX_DISPLACEMENT], (t - home) & mask)
            o = orders[t]
            if o["key"] == 0:
                _put(o, key, price, qty, generation, s, side)
                break
            # a key still to move: it takes this one's place and is carried on
            bumped = (o["key"], o["price"], o["qty"], o["generation"], o["symbol"], o["side"])
            _put(o, key, price, qty, generation, s, side)
            key, price, qty, generation, s, side = bumped
            if generation != venue_info[s, key_venue(key), GENERATION]:
                order_info[OCCUPIED] -= 1  # stale: dropped
                break
    displaced[:] = 0
    for j in range(orders.shape[0]):
        if orders[j]["key"] != 0 and j != home_slot(orders[j]["key"], order_info):
            displaced[j >> _BLOCK_SHIFT] += 1


@njit(cache=True, _nrt=False)
def _sweep(orders, order_info, displaced, venue_info):
    """Free every stale slot."""
    j = 0
    while j < orders.shape[0]:
        # a freed slot may receive a later key: look at it again
        if orders[j]["key"] != 0 and not is_live(orders, venue_info, j):
            _free_slot(orders, order_info, displaced, j)
        else:
            j += 1


@njit(cache=True, _nrt=False, inline="always")
def prefetch_order(ev, orders, order_info):
    """Start loading the slots an upcoming event will probe."""
    etype = ev["type"]
    if etype < EV_ADD or etype > EV_REPLACE:
        return
    venue = np.uint64(ev["venue"] & 7)
    prefetch(orders, home_slot(order_key(ev["order_id"], venue), order_info))
    if etype == EV_REPLACE:
        prefetch(orders, home_slot(order_key(ev["new_order_id"], venue), order_info))
