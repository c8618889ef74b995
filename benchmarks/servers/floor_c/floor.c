/* floor.c: the C floor of hubbub's benchmark suite.
 *
 * The least a WebSocket broadcast server can do on Linux: one thread, epoll
 * (level-triggered), non-blocking sockets, RFC 6455 framing and nothing else.
 * A connection that sends a text message becomes a publisher (it stops
 * receiving). Every text message received during one epoll_wait iteration is
 * joined with '\n' into ONE pre-built frame after the iteration, and that same
 * buffer is written to every subscriber: one send() per connection per
 * iteration (coalescing), as benchmarks/servers/floor.py and hubbub's delivery
 * rules do. Bytes a socket does not take are kept for that connection and
 * written when it becomes writable (in order, before anything newer); a
 * connection with more than MAX_PENDING bytes waiting is dropped as slow.
 * Pings are answered, close frames echoed.
 *
 * It is a yardstick, not a server: no limits beyond those, 127.0.0.1 only.
 *
 * Build: make -C benchmarks/servers/floor_c   (benchmarks/suite.py runs it)
 * Usage: floor_c --port 9000
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)           /* one read per readable event, as uvloop */
#define MAX_PENDING (16 * 1024 * 1024)   /* hubbub's bench config: queue_max_size */
#define MAX_HEAD 16384                   /* a longer handshake is refused */
#define HEADROOM 10                      /* room for the frame header before the payload */

/* ---- SHA-1 (FIPS 180-4), for Sec-WebSocket-Accept only ---------------------- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *m = calloc(total, 1);
    if (m == NULL) abort();
    memcpy(m, msg, len);
    m[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) m[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t block = 0; block < total; block += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++) {
            const unsigned char *p = m + block + 4 * i;
            w[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        }
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d; d = c; c = rol(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

static void base64(const unsigned char *in, size_t len, char *out) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = i + 1 < len ? abc[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? abc[v & 63] : '=';
    }
    out[o] = 0;
}

/* ---- connections ---------------------------------------------------------------- */

struct conn {
    int fd;                  /* -1 once closed (freed at the end of the iteration) */
    int sub;                 /* index in subs[], -1: not a subscriber */
    int open;                /* the handshake is done */
    int want_out;            /* EPOLLOUT is registered */
    unsigned char *in;       /* bytes of an incomplete head or frame */
    size_t in_len;
    unsigned char *out;      /* bytes the socket did not take yet */
    size_t out_off, out_len, out_cap;
    struct conn *next_dead;
};

static int ep;
static struct conn **subs;
static size_t subs_len, subs_cap;
static unsigned char *pending;   /* this iteration's messages, HEADROOM bytes in */
static size_t pending_len, pending_cap;
static struct conn *dead;

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n);
    if (p == NULL && n) { perror("realloc"); exit(1); }
    return p;
}

static void sub_add(struct conn *c) {
    if (subs_len == subs_cap) {
        subs_cap = subs_cap ? subs_cap * 2 : 1024;
        subs = xrealloc(subs, subs_cap * sizeof *subs);
    }
    c->sub = (int)subs_len;
    subs[subs_len++] = c;
}

static void sub_remove(struct conn *c) {
    if (c->sub < 0) return;
    struct conn *last = subs[--subs_len];
    subs[c->sub] = last;
    last->sub = c->sub;
    c->sub = -1;
}

static void conn_close(struct conn *c) {
    if (c->fd < 0) return;
    sub_remove(c);
    close(c->fd);  /* also leaves the epoll set */
    c->fd = -1;
    c->next_dead = dead;
    dead = c;
}

static void set_out(struct conn *c, int want) {
    if (c->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

/* Queue bytes behind what is already waiting (order is kept). */
static void keep(struct conn *c, const unsigned char *data, size_t len) {
    size_t waiting = c->out_len - c->out_off;
    if (waiting + len > MAX_PENDING) { conn_close(c); return; }  /* slow */
    if (c->out_off && c->out_len + len > c->out_cap) {
        memmove(c->out, c->out + c->out_off, waiting);
        c->out_off = 0;
        c->out_len = waiting;
    }
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        c->out = xrealloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    set_out(c, 1);
}

/* One write of `data`, or queue it if older bytes wait. */
static void conn_write(struct conn *c, const unsigned char *data, size_t len) {
    if (c->fd < 0) return;
    if (c->out_len > c->out_off) { keep(c, data, len); return; }
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) { conn_close(c); return; }
        n = 0;
    }
    if ((size_t)n < len) keep(c, data + n, len - (size_t)n);
}

static void flush_out(struct conn *c) {
    while (c->out_len > c->out_off) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            conn_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > 65536) { free(c->out); c->out = NULL; c->out_cap = 0; }
    set_out(c, 0);
}

static size_t header(unsigned char *h, int opcode, size_t len) {
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) { h[1] = (unsigned char)len; return 2; }
    if (len < 65536) { h[1] = 126; h[2] = (unsigned char)(len >> 8); h[3] = (unsigned char)len; return 4; }
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 10;
}

static void control(struct conn *c, int opcode, const unsigned char *payload, size_t len) {
    unsigned char f[2 + 125];
    if (len > 125) len = 125;
    size_t h = header(f, opcode, len);
    memcpy(f + h, payload, len);
    conn_write(c, f, h + len);
}

static void publish(const unsigned char *payload, size_t len) {
    size_t need = HEADROOM + pending_len + 1 + len;
    if (need > pending_cap) {
        pending_cap = need * 2;
        pending = xrealloc(pending, pending_cap);
    }
    if (pending_len) pending[HEADROOM + pending_len++] = '\n';
    memcpy(pending + HEADROOM + pending_len, payload, len);
    pending_len += len;
}

/* The end of an iteration: one frame for everything published, the same bytes to all. */
static void broadcast(void) {
    if (!pending_len) return;
    unsigned char h[HEADROOM];
    size_t hl = header(h, 1, pending_len);
    unsigned char *frame = pending + HEADROOM - hl;
    memcpy(frame, h, hl);
    size_t len = hl + pending_len;
    pending_len = 0;
    for (size_t i = subs_len; i-- > 0;)  /* backwards: a slow drop swaps in a done one */
        conn_write(subs[i], frame, len);
}

static int handshake(struct conn *c, unsigned char *buf, size_t len) {
    unsigned char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) return len > MAX_HEAD ? -1 : 0;
    *end = 0;
    const char *key = NULL;
    size_t key_len = 0;
    for (char *line = strstr((char *)buf, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, "sec-websocket-key:", 18) == 0) {
            key = line + 18;
            while (*key == ' ') key++;
            key_len = strcspn(key, "\r\n ");
        }
    }
    if (key == NULL || key_len > 64) return -1;
    unsigned char joined[128], digest[20];
    memcpy(joined, key, key_len);
    memcpy(joined + key_len, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    sha1(joined, key_len + 36, digest);
    char accept[32], response[160];
    base64(digest, 20, accept);
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    conn_write(c, (unsigned char *)response, (size_t)n);
    c->open = 1;
    sub_add(c);
    return (int)(end + 4 - buf);
}

/* Frames in buf[0:len] (ours to modify); returns the bytes consumed. */
static size_t frames(struct conn *c, unsigned char *buf, size_t len) {
    size_t pos = 0;
    while (c->fd >= 0 && len - pos >= 2) {
        unsigned char *p = buf + pos;
        int opcode = p[0] & 0x0F, masked = p[1] & 0x80;
        uint64_t n = p[1] & 0x7F;
        size_t h = 2;
        if (n == 126) {
            if (len - pos < 4) break;
            n = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (n == 127) {
            if (len - pos < 10) break;
            n = 0;
            for (int i = 0; i < 8; i++) n = n << 8 | p[2 + i];
            h = 10;
        }
        if (n > MAX_PENDING) { conn_close(c); break; }
        unsigned char *mask = p + h;
        if (masked) h += 4;
        if (len - pos < h + n) break;
        unsigned char *payload = p + h;
        if (masked)
            for (uint64_t i = 0; i < n; i++) payload[i] ^= mask[i & 3];
        pos += h + (size_t)n;
        if (opcode == 1 || opcode == 0) {
            sub_remove(c);  /* publishers do not receive */
            publish(payload, (size_t)n);
        } else if (opcode == 8) {
            control(c, 8, payload, n < 2 ? (size_t)n : 2);
            conn_close(c);
        } else if (opcode == 9) {
            control(c, 10, payload, (size_t)n);
        }
    }
    return pos;
}

static void on_readable(struct conn *c, unsigned char *scratch) {
    ssize_t got = read(c->fd, scratch, READ_SIZE);
    if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
        conn_close(c);
        return;
    }
    unsigned char *buf = scratch;
    size_t len = (size_t)got;
    if (c->in_len) {  /* an incomplete head or frame waits: append to it */
        c->in = xrealloc(c->in, c->in_len + len);
        memcpy(c->in + c->in_len, scratch, len);
        buf = c->in;
        len += c->in_len;
    }
    size_t used = 0;
    if (!c->open) {
        int head = handshake(c, buf, len);
        if (head < 0) { conn_close(c); }
        if (head <= 0) {
            if (c->fd >= 0 && buf == scratch) {
                c->in = xrealloc(c->in, len);
                memcpy(c->in, buf, len);
                c->in_len = len;
            }
            else if (c->fd >= 0) c->in_len = len;
            return;
        }
        used = (size_t)head;
    }
    used += frames(c, buf + used, len - used);
    size_t rest = len - used;
    if (c->fd < 0) return;
    if (rest == 0) { free(c->in); c->in = NULL; c->in_len = 0; return; }
    if (buf == c->in) {
        memmove(c->in, c->in + used, rest);
    } else {
        c->in = xrealloc(c->in, rest);
        memcpy(c->in, buf + used, rest);
    }
    c->in_len = rest;
}

static void on_accept(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;  /* EAGAIN, or out of fds: try again next iteration */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) { close(fd); return; }
        c->fd = fd;
        c->sub = -1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) { close(fd); free(c); }
    }
}

int main(int argc, char **argv) {
    int port = 9000;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        perror("listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};  /* NULL: the listener */
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static struct epoll_event events[1024];
    unsigned char *scratch = malloc(READ_SIZE);
    for (;;) {
        int n = epoll_wait(ep, events, 1024, -1);
        if (n < 0 && errno != EINTR) { perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) { on_accept(lfd); continue; }
            if (c->fd >= 0 && (events[i].events & EPOLLOUT)) flush_out(c);
            if (c->fd >= 0 && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                on_readable(c, scratch);
        }
        broadcast();
        while (dead) {
            struct conn *d = dead;
            dead = d->next_dead;
            free(d->in);
            free(d->out);
            free(d);
        }
    }
}
