/* storm.c: the reconnect storm after a server restart, as `hubbub bench connect --storm restart`.
 *
 * Rule: a client does what the Python bench's does (src/hubbub/tools/scenarios.py
 * `_connect` and `establish`, `Worker._client`, wsclient.py), so that only the
 * generator's cost differs:
 * - at most CONCURRENCY attempts in progress (TCP connect to the subscribe reply),
 *   the others wait their turn in order;
 * - `centrifugo`: after the 101, one frame `{"id":2,"connect":{}}` '\n'
 *   `{"id":3,"subscribe":{"channel":C}}` with C = [namespace:]channel[k % channels]
 *   (the channel itself when there is one), on a reconnect with
 *   `"recover":true,"epoch":E,"offset":O` from its last subscribe reply that had an
 *   epoch; back when the subscribe reply arrives (an error reply ends the run);
 *   `text`: back when the 101 arrives;
 * - an attempt fails on a refused or reset connect, an EOF or reset before the
 *   answer, a non-101 answer, or 10 s without progress in one step; it is retried
 *   after 0.05 s x uniform(0.5, 1.5), the delay doubling up to 0.5 s;
 * - a connection that ends (a close frame, answered; EOF; reset) comes back at once.
 *
 * With the harness (benchmarks/storm.py): when all N are connected this prints
 * `{"connected": N, "seconds": S, ...}` and reads `go <t>` on stdin, t being the
 * harness's CLOCK_MONOTONIC time (Python's time.monotonic()) just before it
 * signalled the server. The storm ends when every client has come back since;
 * bounded by --storm-timeout (from t; from the connected line while no `go`).
 * Then one JSON object: storm seconds (last back - t), failed attempts by reason,
 * clients back and recovered, when 10/50/90/99 % of them were back, this process's
 * CPU over the storm (and how much of it in the kernel: on loopback the peer's
 * side of a connect is processed in the caller's context) and the share of the
 * storm it spent waiting runnable (schedstat); the clients stay connected until stdin
 * closes (the harness reads the server's CPU first), at most 30 s.
 * Exit 1 with a message on stderr: timed out (the JSON is printed), a refusal.
 */
#define _GNU_SOURCE
#include "wsclient.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#define FIRST_DELAY 0.05     /* retry schedule of the Python bench's establish() */
#define MAX_DELAY 0.5
#define STEP_TIMEOUT 10000000LL  /* us without progress in one step of an attempt */
#define SUBSCRIBE_ID 3       /* the Python bench's ids: connect 2, subscribe 3 */
#define MAX_REASONS 16

static struct conn *conns;
static struct conn **queue, **heap;  /* waiting for a slot (FIFO); backing off (min-heap) */
static int q_head, q_len, heap_len;
static int in_progress, up_count, back_count, storming, go_seen, input_closed;
static long long go_us, connected_us, last_back_us, deadline_us, closed_again;
static long long failed[2];  /* failed attempts: [0] first connect, [1] storm */
static struct { char text[96]; long long count; } reasons[MAX_REASONS];
static int n_reasons, last_reason = -1;

static void fatal(const char *what, int i, const unsigned char *p, size_t n) {
    fprintf(stderr, "loadgen: client %d: %s: %.*s\n", i, what, (int)(n > 300 ? 300 : n), p);
    exit(1);
}

static void note_failure(const char *why) {
    size_t len = strcspn(why, "\r\n");
    if (len >= sizeof reasons[0].text) len = sizeof reasons[0].text - 1;
    int i = 0;
    while (i < n_reasons && (strlen(reasons[i].text) != len || memcmp(reasons[i].text, why, len))) i++;
    if (i == n_reasons) {
        if (n_reasons == MAX_REASONS) i = MAX_REASONS - 1;  /* the last one collects the rest */
        else { memcpy(reasons[i].text, why, len); reasons[i].text[len] = 0; n_reasons++; }
    }
    reasons[i].count++;
    last_reason = i;
}

/* -- the JSON of replies: members of an object at its top level ------------------------ */
static const unsigned char *skip_string(const unsigned char *p, const unsigned char *end) {
    for (p++; p < end; p++) {
        if (*p == '\\') p++;
        else if (*p == '"') return p + 1;
    }
    return end;
}

static const unsigned char *skip_value(const unsigned char *p, const unsigned char *end) {
    if (p < end && *p == '"') return skip_string(p, end);
    if (p < end && (*p == '{' || *p == '[')) {
        int depth = 0;
        while (p < end) {
            if (*p == '"') { p = skip_string(p, end); continue; }
            if (*p == '{' || *p == '[') depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
            p++;
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']') p++;  /* number, true, null */
    return p;
}

/* The value of `key` in the object at p: *v, *vn; 0 when absent (or p is no object). */
static int member(const unsigned char *p, size_t n, const char *key, const unsigned char **v,
                  size_t *vn) {
    const unsigned char *end = p + n;
    size_t klen = strlen(key);
    if (n == 0 || *p++ != '{') return 0;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ',' || *p == '\t' || *p == '\r')) p++;
        if (p >= end || *p != '"') return 0;
        const unsigned char *k = p + 1;
        p = skip_string(p, end);
        int match = (size_t)(p - 1 - k) == klen && memcmp(k, key, klen) == 0;
        while (p < end && (*p == ' ' || *p == ':')) p++;
        const unsigned char *value_end = skip_value(p, end);
        if (match) { *v = p; *vn = (size_t)(value_end - p); return 1; }
        p = value_end;
    }
    return 0;
}

static long long integer(const unsigned char *p, size_t n) {
    long long x = 0;
    for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '9'; i++) x = x * 10 + (p[i] - '0');
    return x;
}

/* -- a client's life ----------------------------------------------------------------- */
static void back(struct conn *c) {
    c->state = READY;
    c->up = 1;
    up_count++;
    in_progress--;
    if (storming) {
        c->back = 1;
        back_count++;
        last_back_us = c->back_us = now_us();
    }
}

static void upgraded(struct conn *c) {
    if (!opt.centrifugo) { back(c); return; }
    char connect[2048], channel[256], recover[160] = "", cmd[4096];
    snprintf(connect, sizeof connect, opt.token[0] ? "{\"token\":\"%s\"}" : "{}", opt.token);
    int at = snprintf(channel, sizeof channel, "%s%s%s", opt.namespace, opt.namespace[0] ? ":" : "",
                      opt.channel);
    if (opt.channels > 1) snprintf(channel + at, sizeof channel - (size_t)at, "%d", c->index % opt.channels);
    if (c->has_position)
        snprintf(recover, sizeof recover, ",\"recover\":true,\"epoch\":\"%s\",\"offset\":%lld",
                 c->epoch, c->offset);
    int n = snprintf(cmd, sizeof cmd, "{\"id\":2,\"connect\":%s}\n{\"id\":%d,\"subscribe\":"
                     "{\"channel\":\"%s\"%s}}", connect, SUBSCRIBE_ID, channel, recover);
    if (n >= (int)sizeof cmd) { fprintf(stderr, "loadgen: --token too long\n"); exit(1); }
    c->state = SUBSCRIBING;
    send_frame(c, cmd, (size_t)n);
}

/* One reply line of a subscribing client: an error ends the run; the subscribe reply
 * brings it back, with its position (epoch, offset) kept for the next reconnect. */
static void reply(struct conn *c, const unsigned char *line, size_t n) {
    const unsigned char *v, *s;
    size_t vn, sn;
    if (!member(line, n, "id", &v, &vn)) return;  /* a push */
    if (member(line, n, "error", &s, &sn)) fatal("the server refused connect or subscribe", c->index, line, n);
    if (integer(v, vn) != SUBSCRIBE_ID) return;
    c->recovered = 0;
    if (member(line, n, "subscribe", &s, &sn)) {
        if (member(s, sn, "recovered", &v, &vn)) c->recovered = vn == 4 && !memcmp(v, "true", 4);
        if (member(s, sn, "epoch", &v, &vn) && vn >= 2 && *v == '"' && vn - 2 < sizeof c->epoch) {
            memcpy(c->epoch, v + 1, vn - 2);
            c->epoch[vn - 2] = 0;
            c->has_position = 1;
            c->offset = member(s, sn, "offset", &v, &vn) ? integer(v, vn) : 0;
        }
    }
    back(c);
}

static void text(struct conn *c, const unsigned char *p, size_t n) {
    const unsigned char *end = p + n;
    while (c->state == SUBSCRIBING && p < end) {  /* replies may share a frame, '\n'-joined */
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p)), *stop = nl ? nl : end;
        reply(c, p, (size_t)(stop - p));
        p = stop + 1;
    }
}

static void failed_attempt(struct conn *c, const char *why) {
    note_failure(why);
    c->noted = 1;
    c->gone_from = c->state;
    c->state = GONE;
}

static const struct mode storm = {1, upgraded, text, failed_attempt};

static void enqueue(struct conn *c) {
    c->state = QUEUED;
    queue[(q_head + q_len++) % opt.n] = c;
}

static void heap_push(struct conn *c) {
    int i = heap_len++;
    while (i > 0 && heap[(i - 1) / 2]->wake_us > c->wake_us) { heap[i] = heap[(i - 1) / 2]; i = (i - 1) / 2; }
    heap[i] = c;
}

static struct conn *heap_pop(void) {
    struct conn *top = heap[0], *last = heap[--heap_len];
    int i = 0;
    for (;;) {
        int child = 2 * i + 1;
        if (child >= heap_len) break;
        if (child + 1 < heap_len && heap[child + 1]->wake_us < heap[child]->wake_us) child++;
        if (heap[child]->wake_us >= last->wake_us) break;
        heap[i] = heap[child];
        i = child;
    }
    if (heap_len) heap[i] = last;
    return top;
}

/* After any event of c: a connection that ended comes back at once; a failed
 * attempt is retried after the bench's delay. */
static void settle(struct conn *c) {
    if (c->state != GONE) return;
    if (c->fd >= 0) { close(c->fd); c->fd = -1; }
    if (c->up) {
        c->up = 0;
        up_count--;
        if (!storming) { fprintf(stderr, "loadgen: client %d was closed before the storm\n", c->index); exit(1); }
        if (c->back) { c->back = 0; back_count--; closed_again++; }
        c->delay = FIRST_DELAY;
        enqueue(c);
        return;
    }
    in_progress--;
    if (!c->noted) {
        char why[128];
        const char *step = c->gone_from == SUBSCRIBING ? "before the replies" : "before the 101";
        snprintf(why, sizeof why, "closed %s: %s", step, c->err ? strerror(c->err) : "EOF");
        note_failure(why);
    }
    failed[storming]++;
    c->wake_us = now_us() + (long long)(c->delay * (0.5 + drand48()) * 1e6);
    c->delay = fmin(c->delay * 2, MAX_DELAY);
    c->state = SLEEPING;
    heap_push(c);
}

static void attempt(struct conn *c) {
    c->hdr_len = 0;
    c->need = 0;
    c->buf_len = c->out_len = c->out_off = 0;
    c->noted = c->err = 0;
    c->timed_state = -1;
    in_progress++;
    start_connect(c);
    settle(c);  /* refused on the spot */
}

/* Start what may start: clients whose delay is over join the queue; the queue's
 * head gets the free slots. */
static void fill(void) {
    long long now = now_us();
    while (heap_len && heap[0]->wake_us <= now) enqueue(heap_pop());
    while (q_len && in_progress < CONCURRENCY) {
        struct conn *c = queue[q_head];
        q_head = (q_head + 1) % opt.n;
        q_len--;
        attempt(c);
    }
}

/* An attempt with no progress for STEP_TIMEOUT in one step fails (checked every 0.1 s). */
static void expire(long long now) {
    for (int i = 0; i < opt.n; i++) {
        struct conn *c = &conns[i];
        if (c->state != CONNECTING && c->state != HANDSHAKE && c->state != SUBSCRIBING) continue;
        if (c->timed_state != c->state) { c->timed_state = c->state; c->deadline_us = now + STEP_TIMEOUT; }
        else if (now > c->deadline_us) { failed_attempt(c, "timeout: 10 s without an answer"); settle(c); }
    }
}

/* `go <t>` from the harness: the storm's start. */
static void read_input(void) {
    static char line[256];
    static size_t len;
    ssize_t got = read(0, line + len, sizeof line - 1 - len);
    if (got <= 0) {
        if (got < 0 && errno == EINTR) return;
        if (!go_seen) { fprintf(stderr, "loadgen: stdin closed before the `go` line\n"); exit(1); }
        epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
        input_closed = 1;
        return;
    }
    len += (size_t)got;
    line[len] = 0;
    char *nl = strchr(line, '\n');
    if (nl == NULL && len < sizeof line - 1) return;
    double t;
    if (go_seen || sscanf(line, "go %lf", &t) != 1) {
        fprintf(stderr, "loadgen: expected one line `go <monotonic seconds>` on stdin, got: %s\n", line);
        exit(1);
    }
    go_seen = 1;
    go_us = llround(t * 1e6);
    deadline_us = go_us + (long long)(opt.storm_timeout * 1e6);
    len = 0;
}

static int all_up(void) { return up_count == opt.n; }
static int all_back(void) { return go_seen && back_count == opt.n; }

/* Run the clients until done() or the deadline: 0, or -1 at the deadline. */
static int run(int (*done)(void), unsigned char *scratch) {
    struct epoll_event events[512];
    long long next_scan = 0;
    while (!done()) {
        long long now = now_us();
        if (now > deadline_us) return -1;
        if (now >= next_scan) { expire(now); next_scan = now + 100000; }
        fill();
        long long wait = 10000;
        if (heap_len && heap[0]->wake_us - now < wait) wait = heap[0]->wake_us - now;
        int k = epoll_wait(ep, events, 512, wait <= 0 ? 0 : (int)((wait + 999) / 1000));
        for (int i = 0; i < k; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) { read_input(); continue; }
            handle_event(c, events[i].events, scratch);
            settle(c);
        }
    }
    return 0;
}

static double system_cpu(void) {  /* this process's CPU time in the kernel, s */
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

static int earlier(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* When the clients came back, seconds after t: the shape of the storm (a tail of
 * clients backing off after refusals, or a server working through a queue). */
static void back_times(void) {
    long long *at = malloc(sizeof *at * (size_t)opt.n);
    int k = 0;
    for (int i = 0; i < opt.n; i++) if (conns[i].back) at[k++] = conns[i].back_us - go_us;
    if (at == NULL || k == 0) { free(at); return; }
    qsort(at, (size_t)k, sizeof *at, earlier);
    printf("\"back_s\":{\"first\":%.4f,\"p10\":%.4f,\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,"
           "\"last\":%.4f},", at[0] / 1e6, at[k / 10] / 1e6, at[k / 2] / 1e6, at[k * 9 / 10] / 1e6,
           at[k * 99 / 100] / 1e6, at[k - 1] / 1e6);
    free(at);
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

int storm_main(void) {
    mode = &storm;
    srand48(now_us() ^ getpid());
    conns = calloc((size_t)opt.n, sizeof *conns);
    queue = calloc((size_t)opt.n, sizeof *queue);
    heap = calloc((size_t)opt.n, sizeof *heap);
    unsigned char *scratch = malloc(READ_SIZE);
    if (conns == NULL || queue == NULL || heap == NULL || scratch == NULL) die("calloc");

    /* Connect, every failed attempt retried, within 60 s. */
    long long t0 = now_us();
    double cpu0 = cpu_self();
    deadline_us = t0 + 60000000;
    for (int i = 0; i < opt.n; i++) {
        conns[i].index = i;
        conns[i].fd = -1;
        conns[i].delay = FIRST_DELAY;
        enqueue(&conns[i]);
    }
    if (run(all_up, scratch) < 0) {
        fprintf(stderr, "loadgen: connect timed out: %d of %d connected, %lld failed attempts%s%s\n",
                up_count, opt.n, failed[0], last_reason >= 0 ? ", last: " : "",
                last_reason >= 0 ? reasons[last_reason].text : "");
        return 1;
    }
    connected_us = now_us();
    double cpu1 = cpu_self(), sys1 = system_cpu(), rq1 = runqueue_of(0), connect_s = (double)(connected_us - t0) / 1e6;
    struct epoll_event in = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in) < 0) die("stdin (a pipe from the harness)");
    storming = 1;
    n_reasons = 0;
    last_reason = -1;
    printf("{\"connected\":%d,\"seconds\":%.4f,\"failed_attempts\":%lld,\"loadgen_cpu\":%.4f}\n",
           opt.n, connect_s, failed[0], (cpu1 - cpu0) / connect_s);
    fflush(stdout);

    /* The storm: until every client came back after `go`. */
    deadline_us = connected_us + (long long)(opt.storm_timeout * 1e6);
    int timed_out = run(all_back, scratch) < 0;
    long long end = timed_out ? now_us() : last_back_us;
    double cpu2 = cpu_self(), sys2 = system_cpu(), rq2 = runqueue_of(0), secs = (double)(end - go_us) / 1e6;
    int recovered = 0;
    for (int i = 0; i < opt.n; i++) recovered += conns[i].back && conns[i].recovered;
    printf("{\"mode\":\"storm\",\"dialect\":\"%s\",\"clients\":%d,\"connect_seconds\":%.4f,"
           "\"connect_failed_attempts\":%lld,\"connect_loadgen_cpu\":%.4f,",
           opt.dialect, opt.n, connect_s, failed[0], (cpu1 - cpu0) / connect_s);
    if (go_seen)
        printf("\"t_storm\":%.6f,\"t_back\":%.6f,\"seconds\":%.4f,\"loadgen_cpu\":%.4f,",
               (double)go_us / 1e6, (double)end / 1e6, secs, secs > 0 ? (cpu2 - cpu1) / secs : 0.0);
    if (go_seen) back_times();
    if (go_seen && rq1 >= 0 && rq2 >= 0 && secs > 0)
        printf("\"loadgen_runqueue\":%.4f,", (rq2 - rq1) / 1e9 / secs);
    printf("\"back\":%d,\"failed_attempts\":%lld,\"recovered\":%d,\"closed_again\":%lld,"
           "\"loadgen_cpu_s\":%.4f,\"loadgen_system_s\":%.4f,\"timed_out\":%s,\"failures\":{",
           back_count, failed[1], recovered, closed_again, cpu2 - cpu1, sys2 - sys1,
           timed_out ? "true" : "false");
    for (int i = 0; i < n_reasons; i++) {
        if (i) putchar(',');
        json_string(reasons[i].text);
        printf(":%lld", reasons[i].count);
    }
    printf("},\"errors\":[");
    char error[256] = "";
    if (timed_out && !go_seen)
        snprintf(error, sizeof error, "no `go` line within %.0f s of the connected line", opt.storm_timeout);
    else if (timed_out)
        snprintf(error, sizeof error, "storm timed out after %g s: %d of %d clients back, %lld failed "
                 "attempts%s%s", opt.storm_timeout, back_count, opt.n, failed[1],
                 last_reason >= 0 ? ", last: " : "", last_reason >= 0 ? reasons[last_reason].text : "");
    if (error[0]) json_string(error);
    printf("]}\n");
    fflush(stdout);
    if (timed_out) { fprintf(stderr, "loadgen: %s\n", error); return 1; }

    /* Stay connected until the harness has read the server's CPU (stdin closes). */
    long long until = now_us() + 30000000;
    struct epoll_event events[512];
    char sink[256];
    while (!input_closed) {
        int k = epoll_wait(ep, events, 512, 100);
        for (int i = 0; i < k; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                if (read(0, sink, sizeof sink) <= 0) return 0;
                continue;
            }
            handle_event(c, events[i].events, scratch);  /* pings answered */
            if (c->state == GONE && c->fd >= 0) { close(c->fd); c->fd = -1; }
        }
        if (now_us() > until) return 0;
    }
    return 0;
}
