/* A clocked ALSA capture device for tests/test_microphone_overflow.py: an external I/O plugin
 * (ioplug) whose hardware position advances with CLOCK_MONOTONIC at 48 kHz, whose buffer holds at
 * most 100 ms, and which enters XRUN, as a sound card does, once a whole buffer was captured and
 * not read. Its samples are a ramp of RAMP_PER_S full scale per second of device time, so each
 * sample tells when it was captured. Built by the test with gcc against libasound.so.2; the ABI it
 * needs is declared below, so no ALSA headers are needed. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* The ioplug ABI, protocol 1.0.2 (alsa/pcm_ioplug.h; alsa-lib loads plugins of 1.0.0 up to its own). */
typedef unsigned long snd_pcm_uframes_t;
typedef long snd_pcm_sframes_t;
typedef struct _snd_pcm snd_pcm_t;
typedef struct _snd_config snd_config_t;
typedef struct { void *addr; unsigned int first, step; } area_t; /* snd_pcm_channel_area_t */
typedef struct ioplug ioplug_t;
struct callbacks { /* snd_pcm_ioplug_callback_t */
    int (*start)(ioplug_t *);
    int (*stop)(ioplug_t *);
    snd_pcm_sframes_t (*pointer)(ioplug_t *);
    snd_pcm_sframes_t (*transfer)(ioplug_t *, const area_t *, snd_pcm_uframes_t, snd_pcm_uframes_t);
    int (*close)(ioplug_t *);
    void *hw_params, *hw_free, *sw_params, *prepare, *drain, *pause, *resume;
    void *poll_descriptors_count, *poll_descriptors;
    int (*poll_revents)(ioplug_t *, struct pollfd *, unsigned int, unsigned short *);
    void *dump, *delay, *query_chmaps, *get_chmap, *set_chmap;
};
struct ioplug { /* snd_pcm_ioplug_t */
    unsigned int version;
    const char *name;
    unsigned int flags;
    int poll_fd;
    unsigned int poll_events, mmap_rw;
    const struct callbacks *callback;
    void *private_data;
    snd_pcm_t *pcm;
    int stream, state; /* snd_pcm_stream_t, snd_pcm_state_t */
    volatile snd_pcm_uframes_t appl_ptr, hw_ptr;
    int nonblock;
    int access, format; /* snd_pcm_access_t, snd_pcm_format_t */
    unsigned int channels, rate;
    snd_pcm_uframes_t period_size, buffer_size;
};
int snd_pcm_ioplug_create(ioplug_t *io, const char *name, int stream, int mode);
int snd_pcm_ioplug_delete(ioplug_t *io);
int snd_pcm_ioplug_set_param_list(ioplug_t *io, int type, unsigned int n, const unsigned int *list);
int snd_pcm_ioplug_set_param_minmax(ioplug_t *io, int type, unsigned int min, unsigned int max);
enum { HW_ACCESS, HW_FORMAT, HW_CHANNELS, HW_RATE, HW_PERIOD_BYTES, HW_BUFFER_BYTES, HW_PERIODS };
enum { STREAM_CAPTURE = 1, ACCESS_MMAP_INTERLEAVED = 0, ACCESS_RW_INTERLEAVED = 3, FORMAT_S16_LE = 2 };

#define RATE 48000
#ifndef RAMP_PER_S
#error "build with -DRAMP_PER_S=<full scale per second> (tests/test_microphone_overflow.py)"
#endif

typedef struct {
    ioplug_t io;
    int running;
    int64_t t_start, t_first; /* CLOCK_MONOTONIC ns: this run's start, the first run's */
} clocked_t;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Frames captured since this run started: the device's clock. */
static snd_pcm_uframes_t captured(const clocked_t *c) {
    return c->running ? (snd_pcm_uframes_t)((now_ns() - c->t_start) * RATE / 1000000000) : 0;
}

static int start(ioplug_t *io) {
    clocked_t *c = io->private_data;
    int64_t period = (int64_t)io->period_size * 1000000000 / RATE + 1;
    struct itimerspec tick = {{period / 1000000000, period % 1000000000}, {period / 1000000000, period % 1000000000}};
    c->t_start = now_ns();
    if (!c->t_first)
        c->t_first = c->t_start;
    c->running = 1;
    return timerfd_settime(io->poll_fd, 0, &tick, NULL) < 0 ? -errno : 0;
}

static int stop(ioplug_t *io) {
    clocked_t *c = io->private_data;
    struct itimerspec off = {{0, 0}, {0, 0}};
    c->running = 0;
    timerfd_settime(io->poll_fd, 0, &off, NULL);
    return 0;
}

/* The hardware position, or an overrun (XRUN) once a whole buffer was captured and not read. */
static snd_pcm_sframes_t pointer(ioplug_t *io) {
    snd_pcm_uframes_t n = captured(io->private_data);
    if (n - io->appl_ptr >= io->buffer_size)
        return -EPIPE;
    return n % io->buffer_size;
}

/* The samples: a ramp that tells the device time at which each frame was captured. */
static snd_pcm_sframes_t transfer(ioplug_t *io, const area_t *areas, snd_pcm_uframes_t offset,
                                  snd_pcm_uframes_t size) {
    clocked_t *c = io->private_data;
    double t0 = (c->t_start - c->t_first) / 1e9 + (double)io->appl_ptr / RATE;
    for (snd_pcm_uframes_t k = 0; k < size; k++) {
        double v = -0.9 + RAMP_PER_S * (t0 + (double)k / RATE);
        int16_t s = (int16_t)lrint(32767.0 * (v > 0.9 ? 0.9 : v));
        for (unsigned int ch = 0; ch < io->channels; ch++) {
            const area_t *a = &areas[ch];
            *(int16_t *)((char *)a->addr + (a->first + (offset + k) * a->step) / 8) = s;
        }
    }
    return size;
}

/* Readable once a period was captured (or the buffer overran); the timer ticks every period. */
static int poll_revents(ioplug_t *io, struct pollfd *pfd, unsigned int nfds, unsigned short *revents) {
    uint64_t ticks;
    (void)pfd;
    (void)nfds;
    while (read(io->poll_fd, &ticks, sizeof ticks) > 0) {
    }
    *revents = captured(io->private_data) - io->appl_ptr >= io->period_size ? POLLIN : 0;
    return 0;
}

static int close_(ioplug_t *io) {
    close(io->poll_fd);
    free(io->private_data);
    return 0;
}

static const struct callbacks callbacks = {
    .start = start, .stop = stop, .pointer = pointer, .transfer = transfer, .close = close_,
    .poll_revents = poll_revents,
};

int _snd_pcm_clocked_open(snd_pcm_t **pcmp, const char *name, snd_config_t *root, snd_config_t *conf,
                          int stream, int mode) {
    static const unsigned int access[] = {ACCESS_MMAP_INTERLEAVED, ACCESS_RW_INTERLEAVED};
    static const unsigned int format[] = {FORMAT_S16_LE};
    clocked_t *c;
    int err;
    (void)root;
    (void)conf;
    if (stream != STREAM_CAPTURE)
        return -EINVAL;
    if (!(c = calloc(1, sizeof *c)))
        return -ENOMEM;
    c->io.version = 0x010002;
    c->io.name = "clocked capture";
    c->io.callback = &callbacks;
    c->io.private_data = c;
    c->io.poll_events = POLLIN;
    if ((c->io.poll_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) {
        err = -errno;
        free(c);
        return err;
    }
    if ((err = snd_pcm_ioplug_create(&c->io, name, stream, mode)) < 0) {
        close(c->io.poll_fd);
        free(c);
        return err;
    }
    /* 48 kHz s16 stereo (4 bytes a frame), periods of 5-20 ms, a buffer of 10-100 ms. */
    if ((err = snd_pcm_ioplug_set_param_list(&c->io, HW_ACCESS, 2, access)) < 0 ||
        (err = snd_pcm_ioplug_set_param_list(&c->io, HW_FORMAT, 1, format)) < 0 ||
        (err = snd_pcm_ioplug_set_param_minmax(&c->io, HW_CHANNELS, 2, 2)) < 0 ||
        (err = snd_pcm_ioplug_set_param_minmax(&c->io, HW_RATE, RATE, RATE)) < 0 ||
        (err = snd_pcm_ioplug_set_param_minmax(&c->io, HW_PERIOD_BYTES, 4 * 240, 4 * 960)) < 0 ||
        (err = snd_pcm_ioplug_set_param_minmax(&c->io, HW_BUFFER_BYTES, 4 * 480, 4 * 4800)) < 0 ||
        (err = snd_pcm_ioplug_set_param_minmax(&c->io, HW_PERIODS, 2, 8)) < 0) {
        snd_pcm_ioplug_delete(&c->io); /* closes: close_() frees c */
        return err;
    }
    *pcmp = c->io.pcm;
    return 0;
}
char __snd_pcm_clocked_open_dlsym_pcm_001; /* SND_PCM_PLUGIN_SYMBOL(clocked): alsa-lib checks for it */
