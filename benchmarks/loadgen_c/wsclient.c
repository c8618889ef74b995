/* wsclient.c: non-blocking WebSocket client connections on one epoll, for both modes.
 *
 * Rule: see wsclient.h. TCP connect, the upgrade request (fixed key: nobody checks
 * the accept header here), client frames masked with a zero key (as the Python
 * bench's), the server's frames read with their payload either kept whole or only
 * scanned for '@' in place, pings and close frames answered. What a connection is
 * for (subscribe, publish, come back after a restart) is the mode's.
 */
#define _GNU_SOURCE
#include "wsclient.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SMALL 64          /* frames up to this size are buffered whole (pings, replies) */

int ep;
const struct mode *mode;

long long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

double cpu_self(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

double cpu_of(int pid) {  /* utime + stime of a process, seconds (-1: unknown) */
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
double runqueue_of(int pid) {
    char path[64];
    snprintf(path, sizeof path, pid > 0 ? "/proc/%d/schedstat" : "/proc/self/schedstat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    unsigned long long run = 0, wait = 0;
    int ok = fscanf(f, "%llu %llu", &run, &wait) == 2;
    fclose(f);
    return ok ? (double)wait : -1;
}

void die(const char *what) { perror(what); exit(1); }

void raise_nofile(void) {
    struct rlimit nofile;
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
}

void put(unsigned char **buf, size_t *len, size_t *cap, const void *data, size_t n) {
    if (*len + n > *cap) {
        *cap = (*len + n) * 2;
        *buf = realloc(*buf, *cap);
        if (*buf == NULL) die("realloc");
    }
    memcpy(*buf + *len, data, n);
    *len += n;
}

/* The connection has ended (EOF, reset, a close frame, a failed write): the mode acts. */
static void gone(struct conn *c, int err) {
    c->gone_from = c->state;
    c->err = err;
    c->state = GONE;
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
            gone(c, errno);
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    watch(c, 0);
}

void send_bytes(struct conn *c, const void *data, size_t n) {
    if (c->state == GONE) return;
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
void frame_into(unsigned char **buf, size_t *len, size_t *cap, int opcode, const void *payload,
                size_t n) {
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

static void send_opcode(struct conn *c, int opcode, const void *payload, size_t n) {
    unsigned char *f = NULL;
    size_t len = 0, cap = 0;
    frame_into(&f, &len, &cap, opcode, payload, n);
    send_bytes(c, f, len);
    free(f);
}

void send_frame(struct conn *c, const char *payload, size_t n) { send_opcode(c, 1, payload, n); }

/* A new socket for c, connecting; a refusal on the spot goes to the mode's `failed`. */
void start_connect(struct conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    c->state = CONNECTING;
    c->want_out = 1;
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        char why[128];
        snprintf(why, sizeof why, "connect: %s", strerror(errno));
        c->err = errno;
        mode->failed(c, why);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void connected(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        char why[128];
        snprintf(why, sizeof why, "connect: %s", strerror(err));
        c->err = err;
        mode->failed(c, why);
        return;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", opt.path, opt.port);
    c->state = HANDSHAKE;
    send_bytes(c, req, (size_t)n);
}

/* The '@' bytes of p[0..n): one per publication. A plain loop the compiler turns into
 * vector compares, several times faster than a memchr call per publication. */
long long count_marks(const unsigned char *p, size_t n) {
    long long count = 0;
    while (n > 0) {  /* blocks of up to 255 bytes: byte-wide counters in the vector lanes */
        size_t block = n < 255 ? n : 255;
        unsigned char in_block = 0;
        for (size_t i = 0; i < block; i++) in_block += p[i] == '@';
        count += in_block;
        p += block;
        n -= block;
    }
    return count;
}

/* The non-negative decimal at *at (stopping at the first other byte or at end),
 * *at moved past it: the stamps' fields, without strtoll's locale machinery. */
long long parse_decimal(const unsigned char **at, const unsigned char *end) {
    const unsigned char *q = *at;
    long long value = 0;
    while (q < end && *q >= '0' && *q <= '9') value = value * 10 + (*q++ - '0');
    *at = q;
    return value;
}

static void frame_bytes(struct conn *c, const unsigned char *p, size_t n) {
    if (c->opcode == 1 && !c->whole) {  /* count in place, no copy */
        c->marks += count_marks(p, n);
    } else if (c->whole) {
        put(&c->buf, &c->buf_len, &c->buf_cap, p, n);
    }
}

static void frame_done(struct conn *c) {
    c->frames++;
    if (c->whole) {
        if (c->opcode == 1) {
            if (opt.centrifugo && c->buf_len == 2 && c->buf[0] == '{' && c->buf[1] == '}')
                send_frame(c, "{}", 2);  /* the server's ping: the pong */
            else mode->text(c, c->buf, c->buf_len);
        } else if (c->opcode == 9) {
            send_opcode(c, 10, c->buf, c->buf_len);
        } else if (c->opcode == 8) {  /* answered with its code, as the Python bench does */
            send_opcode(c, 8, c->buf, c->buf_len < 2 ? c->buf_len : 2);
            if (c->state != GONE) gone(c, 0);
        }
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
            c->whole = mode->whole_frames || c->sampled || c->publisher || c->state != READY ||
                       len <= SMALL || c->opcode >= 8;
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
        gone(c, got < 0 ? errno : 0);
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        return;
    }
    c->wire += got;
    if (c->state == HANDSHAKE) {
        put(&c->buf, &c->buf_len, &c->buf_cap, scratch, (size_t)got);
        unsigned char *end = memmem(c->buf, c->buf_len, "\r\n\r\n", 4);
        if (end == NULL) return;
        if (memcmp(c->buf, "HTTP/1.1 101", 12) != 0) {
            char why[256];
            snprintf(why, sizeof why, "handshake refused: %.*s", (int)(end - c->buf), c->buf);
            mode->failed(c, why);
            return;
        }
        size_t head = (size_t)(end + 4 - c->buf), rest = c->buf_len - head;
        unsigned char *tail = malloc(rest + 1);
        memcpy(tail, end + 4, rest);
        c->buf_len = 0;
        mode->upgraded(c);
        received(c, tail, rest);
        free(tail);
        return;
    }
    received(c, scratch, (size_t)got);
}

/* One epoll event of c's socket. */
void handle_event(struct conn *c, uint32_t events, unsigned char *scratch) {
    if (c->state == GONE) return;
    if (c->state == CONNECTING) { connected(c); return; }
    if (events & EPOLLOUT) flush(c);
    if (c->state != GONE && events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(c, scratch);
}

void pump(int timeout_ms, unsigned char *scratch) {
    struct epoll_event events[512];
    int k = epoll_wait(ep, events, 512, timeout_ms);
    for (int i = 0; i < k; i++) handle_event(events[i].data.ptr, events[i].events, scratch);
}
