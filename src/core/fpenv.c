/* The floating-point environment of constant-time inference. On x86, an operation
 * whose operand or result is subnormal can take a microcode assist (tens to hundreds
 * of cycles), a timing channel on the values; flush-to-zero (MXCSR bit 15: subnormal
 * results become 0) and denormals-are-zero (bit 6: subnormal operands read as 0)
 * remove it. Round-to-nearest (bits 13-14 clear) is what the exp of ct_math.h
 * assumes. MXCSR is per thread, so the bits are set on the caller and, with more
 * than one thread, on each thread of an OpenMP team of that size, which libgomp
 * reuses for the kernels' parallel loops; restoring clears them the same way. Other
 * architectures are left as they are (docs/security.md). */
#include "core.h"

#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE2__))
#include <xmmintrin.h>
#define FPENV_X86 1
#define FPENV_SET 0x8040u   /* FTZ | DAZ */
#define FPENV_ROUND 0x6000u /* rounding control: 00 = to nearest */
#endif

void ts_fpenv_constant_time(ts_fpenv *env, int nthreads) {
    env->saved = 0;
    env->nthreads = nthreads > 1 ? nthreads : 1;
#ifdef FPENV_X86
    env->saved = _mm_getcsr();
    _mm_setcsr((env->saved | FPENV_SET) & ~FPENV_ROUND);
    if (env->nthreads > 1) {
#pragma omp parallel num_threads(env->nthreads)
        _mm_setcsr((_mm_getcsr() | FPENV_SET) & ~FPENV_ROUND);
    }
#endif
}

void ts_fpenv_restore(const ts_fpenv *env) {
#ifdef FPENV_X86
    /* the team gets the caller's former bits back (threads are assumed to have
     * started as the caller was) */
    const unsigned int keep = env->saved & (FPENV_SET | FPENV_ROUND);
    if (env->nthreads > 1) {
#pragma omp parallel num_threads(env->nthreads)
        _mm_setcsr((_mm_getcsr() & ~(FPENV_SET | FPENV_ROUND)) | keep);
    }
    _mm_setcsr(env->saved);
#else
    (void)env;
#endif
}
