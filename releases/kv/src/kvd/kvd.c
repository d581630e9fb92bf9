/* kvd: a small TCP key-value server that keeps its data in a directory (the persistent disk).
 *
 * Usage: kvd -l ADDRESS -p PORT -d DIR
 *
 * Protocol: one command per line (a trailing CR is ignored), one answer per line.
 *   PING            -> PONG
 *   SET key value   -> OK            (value is the rest of the line; it may hold spaces)
 *   GET key         -> VALUE value   or NIL
 *   INCR key        -> VALUE n       (a missing key counts as 0)
 *   anything else   -> ERR message
 * Keys are 1 to 250 bytes without spaces. Every SET and INCR is appended to DIR/kv.log as a
 * `SET key value` line and fsynced before it is answered, so an answered write survives a crash.
 * At start the log is replayed; a torn last line (a crash mid-write) is cut off, and a log much
 * longer than its data is rewritten compacted. Clients are served together with poll(). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CLIENTS 256
#define MAX_LINE 8192
#define MAX_KEY 250
#define NBUCKETS 4096

struct entry { char *key, *value; struct entry *next; };
struct client { int fd; size_t len; char buf[MAX_LINE]; };

static struct entry *table[NBUCKETS];
static size_t nkeys;
static int log_fd = -1;
static off_t log_size;
static struct client clients[MAX_CLIENTS];
static volatile sig_atomic_t stopping;

static void die(const char *what) {
    fprintf(stderr, "kvd: %s: %s\n", what, strerror(errno));
    exit(1);
}

static unsigned bucket(const char *s) {
    unsigned h = 5381;
    while (*s) h = h * 33 + (unsigned char)*s++;
    return h % NBUCKETS;
}

static struct entry *find(const char *key) {
    for (struct entry *e = table[bucket(key)]; e; e = e->next)
        if (strcmp(e->key, key) == 0) return e;
    return NULL;
}

static void put(const char *key, const char *value) {
    struct entry *e = find(key);
    char *v = strdup(value);
    if (!v) die("out of memory");
    if (e) { free(e->value); e->value = v; return; }
    if (!(e = malloc(sizeof *e)) || !(e->key = strdup(key))) die("out of memory");
    e->value = v;
    e->next = table[bucket(key)];
    table[bucket(key)] = e;
    nkeys++;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes one `SET key value` record to fd; returns its length, or -1. */
static ssize_t write_record(int fd, const char *key, const char *value) {
    size_t n = strlen(key) + strlen(value) + 6;
    char *rec = malloc(n + 1);
    if (!rec) return -1;
    snprintf(rec, n + 1, "SET %s %s\n", key, value);
    int rc = write_all(fd, rec, n);
    free(rec);
    return rc == 0 ? (ssize_t)n : -1;
}

/* Appends a record to the log and syncs it; on failure the log is cut back to where it was. */
static int append(const char *key, const char *value) {
    ssize_t n = write_record(log_fd, key, value);
    if (n > 0 && fsync(log_fd) == 0) { log_size += n; return 0; }
    int saved = errno;
    if (ftruncate(log_fd, log_size) != 0) die("cutting back the log after a failed write");
    errno = saved;
    return -1;
}

/* Splits `CMD [KEY [REST]]` in place. */
static void split(char *line, char **cmd, char **key, char **rest) {
    *cmd = line;
    *key = *rest = NULL;
    char *sp = strchr(line, ' ');
    if (!sp) return;
    *sp = '\0';
    *key = sp + 1;
    if ((sp = strchr(*key, ' '))) { *sp = '\0'; *rest = sp + 1; }
}

static void mkdirs(char *path) {
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST) die(path);
        *p = c;
        if (!c) return;
    }
}

/* Replays DIR/kv.log, compacts it when it is mostly overwritten records, opens it for appends. */
static void open_store(char *dir) {
    char path[PATH_MAX], tmp[PATH_MAX];
    mkdirs(dir);
    snprintf(path, sizeof path, "%s/kv.log", dir);
    snprintf(tmp, sizeof tmp, "%s/kv.log.tmp", dir);
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, records = 0;
    off_t good = 0;
    ssize_t n;
    while (f && (n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n') break; /* torn by a crash: never answered, dropped */
        line[n - 1] = '\0';
        good += n;
        char *cmd, *key, *value;
        split(line, &cmd, &key, &value);
        if (strcmp(cmd, "SET") == 0 && key && value) { put(key, value); records++; }
        else fprintf(stderr, "kvd: %s: skipping a malformed record at byte %lld\n", path, (long long)(good - n));
    }
    free(line);
    if (f) fclose(f);
    if (records > 1000 && records > 4 * nkeys) {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0640);
        off_t size = 0;
        ssize_t n;
        if (fd < 0) die(tmp);
        for (size_t b = 0; b < NBUCKETS; b++)
            for (struct entry *e = table[b]; e; e = e->next)
                if ((n = write_record(fd, e->key, e->value)) < 0) die(tmp);
                else size += n;
        if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) die(path);
        fprintf(stderr, "kvd: compacted %zu records into %zu\n", records, nkeys);
        good = size;
    }
    if ((log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0640)) < 0) die(path);
    if (ftruncate(log_fd, good) != 0) die(path);
    log_size = good;
    int dfd = open(dir, O_RDONLY); /* make the log's directory entry durable too */
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    fprintf(stderr, "kvd: %zu keys from %s\n", nkeys, path);
}

/* Answers one command line into out. */
static void handle(char *line, char *out, size_t cap) {
    size_t len = strlen(line);
    if (len && line[len - 1] == '\r') line[--len] = '\0';
    char *cmd, *key, *value;
    split(line, &cmd, &key, &value);
    int key_ok = key && *key && strlen(key) <= MAX_KEY;
    if (strcmp(cmd, "PING") == 0 && !key) snprintf(out, cap, "PONG\n");
    else if (strcmp(cmd, "GET") == 0 && key_ok && !value) {
        struct entry *e = find(key);
        if (e) snprintf(out, cap, "VALUE %s\n", e->value);
        else snprintf(out, cap, "NIL\n");
    } else if (strcmp(cmd, "SET") == 0 && key_ok && value) {
        if (append(key, value) != 0) snprintf(out, cap, "ERR write failed: %s\n", strerror(errno));
        else { put(key, value); snprintf(out, cap, "OK\n"); }
    } else if (strcmp(cmd, "INCR") == 0 && key_ok && !value) {
        struct entry *e = find(key);
        char *end, num[32];
        long long n = e ? strtoll(e->value, &end, 10) : 0;
        if (e && (*e->value == '\0' || *end != '\0')) { snprintf(out, cap, "ERR not an integer\n"); return; }
        snprintf(num, sizeof num, "%lld", n + 1);
        if (append(key, num) != 0) snprintf(out, cap, "ERR write failed: %s\n", strerror(errno));
        else { put(key, num); snprintf(out, cap, "VALUE %s\n", num); }
    } else if (strcmp(cmd, "PING") && strcmp(cmd, "GET") && strcmp(cmd, "SET") && strcmp(cmd, "INCR"))
        snprintf(out, cap, "ERR unknown command\n");
    else snprintf(out, cap, "ERR usage: PING | SET key value | GET key | INCR key\n");
}

static int listen_on(const char *address, const char *port) {
    struct addrinfo hints = {0}, *res, *ai;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(address, port, &hints, &res), fd = -1, one = 1;
    if (rc != 0) { fprintf(stderr, "kvd: %s:%s: %s\n", address, port, gai_strerror(rc)); exit(1); }
    for (ai = res; ai; ai = ai->ai_next) {
        if ((fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol)) < 0) continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) die("listen");
    return fd;
}

static void on_signal(int sig) { (void)sig; stopping = 1; }

int main(int argc, char **argv) {
    char *address = NULL, *port = NULL, *dir = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "l:p:d:")) != -1) {
        if (opt == 'l') address = optarg;
        else if (opt == 'p') port = optarg;
        else if (opt == 'd') dir = optarg;
        else break;
    }
    if (!address || !port || !dir || optind != argc) {
        fprintf(stderr, "usage: kvd -l ADDRESS -p PORT -d DIR\n");
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR and the loop ends */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    open_store(dir);
    int lfd = listen_on(address, port);
    fprintf(stderr, "kvd: listening on %s port %s\n", address, port);

    static struct pollfd fds[MAX_CLIENTS + 1];
    static char out[MAX_LINE + 64];
    for (int i = 0; i < MAX_CLIENTS; i++) clients[i].fd = -1;
    while (!stopping) {
        int nfds = 0, slot[MAX_CLIENTS + 1];
        fds[nfds].fd = lfd;
        fds[nfds++].events = POLLIN;
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (clients[i].fd >= 0) { slot[nfds] = i; fds[nfds].fd = clients[i].fd; fds[nfds++].events = POLLIN; }
        if (poll(fds, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (fds[0].revents & POLLIN) {
            int cfd = accept(lfd, NULL, NULL), i = 0;
            while (cfd >= 0 && i < MAX_CLIENTS && clients[i].fd >= 0) i++;
            if (cfd >= 0 && i == MAX_CLIENTS) { write_all(cfd, "ERR too many clients\n", 21); close(cfd); }
            else if (cfd >= 0) { clients[i].fd = cfd; clients[i].len = 0; }
        }
        for (int k = 1; k < nfds; k++) {
            struct client *c = &clients[slot[k]];
            if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
            int keep = n > 0 || (n < 0 && errno == EINTR);
            if (n > 0) c->len += (size_t)n;
            char *start = c->buf, *nl;
            while (keep && (nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
                *nl = '\0';
                handle(start, out, sizeof out);
                keep = write_all(c->fd, out, strlen(out)) == 0;
                start = nl + 1;
            }
            c->len -= (size_t)(start - c->buf);
            memmove(c->buf, start, c->len);
            if (keep && c->len == sizeof c->buf) { write_all(c->fd, "ERR line too long\n", 18); keep = 0; }
            if (!keep) { close(c->fd); c->fd = -1; }
        }
    }
    fprintf(stderr, "kvd: stopping\n");
    return 0;
}
