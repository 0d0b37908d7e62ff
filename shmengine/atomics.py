"""Memory-ordering verbs for numba kernels over shared memory.

Each verb is a numba intrinsic that emits one LLVM atomic instruction or
fence, so kernels that use them stay in nopython mode and cacheable:

    load_acquire(a, i)         a[i], later loads and stores stay after it
    load_seq_cst(a, i)         a[i], in the single total order of seq_cst operations
    store_release(a, i, v)     a[i] = v, earlier loads and stores stay before it
    store_seq_cst(a, i, v)     a[i] = v, and later loads stay after it (StoreLoad)
    fence_acquire()            earlier loads stay before later loads and stores
    fence_release()            earlier loads and stores stay before later stores
    fetch_add(a, i, v)         a[i] += v atomically, returns the old value
    cpu_relax()                the PAUSE hint inside a spin loop
    sched_yield()              give the core to another runnable thread
    monotonic_ns()             CLOCK_MONOTONIC, ns
    futex_wait(a, i, v, ns)    sleep while a[i] == v (a: uint32 array)
    futex_wake(a, i)           wake the sleepers on a[i]

The futex and clock verbs call the C core (``shmengine._core``) by symbol
name; the library is loaded into the process's global namespace at import,
so cached machine code finds it again in every process.
"""
import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import _core

llvm.load_library_permanently(_core.__file__)


def _item_pointer(context, builder, arrty, arr, idx, idxty):
    ary = context.make_array(arrty)(context, builder, arr)
    i = context.cast(builder, idx, idxty, types.intp)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [i], wraparound=False)


def _align(arrty):
    return arrty.dtype.bitwidth // 8


def _load(ordering):
    def verb(typingctx, arr, idx):
        def codegen(context, builder, sig, args):
            ptr = _item_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            return builder.load_atomic(ptr, ordering=ordering, align=_align(sig.args[0]))
        return arr.dtype(arr, idx), codegen
    return verb


load_acquire = intrinsic(_load("acquire"))
load_relaxed = intrinsic(_load("monotonic"))
load_seq_cst = intrinsic(_load("seq_cst"))


@intrinsic
def fetch_add(typingctx, arr, idx, val):
    def codegen(context, builder, sig, args):
        arrty = sig.args[0]
        ptr = _item_pointer(context, builder, arrty, args[0], args[1], sig.args[1])
        v = context.cast(builder, args[2], sig.args[2], arrty.dtype)
        return builder.atomic_rmw("add", ptr, v, ordering="seq_cst")
    return arr.dtype(arr, idx, val), codegen


def _store(ordering):
    def verb(typingctx, arr, idx, val):
        def codegen(context, builder, sig, args):
            arrty = sig.args[0]
            ptr = _item_pointer(context, builder, arrty, args[0], args[1], sig.args[1])
            v = context.cast(builder, args[2], sig.args[2], arrty.dtype)
            builder.store_atomic(v, ptr, ordering=ordering, align=_align(arrty))
            return context.get_dummy_value()
        return types.void(arr, idx, val), codegen
    return verb


store_release = intrinsic(_store("release"))
store_relaxed = intrinsic(_store("monotonic"))
store_seq_cst = intrinsic(_store("seq_cst"))


def _fence(ordering):
    def verb(typingctx):
        def codegen(context, builder, sig, args):
            builder.fence(ordering)
            return context.get_dummy_value()
        return types.void(), codegen
    return verb


fence_acquire = intrinsic(_fence("acquire"))
fence_release = intrinsic(_fence("release"))
fence_seq_cst = intrinsic(_fence("seq_cst"))


@intrinsic
def cpu_relax(typingctx):
    def codegen(context, builder, sig, args):
        builder.call(_c_function(builder, "llvm.x86.sse2.pause", ir.VoidType(), []), [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def sched_yield(typingctx):
    def codegen(context, builder, sig, args):
        builder.call(_c_function(builder, "sched_yield", ir.IntType(32), []), [])
        return context.get_dummy_value()
    return types.void(), codegen


def _c_function(builder, name, ret, argtys):
    fnty = ir.FunctionType(ret, argtys)
    return cgutils.get_or_insert_function(builder.module, fnty, name)


@intrinsic
def monotonic_ns(typingctx):
    def codegen(context, builder, sig, args):
        fn = _c_function(builder, "shme_monotonic_ns", ir.IntType(64), [])
        return builder.call(fn, [])
    return types.int64(), codegen


@intrinsic
def futex_wait(typingctx, arr, idx, expected, timeout_ns):
    def codegen(context, builder, sig, args):
        ptr = _item_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        exp = context.cast(builder, args[2], sig.args[2], types.uint32)
        tmo = context.cast(builder, args[3], sig.args[3], types.int64)
        fn = _c_function(builder, "shme_futex_wait", ir.IntType(32),
                         [ptr.type, ir.IntType(32), ir.IntType(64)])
        return builder.call(fn, [ptr, exp, tmo])
    return types.int32(arr, idx, expected, timeout_ns), codegen


@intrinsic
def futex_wake(typingctx, arr, idx):
    def codegen(context, builder, sig, args):
        ptr = _item_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        fn = _c_function(builder, "shme_futex_wake", ir.IntType(32), [ptr.type, ir.IntType(32)])
        return builder.call(fn, [ptr, ir.Constant(ir.IntType(32), 2147483647)])
    return types.int32(arr, idx), codegen


def prefetch(array, index):
    """Hint that array[index] is about to be read (nothing, without the JIT)."""


def _emit_prefetch(context, builder, arrty, array, index, nbytes, write):
    """PREFETCH (or PREFETCHW) each 64-byte step of nbytes from &array[index]."""
    ary = context.make_array(arrty)(context, builder, array)
    ptr = cgutils.get_item_pointer(context, builder, arrty, ary, [index], wraparound=False)
    i8p = ir.IntType(8).as_pointer()
    base = builder.bitcast(ptr, i8p)
    i32 = ir.IntType(32)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
    for k in range(0, nbytes, 64):
        line = builder.gep(base, [ir.Constant(ir.IntType(64), k)])
        # read or write, keep in all cache levels, data
        builder.call(fn, [line, i32(1 if write else 0), i32(3), i32(1)])
    return context.get_dummy_value()


@intrinsic
def _prefetch_intrinsic(typingctx, array, index):
    def codegen(context, builder, sig, args):
        return _emit_prefetch(context, builder, sig.args[0], args[0], args[1], 1, False)
    return types.void(array, index), codegen


@overload(prefetch, jit_options={"_nrt": False})
def _prefetch_jit(array, index):
    return lambda array, index: _prefetch_intrinsic(array, index)


def prefetch_record(array, index, write):
    """Hint that every cache line of array[index] is about to be read (``write``
    False) or written (True: PREFETCHW, the line comes in owned): one prefetch
    per 64 bytes from the record's start, so all its lines when it starts on
    one (ring slots and table rows do). Nothing without the JIT."""


@intrinsic
def _prefetch_record_intrinsic(typingctx, array, index, write):
    if not isinstance(write, types.BooleanLiteral):
        return None

    def codegen(context, builder, sig, args):
        arrty = sig.args[0]
        itemsize = context.get_abi_sizeof(context.get_data_type(arrty.dtype))
        return _emit_prefetch(context, builder, arrty, args[0], args[1], itemsize,
                              write.literal_value)
    return types.void(array, index, write), codegen


@overload(prefetch_record, jit_options={"_nrt": False}, prefer_literal=True)
def _prefetch_record_jit(array, index, write):
    if not isinstance(write, types.BooleanLiteral):
        return None
    flag = write.literal_value
    if flag:
        return lambda array, index, write: _prefetch_record_intrinsic(array, index, True)
    return lambda array, index, write: _prefetch_record_intrinsic(array, index, False)
