# BLAS dispatch and CPU detection: which code runs a matrix product, decided at run time.
#
# Products run in our own loops (kernels.pxi), or in the BLAS that NumPy ships (OpenBLAS) once
# `register_numpy_blas` has found it and the product is large enough (`set_blas_threshold`). The
# extension looks the library up itself (dlopen/dlsym on the file inside NumPy's wheel): nothing
# settable from Python is an address that C would jump to. Once found, the two function pointers
# never change again (the library stays loaded); switching BLAS off only clears `_blas_on`, so a
# kernel running in another thread never reads a pointer that is being unset.
#
# These settings are process-wide. Changing them while another thread is inside fastops changes
# which code runs the rest of that step (the results may differ in rounding), never its safety.

from pathlib import Path

cdef extern from "<dlfcn.h>" nogil:
    void* dlopen(const char* filename, int flags)
    void* dlsym(void* handle, const char* symbol)
    int RTLD_NOW
    int RTLD_LOCAL

# cblas_?gemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), 64-bit ints
# (NumPy bundles OpenBLAS built with ILP64 symbols `scipy_cblas_?gemm64_`).
ctypedef void (*dgemm_t)(int, int, int, int64_t, int64_t, int64_t, double, const double*,
                         int64_t, const double*, int64_t, double, double*, int64_t) noexcept nogil
ctypedef void (*sgemm_t)(int, int, int, int64_t, int64_t, int64_t, float, const float*,
                         int64_t, const float*, int64_t, float, float*, int64_t) noexcept nogil
ctypedef void (*set_threads_t)(int) noexcept nogil  # openblas_set_num_threads
ctypedef int (*get_threads_t)() noexcept nogil      # openblas_get_num_threads

cdef enum:
    ROW_MAJOR = 101
    NO_TRANS = 111
    TRANS = 112

cdef dgemm_t _dgemm = NULL   # set once, by register_numpy_blas, to a function of NumPy's OpenBLAS
cdef sgemm_t _sgemm = NULL
cdef set_threads_t _blas_set_threads = NULL  # OpenBLAS' own thread count, when it exports one
cdef get_threads_t _blas_get_threads = NULL
cdef object _blas_path = None
cdef bint _blas_on = False
cdef int64_t _blas_min_flops = 1 << 62     # BLAS off until set_blas_threshold says otherwise
cdef int64_t _attn_blas_min_flops = 1 << 62  # the same for attention's per-(sequence, head) T*T*hd
# A product of fewer tokens (rows) than this stays in our loops however large its widths: they hold
# 8 tokens in registers, where BLAS would first pack the weights and, for a weight gradient, clear
# it, extra passes over matrices that arrive cold from L3 in a step (chapter 6).
cdef int64_t _blas_min_tokens = 32
# Below this many multiply-adds a parallel region costs more than it gives: the threads meet at
# its start and end, a few microseconds while the waiting thread still spins (fastops/__init__),
# so a region needs ~10 us of work (2^17 multiply-adds; 2^20 left e64's products on one thread).
cdef int64_t _parallel_min_flops = 1 << 17

cdef inline bint _use_blas(real* out, int64_t N, int64_t C, int64_t OC) noexcept nogil:
    """True when a linear layer's product over N tokens, C inputs and OC outputs, in this
    precision, goes to BLAS: at least _blas_min_tokens tokens and N*C*OC >= the threshold."""
    if N < _blas_min_tokens:
        return False
    if real is float:
        return _blas_on and _sgemm != NULL and N * C * OC >= _blas_min_flops
    else:
        return _blas_on and _dgemm != NULL and N * C * OC >= _blas_min_flops


cdef inline bint _use_attention_blas(const real* x, int64_t longest, int64_t hd) noexcept nogil:
    """True when attention over sequences of at most `longest` tokens goes to BLAS."""
    if real is float:
        return _blas_on and _sgemm != NULL and longest * longest * hd >= _attn_blas_min_flops
    else:
        return _blas_on and _dgemm != NULL and longest * longest * hd >= _attn_blas_min_flops


cdef void _blas(int ta, int tb, int64_t M, int64_t Nn, int64_t K, const real* a, int64_t lda,
                const real* b, int64_t ldb, real beta, real* c, int64_t ldc) noexcept nogil:
    """c (M, Nn) = a @ b + beta * c, row-major, a and b transposed as ta, tb say."""
    if real is float:
        _sgemm(ROW_MAJOR, ta, tb, M, Nn, K, 1.0, a, lda, b, ldb, beta, c, ldc)
    else:
        _dgemm(ROW_MAJOR, ta, tb, M, Nn, K, 1.0, a, lda, b, ldb, beta, c, ldc)


# One layer of threads. With num_threads > 1 our OpenMP threads share each product, every thread
# calling BLAS on its own slab; if OpenBLAS also started its own threads inside each call, four
# threads would fight over two cores (and OpenBLAS' threads spin while ours work). So a step on
# several threads runs BLAS on one thread, and gives OpenBLAS its own setting back at the end.
# The setting is process-wide: NumPy products in another Python thread during such a step run
# on one thread too (the same numbers, more slowly).

cdef int _blas_threads_off(int nthreads) noexcept nogil:
    """Before a step on nthreads > 1: OpenBLAS to one thread; returns its count to restore (0:
    nothing to restore)."""
    cdef int before
    if nthreads <= 1 or not _blas_on or _blas_set_threads == NULL:
        return 0
    before = _blas_get_threads()
    if before <= 1:
        return 0
    _blas_set_threads(1)
    return before


cdef void _blas_threads_restore(int before) noexcept nogil:
    """After the step: OpenBLAS' thread count as _blas_threads_off found it."""
    if before > 1:
        _blas_set_threads(before)


def numpy_openblas_path() -> str | None:
    """Path of the OpenBLAS shared library inside NumPy's wheel (numpy.libs/), if there is one."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    found = sorted(libs.glob("libscipy_openblas64_*.so*")) if libs.is_dir() else []
    return str(found[0]) if found else None


def register_numpy_blas() -> str | None:
    """Send large products to the gemm of NumPy's bundled OpenBLAS; returns its path, or None
    (and changes nothing) when NumPy ships no such library (a NumPy built against another BLAS)."""
    global _dgemm, _sgemm, _blas_path, _blas_on, _blas_set_threads, _blas_get_threads
    cdef void* handle
    cdef void* dgemm
    cdef void* sgemm
    if _dgemm == NULL:
        path = numpy_openblas_path()
        if path is None:
            return None
        handle = dlopen(path.encode(), RTLD_NOW | RTLD_LOCAL)  # NumPy has loaded it already
        if handle == NULL:
            return None
        dgemm = dlsym(handle, b"scipy_cblas_dgemm64_")
        sgemm = dlsym(handle, b"scipy_cblas_sgemm64_")
        if dgemm == NULL or sgemm == NULL:
            return None
        _blas_set_threads = <set_threads_t>dlsym(handle, b"scipy_openblas_set_num_threads64_")
        _blas_get_threads = <get_threads_t>dlsym(handle, b"scipy_openblas_get_num_threads64_")
        if _blas_set_threads == NULL or _blas_get_threads == NULL:
            _blas_set_threads, _blas_get_threads = NULL, NULL
        _sgemm = <sgemm_t>sgemm
        _dgemm = <dgemm_t>dgemm
        _blas_path = path
    _blas_on = True
    return _blas_path


def unregister_blas() -> None:
    """Run every product in fastops' own loops (register_numpy_blas switches BLAS back on)."""
    global _blas_on
    _blas_on = False


def blas_library() -> str | None:
    """Path of the BLAS library in use, or None when every product runs in our own loops."""
    return _blas_path if _blas_on else None


cdef int64_t _flops_threshold(min_flops, str name) except -1:
    if not 0 <= min_flops < 2**63:
        raise ValueError(f"{name}: a number of multiply-adds is 0..2**63-1, got {min_flops}")
    return min_flops


def set_blas_threshold(min_flops: int) -> None:
    """Products with M*K*N >= min_flops go to BLAS (if registered); the rest to our loops."""
    global _blas_min_flops
    _blas_min_flops = _flops_threshold(min_flops, "set_blas_threshold")


def get_blas_threshold() -> int:
    """The current BLAS threshold in multiply-adds (M*K*N)."""
    return _blas_min_flops


def set_blas_min_tokens(min_tokens: int) -> None:
    """Products of fewer than min_tokens tokens (rows) stay in our loops, forward and backward,
    whatever their number of multiply-adds; 0 leaves the choice to the BLAS threshold alone."""
    global _blas_min_tokens
    if not 0 <= min_tokens < 2**63:
        raise ValueError(f"set_blas_min_tokens: a number of tokens is 0..2**63-1, got {min_tokens}")
    _blas_min_tokens = min_tokens


def get_blas_min_tokens() -> int:
    """The fewest tokens (rows) a product needs before it may go to BLAS."""
    return _blas_min_tokens


def set_attention_blas_threshold(min_flops: int) -> None:
    """Attention of a sequence of T tokens goes to BLAS (if registered) when T*T*head_size >=
    min_flops; shorter sequences stay in the hand-written loops."""
    global _attn_blas_min_flops
    _attn_blas_min_flops = _flops_threshold(min_flops, "set_attention_blas_threshold")


def get_attention_blas_threshold() -> int:
    """The current attention BLAS threshold in multiply-adds (T*T*head_size)."""
    return _attn_blas_min_flops


def set_parallel_threshold(min_flops: int) -> None:
    """Below this many multiply-adds a kernel runs on one thread even when more are allowed."""
    global _parallel_min_flops
    _parallel_min_flops = _flops_threshold(min_flops, "set_parallel_threshold")


def get_parallel_threshold() -> int:
    """The current threshold (multiply-adds) below which kernels stay on one thread."""
    return _parallel_min_flops


cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTOPS_OPENMP 1
    #else
    #define FASTOPS_OPENMP 0
    #endif
    static int fastops_cpu_has_x86_64_v3(void) {
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
        __builtin_cpu_init();
        return __builtin_cpu_supports("x86-64-v3") > 0;
    #elif defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("bmi2");
    #else
        return 0;
    #endif
    }
    """
    int FASTOPS_OPENMP
    int fastops_cpu_has_x86_64_v3()


def openmp_enabled() -> bool:
    """True when this build was compiled with OpenMP (else every kernel runs on one thread)."""
    return bool(FASTOPS_OPENMP)


def cpu_has_x86_64_v3() -> bool:
    """True when this CPU and OS run x86-64-v3 code (AVX2, FMA, BMI2...): the _gpt_v3 build."""
    return bool(fastops_cpu_has_x86_64_v3())
