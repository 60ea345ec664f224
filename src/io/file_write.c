/* How tessera puts a file in place (tessera.h, "files"): a temporary created
 * exclusively in the target's folder (never through a planted link), written and
 * synced, renamed over the target, then the folder synced. An existing target keeps
 * its mode and owner and is refused when the user could not write it; temporaries of
 * dead processes are removed on the way; PATH.lock files keep two writers apart. */
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NAME_BYTES 255 /* the longest file name Linux file systems take */

/* The folder part of path ("." when none) and where its last component starts. */
static char *folder_of(const char *path, const char **base) {
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    size_t n = slash ? (size_t)(slash - path) : 1;
    if (slash == path) n = 1; /* "/name": the root */
    char *dir = malloc(n + 1);
    if (!dir) return NULL;
    memcpy(dir, slash ? path : ".", n);
    dir[n] = '\0';
    return dir;
}

/* dir/BASE SUFFIX with BASE cut so that the name stays within NAME_BYTES; NULL when
 * out of memory. The cut keeps the start of the name, so the target is recognisable. */
static char *sibling(const char *dir, const char *base, const char *suffix) {
    size_t bl = strlen(base), sl = strlen(suffix);
    if (sl >= NAME_BYTES) return NULL;
    if (bl + sl > NAME_BYTES) bl = NAME_BYTES - sl;
    size_t n = strlen(dir) + 1 + bl + sl + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%.*s%s", dir, (int)bl, base, suffix);
    return s;
}

/* Whether the user could write the file: by its permission bits, and for root (whom
 * the bits do not stop) only when some write bit is set. */
static int may_write(const char *path, const struct stat *st) {
    if (geteuid() == 0) return (st->st_mode & 0222) != 0;
    return access(path, W_OK) == 0;
}

/* The target as it stands: *exists, and its stat. Refuses a folder, and a file the
 * user could not write unless forced. */
static ts_status target_check(ts_ctx *ctx, const char *path, struct stat *st, int *exists) {
    *exists = 0;
    if (lstat(path, st) != 0) return TS_OK;
    if (S_ISDIR(st->st_mode)) return ts_fail(ctx, TS_EIO, "%s: is a folder; cannot rename a file over it", path);
    if (!S_ISREG(st->st_mode)) return TS_OK; /* a link or other entry: replaced, as a new file */
    *exists = 1;
    if (!ctx->force && !may_write(path, st))
        return ts_fail(ctx, TS_EIO, "%s: is write-protected (mode %04o); not replaced without --force", path,
                       (unsigned)(st->st_mode & 07777));
    return TS_OK;
}

/* Gives the new file (fd) the old target's mode and, where allowed, its owner. */
static ts_status keep_mode(ts_ctx *ctx, int fd, const char *path, const struct stat *old) {
    if (fchmod(fd, old->st_mode & 07777) != 0)
        return ts_fail(ctx, TS_EIO, "%s: cannot keep the mode %04o: %s", path, (unsigned)(old->st_mode & 07777),
                       strerror(errno));
    /* only root may give a file away; for others a failure here changes nothing */
    if ((old->st_uid != geteuid() || old->st_gid != getegid()) && fchown(fd, old->st_uid, old->st_gid) != 0)
        errno = 0;
    return TS_OK;
}

static ts_status sync_folder(ts_ctx *ctx, const char *dir, const char *path) {
    /* a folder the user may write but not read (mode -wx) cannot be opened: let be */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return TS_OK;
    int e = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    /* some file systems cannot sync a folder at all (EINVAL): nothing more to do there */
    if (e && e != EINVAL) return ts_fail(ctx, TS_EIO, "%s: written, but its folder cannot be synced: %s", path, strerror(e));
    return TS_OK;
}

/* If name is BASE.tmp.PID or BASE.tmp.PID.XXXXXX, with BASE the target's name or
 * (in a name of NAME_BYTES) a start of it as sibling() cut it: the PID; else 0. */
static long temp_owner(const char *name, const char *base) {
    const char *t = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) t = p;
    size_t k = t ? (size_t)(t - name) : 0, bl = strlen(base);
    if (!t || k > bl || strncmp(name, base, k) || (k < bl && strlen(name) != NAME_BYTES)) return 0;
    const char *p = t + 5;
    if (*p < '1' || *p > '9') return 0;
    char *end;
    errno = 0;
    long pid = strtol(p, &end, 10);
    if (errno || pid <= 0) return 0;
    if (*end == '\0' || (end[0] == '.' && strlen(end + 1) == 6)) return pid;
    return 0;
}

/* Removes the temporaries for this target that processes no longer running left
 * (a killed run), each with a note. Best effort: what cannot be removed stays. */
static void remove_stale_temps(ts_ctx *ctx, const char *dir, const char *base) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = temp_owner(e->d_name, base);
        if (!pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char *p = sibling(dir, e->d_name, "");
        struct stat st;
        if (p && lstat(p, &st) == 0 && S_ISREG(st.st_mode) && unlink(p) == 0)
            ts_note(ctx, "removed %s, a temporary file left by process %ld, which is no longer running", p, pid);
        free(p);
    }
    closedir(d);
}

/* Creates dir/BASE.tmp.PID.XXXXXX exclusively (O_EXCL: never an existing file, never
 * through a link) and returns its descriptor, its name in *tmp. */
static int create_temp(const char *dir, const char *base, char **tmp) {
    unsigned long long mix = (unsigned long long)getpid() * 0x9e3779b97f4a7c15ULL;
    for (int attempt = 0; attempt < 64; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        mix ^= (unsigned long long)ts.tv_nsec + (unsigned long long)attempt * 0xbf58476d1ce4e5b9ULL;
        mix *= 0x94d049bb133111ebULL;
        char suffix[48], letters[7];
        for (int i = 0; i < 6; i++) letters[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[(mix >> (6 * i + 7)) % 36];
        letters[6] = '\0';
        snprintf(suffix, sizeof suffix, ".tmp.%ld.%s", (long)getpid(), letters);
        *tmp = sibling(dir, base, suffix);
        if (!*tmp) {
            errno = ENOMEM;
            return -1;
        }
        int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd >= 0 || errno != EEXIST) return fd;
        free(*tmp);
        *tmp = NULL;
    }
    errno = EEXIST;
    return -1;
}

static int write_all(int fd, const uint8_t *p, size_t len, size_t *done) {
    *done = 0;
    while (*done < len) {
        ssize_t w = write(fd, p + *done, len - *done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? errno : ENOSPC;
        *done += (size_t)w;
    }
    return 0;
}

/* The temporary is written and closed: rename it over path, sync the folder. */
static ts_status put_in_place(ts_ctx *ctx, const char *tmp, const char *path, const char *dir) {
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ts_fail(ctx, TS_EIO, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return sync_folder(ctx, dir, path);
}

ts_status io_write_atomic(ts_ctx *ctx, const char *path, const void *data, size_t len) {
    const char *base;
    char *dir = folder_of(path, &base), *tmp = NULL;
    if (!dir) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory", path);
    struct stat old;
    int exists;
    ts_status st = target_check(ctx, path, &old, &exists);
    if (st) goto done;
    remove_stale_temps(ctx, dir, base);
    int fd = create_temp(dir, base, &tmp);
    if (fd < 0) {
        st = errno == ENOMEM ? ts_fail(ctx, TS_ENOMEM, "%s: out of memory", path)
                             : ts_fail(ctx, TS_EIO, "%s: cannot create: %s", path, strerror(errno));
        goto done;
    }
    size_t done_bytes;
    int e = write_all(fd, data, len, &done_bytes);
    if (e) st = ts_fail(ctx, TS_EIO, "%s: write failed after %zu of %zu bytes: %s", path, done_bytes, len, strerror(e));
    if (!st && exists) st = keep_mode(ctx, fd, path, &old);
    if (!st && fsync(fd) != 0) st = ts_fail(ctx, TS_EIO, "%s: cannot flush to disk: %s", path, strerror(errno));
    if (close(fd) != 0 && !st) st = ts_fail(ctx, TS_EIO, "%s: cannot flush to disk: %s", path, strerror(errno));
    if (st) unlink(tmp);
    else st = put_in_place(ctx, tmp, path, dir);
done:
    free(tmp);
    free(dir);
    return st;
}

ts_status ts_file_check_output(ts_ctx *ctx, const char *path) {
    const char *base;
    char *dir = folder_of(path, &base);
    if (!dir) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory", path);
    struct stat st;
    ts_status s = TS_OK;
    if (!*base) s = ts_fail(ctx, TS_EIO, "%s: names a folder, not a file", path);
    else if (stat(dir, &st) != 0) s = ts_fail(ctx, TS_EIO, "%s: cannot create: %s: %s", path, dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode)) s = ts_fail(ctx, TS_EIO, "%s: cannot create: %s is not a folder", path, dir);
    int exists;
    if (!s) s = target_check(ctx, path, &st, &exists);
    free(dir);
    return s;
}

ts_status ts_file_replace(ts_ctx *ctx, const char *from, const char *to) {
    const char *base;
    char *dir = folder_of(to, &base);
    if (!dir) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory", to);
    struct stat old;
    int exists;
    ts_status st = target_check(ctx, to, &old, &exists);
    if (!st && exists) {
        int fd = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) st = ts_fail(ctx, TS_EIO, "%s: cannot open: %s", from, strerror(errno));
        else {
            st = keep_mode(ctx, fd, to, &old);
            close(fd);
        }
    }
    if (!st && rename(from, to) != 0)
        st = ts_fail(ctx, TS_EIO, "%s: cannot rename %s into place: %s", to, from, strerror(errno));
    if (!st) st = sync_folder(ctx, dir, to);
    free(dir);
    return st;
}

/* ------------------------------------------------------------------ locks */

struct ts_file_lock {
    int fd;
    char *path; /* PATH.lock */
};

/* Takes a write lock (fcntl, so POSIX) on path.lock; a lock file that a killed
 * process left is simply locked again. After locking, the file must still be the
 * one at that name: a releasing process may have unlinked it in between. */
ts_status ts_file_lock_acquire(ts_ctx *ctx, const char *path, ts_file_lock **out) {
    *out = NULL;
    const char *base;
    char *dir = folder_of(path, &base);
    char *lp = dir ? sibling(dir, base, ".lock") : NULL;
    free(dir);
    if (!lp) return ts_fail(ctx, TS_ENOMEM, "%s: out of memory", path);
    for (int attempt = 0; attempt < 16; attempt++) {
        int fd = open(lp, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            ts_status st = ts_fail(ctx, TS_EIO, "%s: cannot create the lock file %s: %s", path, lp, strerror(errno));
            free(lp);
            return st;
        }
        struct flock fl;
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (fcntl(fd, F_SETLK, &fl) != 0) {
            int e = errno;
            long holder = 0;
            memset(&fl, 0, sizeof fl);
            fl.l_type = F_WRLCK;
            fl.l_whence = SEEK_SET;
            if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) holder = (long)fl.l_pid;
            close(fd);
            ts_status st =
                e == EACCES || e == EAGAIN
                    ? ts_fail(ctx, TS_EIO, "%s: is being written by another process (pid %ld, lock %s); wait for it or "
                              "choose another file", path, holder, lp)
                    : ts_fail(ctx, TS_EIO, "%s: cannot lock %s: %s", path, lp, strerror(e));
            free(lp);
            return st;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && lstat(lp, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            ts_file_lock *l = malloc(sizeof *l);
            if (!l) {
                close(fd);
                free(lp);
                return ts_fail(ctx, TS_ENOMEM, "%s: out of memory", path);
            }
            l->fd = fd;
            l->path = lp;
            *out = l;
            return TS_OK;
        }
        close(fd);
    }
    ts_status st = ts_fail(ctx, TS_EIO, "%s: cannot lock %s: it keeps being replaced", path, lp);
    free(lp);
    return st;
}

void ts_file_lock_release(ts_file_lock *l) {
    if (!l) return;
    unlink(l->path); /* while still locked: a waiting process then sees a new file */
    close(l->fd);
    free(l->path);
    free(l);
}
