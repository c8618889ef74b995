/* loadgen.c: a fan-out load generator in C, for measuring servers faster than Python can read.
 *
 * `hubbub bench fanout` (src/hubbub/tools/) is the project's load generator; one
 * Python process reading 1000 sockets saturates its core before the fastest
 * servers do (the C floor, hubbub). This program runs the same workload with
 * far less CPU per delivery, so that the SERVER is the bottleneck and the
 * ratio hubbub / C floor means something. It does only that workload:
 *
 *   N subscribers on one channel, one publisher keeping WINDOW publications in
 *   flight, written BATCH per write; each publication carries
 *   `@<send time us>,<publisher>,<seq>,` then padding, as the Python bench's.
 *   In flight = sent - max(what the probe subscriber received, replies) as in
 *   the Python bench: the probe is the first subscriber.
 *
 * Dialects: `centrifugo` (JSON protocol v2: connect + subscribe in one frame,
 * publish commands joined with '\n' in one frame per batch, replies counted,
 * `{}` pings answered) and `text` (the suite's plain servers: every text frame
 * is a message; the publisher's "hello"s until every subscriber heard one).
 * Every subscriber counts '@' bytes of its text frames (memchr); every 10th also
 * parses each stamp (latency histogram, per-publisher sequence check).
 * One thread, epoll, non-blocking sockets; everything bounded in time.
 *
 * Output: one JSON object on stdout (deliveries/s, the server's CPU from
 * /proc/PID/stat over the measured window, this process's CPU, the share of
 * the window each of them waited runnable for a CPU (/proc/.../schedstat: other
 * processes' load on a shared machine), latency percentiles, loss after a
 * drain of at most 5 s).
 *
 * Build: make -C benchmarks/loadgen_c     (benchmarks/suite.py runs it)
 * Usage: loadgen --port P [--path /connection/websocket] [--dialect centrifugo|text]
 *                [-n 1000] [--window 200] [--batch 20] [--seconds 5] [--payload 100]
 *                [--server-pid PID]        (127.0.0.1 only)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)
#define SMALL 64          /* frames up to this size are buffered whole (pings, replies) */
#define SUB 128           /* histogram: exact below this, then 64 buckets per power of 2 */
#define HALF 64
#define BUCKETS (HALF * 60)
#define CONCURRENCY 200   /* handshakes in progress at once */

enum { CONNECTING, HANDSHAKE, SUBSCRIBING, READY, GONE };

struct conn {
    int fd, state, sampled, publisher, want_out;
    long long marks, frames, replies, errors, highest, unique, dups, wire;
    unsigned char hdr[14];
    int hdr_len;
    uint64_t need;          /* payload bytes left in the current frame */
    int opcode, whole;      /* whole: the payload is kept in buf (sampled, small, publisher) */
    unsigned char *buf;     /* handshake head, or a whole frame's payload */
    size_t buf_len, buf_cap;
    unsigned char *out;     /* unsent bytes (publisher, handshakes) */
    size_t out_len, out_off;
};

static struct {
    const char *path, *dialect;
    int port, n, window, batch, payload, server_pid, centrifugo;
    double seconds;
} opt = {"/", "text", 0, 1000, 200, 20, 100, 0, 0, 5.0};

static int ep;
static struct conn *conns;  /* conns[0..n-1] subscribers, conns[n] the publisher */
static long long hist[BUCKETS], hist_n;
static long long next_id = 1;

static long long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static double cpu_self(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu_of(int pid) {  /* utime + stime of a process, seconds (-1: unknown) */
    if (pid <= 0) return -1;
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    char *p = strrchr(text, ')');
    unsigned long long utime = 0, stime = 0;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                            &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Nanoseconds a process's main thread waited for a CPU while runnable (-1: unknown):
 * on a shared machine, the share of the window another process took. */
static double runqueue_of(int pid) {
    char path[64];
    snprintf(path, sizeof path, pid > 0 ? "/proc/%d/schedstat" : "/proc/self/schedstat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    unsigned long long run = 0, wait = 0;
    int ok = fscanf(f, "%llu %llu", &run, &wait) == 2;
    fclose(f);
    return ok ? (double)wait : -1;
}

static void record(long long v) {
    if (v < 0) v = 0;
    int index;
    if (v < SUB) index = (int)v;
    else {
        int shift = 64 - __builtin_clzll((unsigned long long)v) - 7;
        index = (shift + 1) * HALF + (int)(v >> shift) - HALF;
    }
    hist[index]++;
    hist_n++;
}

static long long percentile(double q) {  /* the upper end of the bucket holding quantile q */
    long long rank = (long long)ceil(q * (double)hist_n), seen = 0;
    for (int i = 0; i < BUCKETS; i++) {
        seen += hist[i];
        if (hist_n && seen >= rank) {
            if (i < SUB) return i;
            int shift = i / HALF - 1;
            return ((long long)(i % HALF + HALF + 1) << shift) - 1;
        }
    }
    return 0;
}

static void die(const char *what) { perror(what); exit(1); }

static void put(unsigned char **buf, size_t *len, size_t *cap, const void *data, size_t n) {
    if (*len + n > *cap) {
        *cap = (*len + n) * 2;
        *buf = realloc(*buf, *cap);
        if (*buf == NULL) die("realloc");
    }
    memcpy(*buf + *len, data, n);
    *len += n;
}

static void watch(struct conn *c, int out) {
    if (c->want_out == out) return;
    c->want_out = out;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) { watch(c, 1); return; }
            c->state = GONE;
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    watch(c, 0);
}

static void send_bytes(struct conn *c, const void *data, size_t n) {
    size_t cap = c->out_len + n;  /* out is sized exactly; grows as needed */
    if (c->out_len == 0 || c->out_off == c->out_len) c->out_len = c->out_off = 0;
    unsigned char *grown = realloc(c->out, cap);
    if (grown == NULL) die("realloc");
    c->out = grown;
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
    flush(c);
}

/* A client frame (masked with a zero key, as the Python bench) appended to buf. */
static void frame_into(unsigned char **buf, size_t *len, size_t *cap, int opcode,
                       const void *payload, size_t n) {
    unsigned char h[14];
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) h[1] = (unsigned char)(0x80 | n);
    else if (n < 65536) { h[1] = 0x80 | 126; h[2] = (unsigned char)(n >> 8); h[3] = (unsigned char)n; hl = 4; }
    else { h[1] = 0x80 | 127; for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)(n >> (56 - 8 * i)); hl = 10; }
    memset(h + hl, 0, 4);
    put(buf, len, cap, h, hl + 4);
    put(buf, len, cap, payload, n);
}

static void send_frame(struct conn *c, const char *payload, size_t n) {
    unsigned char *f = NULL;
    size_t len = 0, cap = 0;
    frame_into(&f, &len, &cap, 1, payload, n);
    send_bytes(c, f, len);
    free(f);
}

static void start_connect(struct conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) die("connect");
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->want_out = 1;
    c->state = CONNECTING;
}

static void connected(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) { errno = err; die("connect"); }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", opt.path, opt.port);
    c->state = HANDSHAKE;
    send_bytes(c, req, (size_t)n);
}

static void upgraded(struct conn *c) {
    if (!opt.centrifugo) { c->state = READY; return; }
    c->state = SUBSCRIBING;
    char cmd[160];
    int n = c->publisher
        ? snprintf(cmd, sizeof cmd, "{\"id\":%lld,\"connect\":{}}", next_id++)
        : snprintf(cmd, sizeof cmd, "{\"id\":%lld,\"connect\":{}}\n{\"id\":%lld,\"subscribe\":"
                   "{\"channel\":\"bench0\"}}", next_id, next_id + 1);
    if (!c->publisher) next_id += 2;
    send_frame(c, cmd, (size_t)n);
}

/* A whole text payload of a publisher, a sampled subscriber or a small frame. */
static void text_frame(struct conn *c, const unsigned char *p, size_t n) {
    if (opt.centrifugo && n == 2 && p[0] == '{' && p[1] == '}') { send_frame(c, "{}", 2); return; }
    const unsigned char *end = p + n;
    if (opt.centrifugo && (c->publisher || c->state == SUBSCRIBING)) {
        for (const unsigned char *q = p; q < end; q++) {  /* replies: lines starting {"id" */
            if ((q == p || q[-1] == '\n') && end - q > 5 && memcmp(q, "{\"id\"", 5) == 0) c->replies++;
        }
        if (memmem(p, n, "\"error\":{", 9) != NULL) c->errors++;
        if (c->state == SUBSCRIBING && c->replies >= (c->publisher ? 1 : 2)) {
            if (c->errors) { fprintf(stderr, "refused: %.*s\n", (int)n, p); exit(1); }
            c->state = READY;
        }
    }
    long long now = c->sampled ? now_us() : 0;
    for (const unsigned char *q = memchr(p, '@', n); q; q = memchr(q + 1, '@', (size_t)(end - q - 1))) {
        c->marks++;
        if (c->sampled) {
            char *e1, *e2;
            long long sent = strtoll((const char *)q + 1, &e1, 10);
            strtoll(e1 + 1, &e2, 10);
            long long seq = strtoll(e2 + 1, NULL, 10);
            record(now - sent);
            if (seq > c->highest) { c->highest = seq; c->unique++; } else c->dups++;
        }
        if (q + 1 >= end) break;
    }
}

static void frame_bytes(struct conn *c, const unsigned char *p, size_t n) {
    if (c->opcode == 1 && !c->whole) {  /* count in place, no copy */
        for (const unsigned char *q = memchr(p, '@', n); q; q = memchr(q + 1, '@', (size_t)(p + n - q - 1))) {
            c->marks++;
            if (q + 1 >= p + n) break;
        }
    } else if (c->whole) {
        put(&c->buf, &c->buf_len, &c->buf_cap, p, n);
    }
}

static void frame_done(struct conn *c) {
    c->frames++;
    if (c->whole) {
        if (c->opcode == 1) text_frame(c, c->buf, c->buf_len);
        else if (c->opcode == 9) { /* ping -> pong */
            unsigned char *f = NULL; size_t len = 0, cap = 0;
            frame_into(&f, &len, &cap, 10, c->buf, c->buf_len);
            send_bytes(c, f, len);
            free(f);
        } else if (c->opcode == 8) c->state = GONE;
        c->buf_len = 0;
    }
}

static void received(struct conn *c, const unsigned char *p, size_t n) {
    while (n > 0 && c->state != GONE) {
        if (c->need == 0 && c->hdr_len >= 0) {  /* reading a header */
            c->hdr[c->hdr_len++] = *p++;
            n--;
            if (c->hdr_len < 2) continue;
            int len7 = c->hdr[1] & 0x7F, hl = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
            if (c->hdr_len < hl) continue;
            uint64_t len = (uint64_t)len7;
            if (len7 == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            if (len7 == 127) { len = 0; for (int i = 0; i < 8; i++) len = len << 8 | c->hdr[2 + i]; }
            c->opcode = c->hdr[0] & 0x0F;
            c->whole = c->sampled || c->publisher || c->state != READY || len <= SMALL || c->opcode >= 8;
            c->hdr_len = 0;
            c->need = len;
            if (len == 0) frame_done(c);
            continue;
        }
        size_t take = n < c->need ? n : (size_t)c->need;
        frame_bytes(c, p, take);
        p += take;
        n -= take;
        c->need -= take;
        if (c->need == 0) frame_done(c);
    }
}

static void readable(struct conn *c, unsigned char *scratch) {
    ssize_t got = read(c->fd, scratch, READ_SIZE);
    if (got <= 0) {
        if (got < 0 && errno == EAGAIN) return;
        c->state = GONE;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        return;
    }
    c->wire += got;
    if (c->state == HANDSHAKE) {
        put(&c->buf, &c->buf_len, &c->buf_cap, scratch, (size_t)got);
        unsigned char *end = memmem(c->buf, c->buf_len, "\r\n\r\n", 4);
        if (end == NULL) return;
        if (memcmp(c->buf, "HTTP/1.1 101", 12) != 0) {
            fprintf(stderr, "handshake refused: %.*s\n", (int)(end - c->buf), c->buf);
            exit(1);
        }
        size_t head = (size_t)(end + 4 - c->buf), rest = c->buf_len - head;
        unsigned char *tail = malloc(rest + 1);
        memcpy(tail, end + 4, rest);
        c->buf_len = 0;
        upgraded(c);
        received(c, tail, rest);
        free(tail);
        return;
    }
    received(c, scratch, (size_t)got);
}

static void pump(int timeout_ms, unsigned char *scratch) {
    struct epoll_event events[512];
    int k = epoll_wait(ep, events, 512, timeout_ms);
    for (int i = 0; i < k; i++) {
        struct conn *c = events[i].data.ptr;
        if (c->state == GONE) continue;
        if (c->state == CONNECTING) { connected(c); continue; }
        if (events[i].events & EPOLLOUT) flush(c);
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(c, scratch);
    }
}

static long long total_marks(void) {
    long long t = 0;
    for (int i = 0; i < opt.n; i++) t += conns[i].marks;
    return t;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) opt.port = atoi(v);
        else if (!strcmp(k, "--path")) opt.path = v;
        else if (!strcmp(k, "--dialect")) opt.dialect = v;
        else if (!strcmp(k, "-n")) opt.n = atoi(v);
        else if (!strcmp(k, "--window")) opt.window = atoi(v);
        else if (!strcmp(k, "--batch")) opt.batch = atoi(v);
        else if (!strcmp(k, "--seconds")) opt.seconds = atof(v);
        else if (!strcmp(k, "--payload")) opt.payload = atoi(v);
        else if (!strcmp(k, "--server-pid")) opt.server_pid = atoi(v);
        else { fprintf(stderr, "unknown option %s\n", k); return 2; }
    }
    opt.centrifugo = !strcmp(opt.dialect, "centrifugo");
    if (opt.port <= 0 || opt.n < 1 || opt.batch < 1 || opt.window < 1) {
        fprintf(stderr, "usage: loadgen --port P [-n N] [--window W] ... (see loadgen.c)\n");
        return 2;
    }
    struct rlimit nofile;
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)opt.n + 1, sizeof *conns);
    unsigned char *scratch = malloc(READ_SIZE);
    struct conn *pub = &conns[opt.n];
    pub->publisher = 1;
    for (int i = 0; i < opt.n; i++) conns[i].sampled = i % 10 == 0;

    /* Connect: at most CONCURRENCY handshakes at once, all within 60 s. */
    long long deadline = now_us() + 60000000;
    int started = 0;
    for (;;) {
        int ready = 0, busy = 0;
        for (int i = 0; i < started; i++) {
            if (conns[i].state == READY) ready++;
            else if (conns[i].state == GONE) { fprintf(stderr, "subscriber %d lost while connecting\n", i); return 1; }
            else busy++;
        }
        if (ready == opt.n) break;
        while (busy < CONCURRENCY && started < opt.n) { start_connect(&conns[started++]); busy++; }
        if (now_us() > deadline) { fprintf(stderr, "connect timed out (%d ready)\n", ready); return 1; }
        pump(10, scratch);
    }
    start_connect(pub);
    while (pub->state != READY) {
        if (pub->state == GONE || now_us() > deadline) { fprintf(stderr, "publisher failed\n"); return 1; }
        pump(10, scratch);
    }
    if (!opt.centrifugo) {  /* plain servers give no reply: hellos until everyone heard one */
        for (;;) {
            send_frame(pub, "hello", 5);
            long long until = now_us() + 300000;
            while (now_us() < until) pump(10, scratch);
            int heard = 0;
            for (int i = 0; i < opt.n; i++) heard += conns[i].frames > 0;
            if (heard == opt.n) break;
            if (now_us() > deadline) { fprintf(stderr, "%d never heard the hello\n", opt.n - heard); return 1; }
        }
        long long until = now_us() + 200000;
        while (now_us() < until) pump(10, scratch);
    }
    for (int i = 0; i <= opt.n; i++) {
        conns[i].marks = conns[i].unique = conns[i].dups = conns[i].wire = 0;
        conns[i].highest = -1;
    }
    memset(hist, 0, sizeof hist);
    hist_n = 0;
    long long base_replies = pub->replies, base_errors = pub->errors;

    /* Measure: keep `window` publications in flight for `seconds`. */
    char pad[4096];
    int pad_len = opt.payload - 30 < 1 ? 1 : opt.payload - 30 > 4000 ? 4000 : opt.payload - 30;
    memset(pad, 'x', (size_t)pad_len);
    unsigned char *batch = NULL;
    size_t batch_len = 0, batch_cap = 0;
    long long sent = 0;
    struct conn *probe = &conns[0];
    double server0 = cpu_of(opt.server_pid), self0 = cpu_self();
    double server_rq0 = runqueue_of(opt.server_pid), self_rq0 = runqueue_of(0);
    long long t0 = now_us(), end = t0 + (long long)(opt.seconds * 1e6);
    while (now_us() < end) {
        long long in_flight = sent - probe->marks;
        if (opt.centrifugo && sent - (pub->replies - base_replies) > in_flight)
            in_flight = sent - (pub->replies - base_replies);
        while (in_flight < opt.window && pub->out_len == 0) {
            long long stamp = now_us();
            char line[4400];
            batch_len = 0;
            if (opt.centrifugo) {
                unsigned char *text = NULL;
                size_t tl = 0, tc = 0;
                for (int k = 0; k < opt.batch; k++) {
                    int n = snprintf(line, sizeof line, "%s{\"id\":%lld,\"publish\":{\"channel\":\"bench0\","
                                     "\"data\":\"@%lld,0,%lld,%.*s\"}}", k ? "\n" : "", next_id++,
                                     stamp, sent + k, pad_len, pad);
                    put(&text, &tl, &tc, line, (size_t)n);
                }
                frame_into(&batch, &batch_len, &batch_cap, 1, text, tl);
                free(text);
            } else {
                for (int k = 0; k < opt.batch; k++) {
                    int n = snprintf(line, sizeof line, "@%lld,0,%lld,%.*s", stamp, sent + k, pad_len, pad);
                    frame_into(&batch, &batch_len, &batch_cap, 1, line, (size_t)n);
                }
            }
            sent += opt.batch;
            in_flight += opt.batch;
            send_bytes(pub, batch, batch_len);
            if (pub->state == GONE) { fprintf(stderr, "publisher connection closed\n"); return 1; }
        }
        pump(5, scratch);
    }
    long long t1 = now_us();
    double server1 = cpu_of(opt.server_pid), self1 = cpu_self();
    double server_rq1 = runqueue_of(opt.server_pid), self_rq1 = runqueue_of(0);
    long long window_marks = total_marks(), window_wire = 0;
    for (int i = 0; i < opt.n; i++) window_wire += conns[i].wire;

    /* Drain: until everything acknowledged arrived, nothing moves for 0.5 s, or 5 s. */
    long long acked = opt.centrifugo ? (pub->replies - base_replies) - (pub->errors - base_errors) : sent;
    long long drain_end = now_us() + 5000000, last = -1, stable = now_us();
    for (;;) {
        if (opt.centrifugo) acked = (pub->replies - base_replies) - (pub->errors - base_errors);
        long long total = total_marks();
        int replied = !opt.centrifugo || pub->replies - base_replies >= sent;
        if ((total >= acked * opt.n && replied) || now_us() > drain_end) break;
        if (total != last) { last = total; stable = now_us(); }
        else if (now_us() - stable > 500000 && replied) break;
        pump(10, scratch);
    }
    long long total = total_marks(), missing = 0, dups = 0, checked = 0, closed = 0;
    for (int i = 0; i < opt.n; i++) {
        closed += conns[i].state == GONE;
        if (!conns[i].sampled) continue;
        checked++;
        dups += conns[i].dups;
        if (conns[i].unique < acked) missing += acked - conns[i].unique;
    }
    double secs = (double)(t1 - t0) / 1e6;
    printf("{\"dialect\":\"%s\",\"subscribers\":%d,\"window\":%d,\"batch\":%d,\"seconds\":%.3f,"
           "\"publications\":%lld,\"publications_per_s\":%.1f,\"delivered\":%lld,"
           "\"deliveries_per_s\":%.1f,\"expected\":%lld,\"delivered_after_drain\":%lld,"
           "\"lost\":%lld,\"unacknowledged\":%lld,\"publish_errors\":%lld,\"duplicated\":%lld,"
           "\"seq_checked_subscribers\":%lld,\"seq_lost\":%lld,\"closed_by_server\":%lld,"
           "\"wire_bytes_per_delivery\":%.1f,\"loadgen_cpu\":[%.4f],",
           opt.dialect, opt.n, opt.window, opt.batch, secs, sent, (double)sent / secs, window_marks,
           (double)window_marks / secs, acked * opt.n, total,
           acked * opt.n > total ? acked * opt.n - total : 0,
           opt.centrifugo ? sent - (pub->replies - base_replies) : 0,
           opt.centrifugo ? pub->errors - base_errors : 0, dups, checked, missing, closed,
           window_marks ? (double)window_wire / (double)window_marks : 0.0, (self1 - self0) / secs);
    if (self_rq0 >= 0 && self_rq1 >= 0)
        printf("\"loadgen_runqueue\":%.4f,", (self_rq1 - self_rq0) / 1e9 / secs);
    if (server_rq0 >= 0 && server_rq1 >= 0 && opt.server_pid > 0)
        printf("\"server_runqueue\":%.4f,", (server_rq1 - server_rq0) / 1e9 / secs);
    if (server0 >= 0 && server1 >= 0)
        printf("\"server_cpu\":%.4f,\"server_ns_per_delivery\":%.1f,", (server1 - server0) / secs,
               window_marks ? (server1 - server0) * 1e9 / (double)window_marks : 0.0);
    printf("\"latency_us\":{\"count\":%lld,\"p50_us\":%lld,\"p90_us\":%lld,\"p99_us\":%lld,"
           "\"p99_9_us\":%lld}}\n", hist_n, percentile(0.5), percentile(0.9), percentile(0.99),
           percentile(0.999));
    return 0;
}
