/* loadgen.c: a load generator in C, for measuring servers faster than Python can drive.
 *
 * `hubbub bench` (src/hubbub/tools/) is the project's load generator; one Python
 * process saturates its core before the fastest servers do (the C floor, hubbub),
 * and a comparison is valid only when the generator is not the bottleneck. This
 * program runs two of the bench's workloads with far less CPU per client, so that
 * the SERVER is the bottleneck:
 *
 *   --mode fanout (the default; fanout.c): N subscribers on one channel, one
 *   publisher keeping WINDOW publications in flight, written BATCH per write; each
 *   publication carries `@<send time us>,<publisher>,<seq>,` then padding, as the
 *   Python bench's. In flight = sent - max(what the probe subscriber received,
 *   replies) as in the Python bench: the probe is the first subscriber.
 *
 *   --mode storm (storm.c): the reconnect storm after a server restart, as
 *   `hubbub bench connect --storm restart`: N clients connect (and subscribe),
 *   the harness restarts the server, every client comes back, with the Python
 *   bench's retry schedule; stdin/stdout carry the handshake with the harness
 *   (benchmarks/storm.py).
 *
 * Dialects: `centrifugo` (JSON protocol v2: connect + subscribe in one frame,
 * publish commands joined with '\n' in one frame per batch, replies counted,
 * `{}` pings answered) and `text` (the suite's plain servers: every text frame
 * is a message; fan-out: the publisher's "hello"s until every subscriber heard one).
 * Fan-out: every subscriber counts '@' bytes of its text frames (memchr); every
 * 10th also parses each stamp (latency histogram, per-publisher sequence check).
 * One thread, epoll, non-blocking sockets (wsclient.c); everything bounded in time.
 *
 * Output: one JSON object on stdout. Fan-out: deliveries/s, the server's CPU from
 * /proc/PID/stat over the measured window, this process's CPU, the share of the
 * window each of them waited runnable for a CPU (/proc/.../schedstat: other
 * processes' load on a shared machine), latency percentiles, loss after a drain
 * of at most 5 s. Storm: see storm.c.
 *
 * Build: make -C benchmarks/loadgen_c     (benchmarks/suite.py and storm.py run it)
 * Usage: loadgen --port P [--path /connection/websocket] [--dialect centrifugo|text]
 *                [-n 1000] [--window 200] [--batch 20] [--seconds 5] [--payload 100]
 *                [--server-pid PID]        (127.0.0.1 only)
 *        loadgen --mode storm --port P [--path ...] [--dialect ...] [-n 5000]
 *                [--channel bench] [--channels 1] [--namespace NS] [--token JWT]
 *                [--storm-timeout 60]
 */
#define _GNU_SOURCE
#include "wsclient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

struct options opt = {
    .mode = "fanout", .path = "/", .dialect = "text", .channel = "bench", .namespace = "",
    .token = "", .n = 1000, .window = 200, .batch = 20, .payload = 100, .channels = 1,
    .seconds = 5.0, .storm_timeout = 60.0,
};

int main(int argc, char **argv) {
    int n_given = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) opt.port = atoi(v);
        else if (!strcmp(k, "--mode")) opt.mode = v;
        else if (!strcmp(k, "--path")) opt.path = v;
        else if (!strcmp(k, "--dialect")) opt.dialect = v;
        else if (!strcmp(k, "-n")) { opt.n = atoi(v); n_given = 1; }
        else if (!strcmp(k, "--window")) opt.window = atoi(v);
        else if (!strcmp(k, "--batch")) opt.batch = atoi(v);
        else if (!strcmp(k, "--seconds")) opt.seconds = atof(v);
        else if (!strcmp(k, "--payload")) opt.payload = atoi(v);
        else if (!strcmp(k, "--server-pid")) opt.server_pid = atoi(v);
        else if (!strcmp(k, "--channel")) opt.channel = v;
        else if (!strcmp(k, "--channels")) opt.channels = atoi(v);
        else if (!strcmp(k, "--namespace")) opt.namespace = v;
        else if (!strcmp(k, "--token")) opt.token = v;
        else if (!strcmp(k, "--storm-timeout")) opt.storm_timeout = atof(v);
        else { fprintf(stderr, "unknown option %s\n", k); return 2; }
    }
    if ((argc - 1) % 2) { fprintf(stderr, "option %s needs a value\n", argv[argc - 1]); return 2; }
    opt.centrifugo = !strcmp(opt.dialect, "centrifugo");
    int storm = !strcmp(opt.mode, "storm");
    if (storm && !n_given) opt.n = 5000;
    if (opt.port <= 0 || opt.n < 1 || opt.batch < 1 || opt.window < 1 || opt.channels < 1 ||
        opt.storm_timeout <= 0 || (!storm && strcmp(opt.mode, "fanout")) ||
        (!opt.centrifugo && strcmp(opt.dialect, "text"))) {
        fprintf(stderr, "usage: loadgen [--mode fanout|storm] --port P [-n N] [--dialect "
                        "centrifugo|text] ... (see loadgen.c)\n");
        return 2;
    }
    raise_nofile();
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    return storm ? storm_main() : fanout_main();
}
