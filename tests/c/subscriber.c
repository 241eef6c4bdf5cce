/* A mask-stream subscriber in C (libzmq only): proves wire protocol v1 is decodable
 * without Python. Build: gcc -O2 -o subscriber subscriber.c $(pkg-config --cflags --libs libzmq)
 *
 * Usage: subscriber ENDPOINT COUNT TIMEOUT_MS
 * Subscribes to "mask." and "hb.", prints "ready" at the first message of any kind, then one
 * line per mask message until COUNT masks arrived:
 *   mask seq=S enc=E h=H w=W ones=N idxsum=X [png_w=W png_h=H]
 * ones:   foreground pixels (u8: bytes >= 128); png: -1 (not inflated, no zlib here)
 * idxsum: sum over foreground pixels of their row-major index (u8: sum of index * value).
 * Exit status: 0 done, 2 usage, 3 timeout, 4 protocol error.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static int fail(const char *what) {
    printf("error %s\n", what);
    fflush(stdout);
    return 4;
}

/* Position just after `"key"` and the following ':' in a NUL-terminated JSON text, or NULL. */
static const char *json_value(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *p = strstr(json, pattern);
    if (!p) return NULL;
    p += strlen(pattern);
    while (isspace((unsigned char)*p)) p++;
    if (*p != ':') return NULL;
    p++;
    while (isspace((unsigned char)*p)) p++;
    return p;
}

static uint32_t be32(const unsigned char *b) {
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

/* Receive all frames of one message into frames[] (malloc'd copies); returns the count or -1. */
static int recv_frames(void *sock, unsigned char **frames, size_t *sizes, int max) {
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, 0) < 0) return -1;
        if (n < max) {
            sizes[n] = zmq_msg_size(&msg);
            frames[n] = malloc(sizes[n] + 1);
            memcpy(frames[n], zmq_msg_data(&msg), sizes[n]);
            frames[n][sizes[n]] = 0; /* headers become C strings */
        }
        n++;
        more = zmq_msg_more(&msg);
        zmq_msg_close(&msg);
    }
    return n;
}

static int handle_mask(const unsigned char *header, const unsigned char *payload, size_t len) {
    const char *json = (const char *)header;
    const char *p;
    char enc[16] = {0};
    long seq, h, w;
    if (!(p = json_value(json, "encoding")) || *p != '"') return fail("no encoding");
    sscanf(p + 1, "%15[^\"]", enc);
    if (!(p = json_value(json, "shape")) || sscanf(p, "[ %ld , %ld ]", &h, &w) != 2) return fail("no shape");
    if (!(p = json_value(json, "seq")) || sscanf(p, "%ld", &seq) != 1) return fail("no seq");
    long n = h * w, ones = 0;
    unsigned long long idxsum = 0;
    char extra[64] = "";
    if (strcmp(enc, "u8") == 0) {
        if ((long)len != n) return fail("u8 size");
        for (long i = 0; i < n; i++) {
            ones += payload[i] >= 128;
            idxsum += (unsigned long long)i * payload[i];
        }
    } else if (strcmp(enc, "bits") == 0) {
        if ((long)len != (n + 7) / 8) return fail("bits size");
        for (long i = 0; i < n; i++)
            if (payload[i / 8] & (0x80 >> (i % 8))) { /* big bit order: pixel 0 is the MSB */
                ones++;
                idxsum += (unsigned long long)i;
            }
    } else if (strcmp(enc, "rle") == 0) {
        if (len == 0 || len % 4) return fail("rle size");
        long k = 0; /* column-major pixel index */
        for (size_t c = 0; c < len / 4; c++) {
            const unsigned char *b = payload + 4 * c;
            long run = (long)((uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24));
            if (run < 0 || run > n) return fail("rle count out of range");
            if (c % 2 == 1) /* odd runs are foreground */
                for (long j = k; j < k + run && j < n; j++) {
                    ones++;
                    idxsum += (unsigned long long)((j % h) * w + j / h); /* to row-major */
                }
            k += run;
        }
        if (k != n) return fail("rle counts do not sum to h*w");
    } else if (strcmp(enc, "png") == 0) {
        static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        if (len < 33 || memcmp(payload, sig, 8) != 0) return fail("png signature");
        if (memcmp(payload + 12, "IHDR", 4) != 0) return fail("png IHDR");
        ones = -1;
        snprintf(extra, sizeof extra, " png_w=%u png_h=%u", be32(payload + 16), be32(payload + 20));
    } else {
        return fail("unknown encoding");
    }
    printf("mask seq=%ld enc=%s h=%ld w=%ld ones=%ld idxsum=%llu%s\n", seq, enc, h, w, ones, idxsum, extra);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s ENDPOINT COUNT TIMEOUT_MS\n", argv[0]);
        return 2;
    }
    long want = atol(argv[2]), got = 0;
    int timeout_ms = atoi(argv[3]), ready = 0, rc = 0;
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "mask.", 5);
    zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "hb.", 3);
    if (zmq_connect(sock, argv[1]) != 0) {
        fprintf(stderr, "connect %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 2;
    }
    while (got < want) {
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, timeout_ms) <= 0) {
            printf("timeout after %ld masks\n", got);
            rc = 3;
            break;
        }
        unsigned char *frames[3] = {0};
        size_t sizes[3] = {0};
        int n = recv_frames(sock, frames, sizes, 3);
        if (n != 3) {
            rc = fail("expected 3 frames");
        } else {
            if (!ready) {
                printf("ready\n");
                fflush(stdout);
                ready = 1;
            }
            if (strncmp((const char *)frames[0], "mask.", 5) == 0) {
                rc = handle_mask(frames[1], frames[2], sizes[2]);
                got++;
            }
        }
        for (int i = 0; i < 3; i++) free(frames[i]);
        if (rc) break;
    }
    if (rc == 0) printf("done %ld\n", got);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return rc;
}
