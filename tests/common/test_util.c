#include "common/test.h"

#include <stdint.h>
#include <sys/stat.h>

test_state g_test;

int test_allclose(const char *what, const float *got, const float *want, size_t n, double rtol, double atol) {
    size_t worst = 0, bad = 0;
    double worst_err = -1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double lim = atol + rtol * fabs((double)want[i]);
        if (!(d <= lim)) bad++;
        double e = d / (lim > 0 ? lim : 1e-30);
        if (!(e <= worst_err)) { worst_err = e; worst = i; }
    }
    if (bad) {
        CHECK(bad == 0, "%s: %zu of %zu differ; worst [%zu] got %.9g want %.9g", what, bad, n, worst,
              (double)got[worst], (double)want[worst]);
        return 0;
    }
    return 1;
}

void test_fill_uniform(float *x, size_t n, unsigned long long seed, float lo, float hi) {
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        float u = (float)((s >> 40) & 0xffffff) / 16777216.0f;
        x[i] = lo + (hi - lo) * u;
    }
}

const char *test_shared_data(void) {
    static const char *cands[] = {"../shared/data", "../../shared/data", NULL};
    const char *env = getenv("TESSERA_SHARED_DATA");
    struct stat st;
    if (env && stat(env, &st) == 0) return env;
    for (int i = 0; cands[i]; i++)
        if (stat(cands[i], &st) == 0 && S_ISDIR(st.st_mode)) return cands[i];
    return NULL;
}

float *test_falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}
