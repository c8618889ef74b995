/* fanout.c: the fan-out mode (the default): N subscribers on one channel, one publisher.
 *
 * Rule: the publisher keeps WINDOW publications in flight, BATCH per write, each
 * stamped `@<send time us>,<publisher>,<seq>,` then padding, as the Python bench's;
 * every subscriber counts '@' bytes, every 10th parses each stamp (latency
 * histogram, per-publisher sequence check). In flight = sent - max(what the probe
 * subscriber received, replies), as in the Python bench: the probe is the first
 * subscriber. The measured window is timed; a drain of at most 5 s counts loss.
 */
#define _GNU_SOURCE
#include "wsclient.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB 128           /* histogram: exact below this, then 64 buckets per power of 2 */
#define HALF 64
#define BUCKETS (HALF * 60)

static struct conn *conns;  /* conns[0..n-1] subscribers, conns[n] the publisher */
static long long hist[BUCKETS], hist_n;
static long long next_id = 1;

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

static void text_frame(struct conn *c, const unsigned char *p, size_t n) {
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
    if (!c->sampled) { c->marks += count_marks(p, n); return; }
    long long now = now_us();
    for (const unsigned char *q = memchr(p, '@', n); q; q = memchr(q, '@', (size_t)(end - q))) {
        c->marks++;
        q++;  /* @<sent us>,<publisher>,<seq>, */
        long long sent = parse_decimal(&q, end);
        if (q < end) q++;
        parse_decimal(&q, end);
        if (q < end) q++;
        long long seq = parse_decimal(&q, end);
        record(now - sent);
        if (seq > c->highest) { c->highest = seq; c->unique++; } else c->dups++;
        if (q >= end) break;
    }
}

/* Fan-out stops at a failed connect or handshake: its figures need every subscriber. */
static void failed(struct conn *c, const char *why) {
    (void)c;
    fprintf(stderr, "%s\n", why);
    exit(1);
}

static const struct mode fanout = {0, upgraded, text_frame, failed};

static long long total_marks(void) {
    long long t = 0;
    for (int i = 0; i < opt.n; i++) t += conns[i].marks;
    return t;
}

int fanout_main(void) {
    mode = &fanout;
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
