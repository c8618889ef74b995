/* wsclient.h: the client connections both modes of the load generator share.
 *
 * Rule: this layer moves bytes and frames and records how a connection ended; it
 * never closes a socket, reconnects or decides that a run failed. A mode (fanout.c,
 * storm.c) supplies the hooks below and acts on `state == GONE` itself.
 */
#ifndef LOADGEN_WSCLIENT_H
#define LOADGEN_WSCLIENT_H

#include <stddef.h>
#include <stdint.h>

#define READ_SIZE (256 * 1024)
#define CONCURRENCY 200   /* handshakes in progress at once (the Python bench's default) */

/* QUEUED and SLEEPING: storm clients without a socket, waiting for a slot or a delay. */
enum { CONNECTING, HANDSHAKE, SUBSCRIBING, READY, GONE, QUEUED, SLEEPING };

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
    int gone_from, err;     /* the state it was in when it went GONE; errno (0: EOF, close) */
    /* storm mode (storm.c) */
    int index, up, back, noted, timed_state;
    int has_position, recovered;
    long long offset, deadline_us, wake_us, back_us;
    double delay;
    char epoch[64];
};

/* What a mode does at the events this layer cannot decide. */
struct mode {
    int whole_frames;  /* keep every frame's payload whole (else big text frames are only counted) */
    void (*upgraded)(struct conn *c);                                 /* the 101 arrived */
    void (*text)(struct conn *c, const unsigned char *p, size_t n);  /* a whole text frame */
    void (*failed)(struct conn *c, const char *why);                /* connect or handshake failed */
};

struct options {
    const char *mode, *path, *dialect, *channel, *namespace, *token;
    int port, n, window, batch, payload, server_pid, centrifugo, channels;
    double seconds, storm_timeout;
};

extern struct options opt;
extern const struct mode *mode;
extern int ep;

long long now_us(void);
double cpu_self(void);
double cpu_of(int pid);
double runqueue_of(int pid);
void die(const char *what);
long long count_marks(const unsigned char *p, size_t n);
long long parse_decimal(const unsigned char **at, const unsigned char *end);
void put(unsigned char **buf, size_t *len, size_t *cap, const void *data, size_t n);
void send_bytes(struct conn *c, const void *data, size_t n);
void frame_into(unsigned char **buf, size_t *len, size_t *cap, int opcode, const void *payload,
                size_t n);
void send_frame(struct conn *c, const char *payload, size_t n);
void start_connect(struct conn *c);
void handle_event(struct conn *c, uint32_t events, unsigned char *scratch);
void pump(int timeout_ms, unsigned char *scratch);
void raise_nofile(void);

int fanout_main(void);
int storm_main(void);

#endif
