/* tessera report: a small model trained with --log, its modules and a patched copy;
 * the HTML checked structurally (every section, nothing fetched, every data: URI a
 * PNG of the image size whose chunks' CRCs hold and whose rows inflate whole), the
 * failures (exit codes, no output, no temporary left), and, when Chromium and
 * playwright-core can be had (scripts/report-browser-deps.sh), the browser check. */
#include "common/cli_run.h"
#include "common/test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

static cli_runner R;

static int have_fashion(void) {
    struct stat st;
    return stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) == 0;
}

static void path_in(char *p, size_t n, const char *sub) { snprintf(p, n, "%s/%s", R.dir, sub); }

/* The whole file, NUL-terminated (NULL when unreadable). */
static char *slurp(const char *sub) {
    char p[600];
    path_in(p, sizeof p, sub);
    size_t n;
    uint8_t *d = test_read_file(p, &n), *s = d ? realloc(d, n + 1) : NULL;
    if (!s) {
        free(d);
        return NULL;
    }
    s[n] = '\0';
    return (char *)s;
}

static int count(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

static const char ARCH[] = "input shape=1x28x28 classes=10\n"
                           "conv2d name=conv1 out=4 kernel=3 padding=1 bias=0\nbatchnorm name=bn1\nrelu name=relu1\n"
                           "maxpool name=pool1 kernel=2\nflatten name=flat\ndense name=fc1 out=16\nrelu name=relu2\n"
                           "dense name=fc2 out=classes\n";

static int ready;

static void make_run(void) {
    char p[600];
    path_in(p, sizeof p, "tiny.arch");
    FILE *f = fopen(p, "w");
    CHECK(f && fputs(ARCH, f) >= 0 && fclose(f) == 0, "write %s", p);
    int rc = cli_run(&R, "train --arch %s --data fashion-mnist --limit 700 --val-split 100 --epochs 2 --batch 50 "
                         "--optimizer adam --lr 0.01 --schedule cosine --threads 1 --log %s/run --log-every 3 --quiet "
                         "--no-test --out %s/m.tsr",
                     p, R.dir, R.dir);
    CHECK(rc == 0, "train: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "decompose %s/m.tsr --classes 1,5,8 --positives 20 --confidence 0.3 --no-eval --quiet --threads 1 "
                     "--out %s/mods",
                 R.dir, R.dir);
    CHECK(rc == 0, "decompose: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "patch %s/m.tsr --class 6 --with %s/mods/class5.tsm --limit 300 --no-eval --quiet --threads 1 "
                     "--out %s/p.tsr",
                 R.dir, R.dir, R.dir);
    CHECK(rc == 0, "patch: exit %d: %s", rc, R.err);
    ready = !g_test.case_failed;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static int b64(int c) {
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes the base64 at s (up to the closing quote) and checks it is a w x h PNG:
 * signature, IHDR, CRCs, IDAT inflating to h rows of 1 + w * channels bytes with
 * filter 0, IEND. Returns 1 when it is. */
static int check_png(const char *s, int w, int h) {
    const char *end = strchr(s, '"');
    if (!end) return 0;
    const size_t n = (size_t)(end - s);
    uint8_t *b = malloc(n), *raw = NULL;
    size_t len = 0;
    int ok = b != NULL && n % 4 == 0;
    for (size_t i = 0; ok && i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) v[k] = s[i + k] == '=' ? 0 : b64(s[i + k]);
        ok = v[0] >= 0 && v[1] >= 0 && v[2] >= 0 && v[3] >= 0;
        const uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        b[len++] = (uint8_t)(x >> 16);
        if (s[i + 2] != '=') b[len++] = (uint8_t)(x >> 8);
        if (s[i + 3] != '=') b[len++] = (uint8_t)x;
    }
    ok = ok && len > 8 + 25 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8);
    int channels = 0, iend = 0;
    for (size_t at = 8; ok && at + 12 <= len && !iend;) {
        const uint32_t cn = be32(b + at);
        ok = at + 12 + cn <= len && (uint32_t)crc32(0, b + at + 4, cn + 4) == be32(b + at + 8 + cn);
        if (!ok) break;
        const uint8_t *d = b + at + 8;
        if (!memcmp(b + at + 4, "IHDR", 4)) {
            channels = d[9] == 2 ? 3 : d[9] == 0 ? 1 : 0;
            ok = cn == 13 && (int)be32(d) == w && (int)be32(d + 4) == h && d[8] == 8 && channels;
        } else if (!memcmp(b + at + 4, "IDAT", 4)) {
            uLongf rn = (uLongf)h * (uLongf)(1 + w * channels);
            raw = malloc(rn + 1);
            uLongf got = rn + 1;
            ok = raw && uncompress(raw, &got, d, cn) == Z_OK && got == rn;
            for (int y = 0; ok && y < h; y++) ok = raw[(size_t)y * (1 + (size_t)w * channels)] == 0;
        } else if (!memcmp(b + at + 4, "IEND", 4)) iend = 1;
        at += 12 + cn;
    }
    free(b);
    free(raw);
    return ok && iend;
}

/* Structural checks every report passes; returns the number of images. */
static int check_html(const char *html, const char *const *ids, int nids) {
    CHECK(!strncmp(html, "<!DOCTYPE html>", 15), "no doctype");
    const size_t n = strlen(html);
    CHECK(n > 7 && !strcmp(html + n - 8, "</html>\n"), "does not end with </html>");
    for (int i = 0; i < nids; i++) {
        char want[80];
        snprintf(want, sizeof want, "id=\"%s\"", ids[i]);
        CHECK(strstr(html, want), "no element %s", want);
    }
    CHECK(!strstr(html, "http://") && !strstr(html, "https://"), "a network reference");
    CHECK(!strstr(html, "<script") && !strstr(html, "<link") && !strstr(html, "url(http"), "a script or external link");
    CHECK(count(html, "<svg") == count(html, "</svg>") && count(html, "<section") == count(html, "</section>") &&
              count(html, "<table") == count(html, "</table>") && count(html, "<figure") == count(html, "</figure>"),
          "unbalanced elements");
    int imgs = 0;
    for (const char *p = html; (p = strstr(p, "src=\"")); p += 5) {
        const char *uri = "src=\"data:image/png;base64,";
        CHECK(!strncmp(p, uri, strlen(uri)), "an image that is not an inline PNG: %.60s", p);
        if (strncmp(p, uri, strlen(uri))) continue;
        CHECK(check_png(p + strlen(uri), 28, 28), "image %d is not a valid 28x28 PNG", imgs);
        imgs++;
    }
    return imgs;
}

static void test_report(void) {
    if (!ready) return;
    int rc = cli_run(&R, "report %s/run %s/m.tsr --modules %s/mods --limit 300 --worst 6 --saliency 2 --threads 1 "
                         "--out %s/r.html",
                     R.dir, R.dir, R.dir, R.dir);
    CHECK(rc == 0 && strstr(R.out, "r.html"), "report: exit %d: %s", rc, R.err);
    char *html = slurp("r.html");
    CHECK(html != NULL, "no report");
    if (!html) return;
    static const char *const ids[] = {"summary", "curves", "loss-curve", "accuracy-curve", "lr", "lr-curve",
                                      "confusion", "confusion-matrix", "per-class", "per-class-table",
                                      "misclassified", "saliency", "modules", "module-map", "module-table",
                                      "compose-bars"};
    const int imgs = check_html(html, ids, (int)(sizeof ids / sizeof ids[0]));
    /* six mistakes, two saliency rows of image, guided and plain map */
    CHECK(imgs == 6 + 2 * 3, "%d images", imgs);
    CHECK(count(html, "<tr><td>") >= 10, "per-class rows");
    CHECK(strstr(html, ">Trouser<") && strstr(html, ">Ankle boot<"), "class names");
    CHECK(strstr(html, "relu1 (4)") && strstr(html, "relu2 (16)"), "module map blocks");
    CHECK(strstr(html, "3 modules composed") && strstr(html, "the model on the same images and classes"),
          "composed figure beside the model's");
    CHECK(!strstr(html, "id=\"patch\""), "a patch section for an unpatched model");
    CHECK(!cli_leftover_tmp(&R), "a temporary was left");
    free(html);
    /* modules as a list of files; no training log */
    rc = cli_run(&R, "report %s/m.tsr --modules %s/mods/class1.tsm,%s/mods/class8.tsm --limit 100 --saliency 1 "
                     "--threads 1 --out %s/r2.html",
                 R.dir, R.dir, R.dir, R.dir);
    CHECK(rc == 0, "report --modules A,B: exit %d: %s", rc, R.err);
    html = slurp("r2.html");
    if (html) {
        static const char *const ids2[] = {"summary", "confusion-matrix", "per-class-table", "saliency", "module-map"};
        check_html(html, ids2, 5);
        CHECK(strstr(html, "2 modules composed") && !strstr(html, "id=\"loss-curve\"") &&
                  strstr(html, "No training log given"),
              "without RUN_DIR, two modules");
        free(html);
    }
    /* a patched model: the class before and after */
    rc = cli_run(&R, "report %s/p.tsr --modules %s/mods/class1.tsm --limit 200 --saliency 1 --threads 1 --out %s/p.html",
                 R.dir, R.dir, R.dir);
    CHECK(rc == 0, "report of a patched model: exit %d: %s", rc, R.err);
    html = slurp("p.html");
    if (html) {
        static const char *const ids3[] = {"summary", "confusion-matrix", "patch", "patch-bars"};
        check_html(html, ids3, 4);
        CHECK(strstr(html, "Patched class: Shirt"), "patched class named");
        CHECK(strstr(html, "not this model's: no comparison"), "modules of another model compared with it");
        free(html);
    }
}

static void test_report_failures(void) {
    CHECK(cli_run(&R, "report --help") == 0 && strstr(R.out, "RUN_DIR") && strstr(R.out, "--modules"), "help: %s",
          R.out);
    CHECK(cli_run(&R, "help report") == 0 && strstr(R.out, "guided backpropagation"), "tessera help report");
    CHECK(cli_run(&R, "report %s/m.tsr", R.dir) == 2 && strstr(R.err, "--out"), "no --out: %s", R.err);
    if (!ready) return;
    CHECK(cli_run(&R, "report %s/run --out %s/x.html", R.dir, R.dir) == 2 && strstr(R.err, "is a folder"),
          "RUN_DIR alone: %s", R.err);
    CHECK(cli_run(&R, "report %s/nothere %s/m.tsr --out %s/x.html", R.dir, R.dir, R.dir) == 2 &&
              strstr(R.err, "not a folder"),
          "missing RUN_DIR: %s", R.err);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/empty %s/bad && printf 'kind,epoch,step,loss,accuracy,lr,val_loss,"
                              "val_accuracy\\nstep,1,3,0.5,0.8,0.1,,\\nfoo,1,4,0.5,0.8,0.1,,\\n' >%s/bad/metrics.csv",
             R.dir, R.dir, R.dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    int rc = cli_run(&R, "report %s/empty %s/m.tsr --limit 50 --out %s/x.html", R.dir, R.dir, R.dir);
    CHECK(rc == 3 && strstr(R.err, "empty/metrics.csv: cannot open"), "no metrics.csv: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "report %s/bad %s/m.tsr --limit 50 --out %s/x.html", R.dir, R.dir, R.dir);
    CHECK(rc == 4 && strstr(R.err, "metrics.csv: line 3"), "bad row: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "report %s/m.tsr --data nosuchset --out %s/x.html", R.dir, R.dir);
    CHECK(rc != 0 && strstr(R.err, "nosuchset"), "unknown data: exit %d: %s", rc, R.err);
    rc = cli_run(&R, "report %s/m.tsr --limit 50 --modules %s/nothere.tsm --out %s/x.html", R.dir, R.dir, R.dir);
    CHECK(rc == 3 && strstr(R.err, "nothere.tsm"), "missing module: exit %d: %s", rc, R.err);
    CHECK(cli_run(&R, "report %s/m.tsr --out %s/m.tsr", R.dir, R.dir) == 2, "--out is the model");
    CHECK(!cli_exists(&R, "x.html") && !cli_leftover_tmp(&R), "output or temporary after a failure");
}

/* Runs sh -c cmd, its stdout into out (n bytes); returns the exit status. */
static int run_capture(const char *cmd, char *out, size_t n) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    const int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_browser(void) {
    if (!ready) return;
    char pw[1024], cmd[4096], out[1 << 14];
    if (run_capture("sh scripts/report-browser-deps.sh 2>&1", pw, sizeof pw) != 0) {
        printf("SKIP browser check: %s", pw[0] ? pw : "scripts/report-browser-deps.sh failed\n");
        return;
    }
    pw[strcspn(pw, "\n")] = '\0';
    snprintf(cmd, sizeof cmd, "PLAYWRIGHT_DIR='%s' node scripts/report-browser-check.js %s/r.html %s/shot.png --modules 2>&1",
             pw, R.dir, R.dir);
    int rc = run_capture(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "0 failed"), "browser check: exit %d:\n%s", rc, out);
    CHECK(cli_exists(&R, "shot.png"), "no screenshot");
    const char *last = strstr(out, "report-browser-check: ");
    printf("note: headless Chromium: %s", last ? last + 22 : "no summary\n");
    snprintf(cmd, sizeof cmd,
             "PLAYWRIGHT_DIR='%s' node scripts/report-browser-check.js %s/p.html %s/shotp.png --patch --no-curves 2>&1",
             pw, R.dir, R.dir);
    rc = run_capture(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "0 failed"), "browser check, patched model: exit %d:\n%s", rc, out);
}

int main(void) {
    if (!cli_runner_begin(&R, "cli-report")) return 1;
    if (have_fashion()) {
        RUN(make_run);
        RUN(test_report);
        RUN(test_browser);
    } else {
        printf("note: dataset-fashion-mnist not installed; the report cases skipped\n");
    }
    RUN(test_report_failures);
    cli_runner_end(&R);
    TEST_MAIN_END("test_cli_report");
}
