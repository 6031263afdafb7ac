# cython: cdivision=True, boundscheck=False, wraparound=False, initializedcheck=False
"""Memory bandwidth, measured with our own STREAM-style kernels (chapter 6).

John McCalpin's STREAM benchmark times four loops over arrays of doubles: copy (c = a), scale
(b = s*c), add (c = a + b) and triad (a = b + s*c). Each does almost no arithmetic per byte, so
its speed is the speed of the memory that holds the arrays: registers and L1 for a few KiB, L2,
L3, then DRAM once the arrays outgrow the last cache. `stream_seconds` allocates three arrays of
n doubles, splits them into one contiguous slab per thread, and times `passes` passes of one
kernel; every thread runs its passes on its own slab with no barrier in between, so a slab that
fits in a core's cache stays there.

The four loops are C, compiled for several vector widths (GCC's `target_clones`: the loader picks
the widest this CPU runs, AVX-512, AVX2 or the baseline), so one portable build measures what
the widest loads and stores of this core can move. The driver, the threads and the checks are
Cython.
"""
import os

from cython.parallel cimport parallel, threadid
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

cdef extern from "<stdlib.h>":
    void* aligned_alloc(size_t alignment, size_t size) nogil

cdef extern from *:
    """
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
    #define FASTOPS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define FASTOPS_CLONES
    #endif
    /* every loop writes dst from x (and y): dst = x, s*x, x + y, x + s*y */
    FASTOPS_CLONES static void stream_copy(double* dst, const double* x, const double* y,
                                           double s, Py_ssize_t n) {
        (void)y; (void)s;
        for (Py_ssize_t i = 0; i < n; i++) dst[i] = x[i];
    }
    FASTOPS_CLONES static void stream_scale(double* dst, const double* x, const double* y,
                                            double s, Py_ssize_t n) {
        (void)y;
        for (Py_ssize_t i = 0; i < n; i++) dst[i] = s * x[i];
    }
    FASTOPS_CLONES static void stream_add(double* dst, const double* x, const double* y,
                                          double s, Py_ssize_t n) {
        (void)s;
        for (Py_ssize_t i = 0; i < n; i++) dst[i] = x[i] + y[i];
    }
    FASTOPS_CLONES static void stream_triad(double* dst, const double* x, const double* y,
                                            double s, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) dst[i] = x[i] + s * y[i];
    }
    """
    void stream_copy(double*, const double*, const double*, double, Py_ssize_t) noexcept nogil
    void stream_scale(double*, const double*, const double*, double, Py_ssize_t) noexcept nogil
    void stream_add(double*, const double*, const double*, double, Py_ssize_t) noexcept nogil
    void stream_triad(double*, const double*, const double*, double, Py_ssize_t) noexcept nogil

ctypedef void (*stream_fn)(double*, const double*, const double*, double,
                           Py_ssize_t) noexcept nogil

# kernel -> (arrays read, arrays written) per element: STREAM's byte count (8 bytes a double)
KERNELS = {"copy": (1, 1), "scale": (1, 1), "add": (2, 1), "triad": (2, 1)}
ARRAYS = 3  # a, b, c


cdef double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def available_memory_bytes() -> int:
    """Memory the OS can give right now (free pages), in bytes: the bandwidth kernel's limit."""
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def stream_bytes(str kernel, Py_ssize_t n) -> int:
    """Bytes one pass of `kernel` over n elements reads and writes (STREAM's convention)."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}: use one of {', '.join(KERNELS)}")
    reads, writes = KERNELS[kernel]
    return 8 * n * (reads + writes)


def stream_seconds(str kernel, Py_ssize_t n, int num_threads=1, Py_ssize_t passes=1,
                   int repeats=5) -> float:
    """Best wall time in seconds of one pass of `kernel` over n doubles per array (the least of
    stream_times' timings)."""
    return min(stream_times(kernel, n, num_threads, passes, repeats))


def stream_times(str kernel, Py_ssize_t n, int num_threads=1, Py_ssize_t passes=1,
                 int repeats=5) -> list:
    """Wall time in seconds of one pass of `kernel` over n doubles per array, for each repeat.

    Three arrays of n doubles are allocated (and touched by the threads that will use them);
    each of `repeats` timings runs `passes` passes on num_threads threads, each thread on its own
    contiguous slab, inside one parallel region: with tiny n, a timing is the cost of entering
    and leaving that region. Raises ValueError for an unknown kernel, non-positive sizes or
    counts, more threads than CPUs, or arrays that would not fit in the free memory.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}: use one of {', '.join(KERNELS)}")
    if n < 1 or passes < 1 or repeats < 1:
        raise ValueError(f"n ({n}), passes ({passes}) and repeats ({repeats}) must be >= 1")
    cpus = os.cpu_count() or 1
    if not 1 <= num_threads <= cpus:
        raise ValueError(f"num_threads must be between 1 and the {cpus} CPUs, got {num_threads}")
    if n < num_threads:
        raise ValueError(f"n ({n}) must be at least num_threads ({num_threads})")
    needed, free_bytes = ARRAYS * 8 * n, available_memory_bytes()  # Python ints: no overflow
    if needed > free_bytes:
        raise ValueError(f"{ARRAYS} arrays of {n:,} doubles need {ARRAYS * 8 * n / 2**30:.2f} GiB;"
                         f" this machine has {free_bytes / 2**30:.2f} GiB free")
    cdef size_t padded = (8 * <size_t>n + 63) // 64 * 64  # aligned_alloc wants a multiple
    cdef double* a = <double*>aligned_alloc(64, padded)
    cdef double* b = <double*>aligned_alloc(64, padded)
    cdef double* c = <double*>aligned_alloc(64, padded)
    cdef Py_ssize_t part = (n + num_threads - 1) // num_threads, lo, hi, p, i
    cdef int r
    cdef double start
    cdef double* times = <double*>malloc(repeats * sizeof(double))
    cdef stream_fn fn
    cdef double* dst
    cdef double* x
    cdef double* y
    try:
        if a == NULL or b == NULL or c == NULL or times == NULL:
            raise MemoryError(f"could not allocate {ARRAYS} arrays of {n:,} doubles")
        # STREAM's roles: copy c = a; scale b = 3c; add c = a + b; triad a = b + 3c
        if kernel == "copy":
            fn, dst, x, y = stream_copy, c, a, b
        elif kernel == "scale":
            fn, dst, x, y = stream_scale, b, c, a
        elif kernel == "add":
            fn, dst, x, y = stream_add, c, a, b
        else:
            fn, dst, x, y = stream_triad, a, b, c
        with nogil:
            with parallel(num_threads=num_threads):  # first touch: pages near their thread
                lo = threadid() * part
                hi = min(n, lo + part)
                if hi > lo:
                    for i in range(lo, hi):
                        a[i] = 1.0
                        b[i] = 2.0
                    memset(c + lo, 0, (hi - lo) * sizeof(double))
            for r in range(repeats):
                start = _now()
                with parallel(num_threads=num_threads):
                    lo = threadid() * part
                    hi = min(n, lo + part)
                    if hi > lo:
                        for p in range(passes):
                            fn(dst + lo, x + lo, y + lo, 3.0, hi - lo)
                times[r] = (_now() - start) / passes
        return [times[r] for r in range(repeats)]
    finally:
        free(a)
        free(b)
        free(c)
        free(times)
