# cython: cdivision=True, boundscheck=False, wraparound=False, initializedcheck=False
# The kernels of _gpt.pyx, word for word, compiled by setup.py for x86-64-v3 (AVX2 and FMA: four
# doubles or eight floats per instruction instead of SSE2's two or four). fastops imports this
# module instead of _gpt when the CPU has those units (fastops/__init__.py). Directives in an
# included file are ignored, hence the first line repeats _gpt.pyx's.
include "_gpt.pyx"
