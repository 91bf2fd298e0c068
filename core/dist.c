/* MPI behind core/dist.h. Collectives are started non-blocking and waited for with short
 * sleeps, so a rank that waits for a slower one (rank 0 scoring validation images, say) gives
 * its core back instead of spinning on it.
 *
 * Gradient sums must not depend on how MPI groups its additions (which changes with the number
 * of processes and the message size), so they are not MPI_Allreduce: each rank owns a slice of
 * the buffer, receives every rank's copy of it (MPI_Ialltoallv), adds them in a fixed tree over
 * the ranks, and the sums travel back (MPI_Iallgatherv). That moves the bytes a ring all-reduce
 * moves. The two phases run on communicators of their own, so every rank starts the phases in
 * the same order whatever order they complete in. */
#include "dist.h"

#include <limits.h>
#include <mpi.h>
#include <omp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"
#include "util.h"

static bool active;
static int rank_, size_ = 1;
static double wait_seconds, bytes_moved;
static MPI_Comm slices_comm, sums_comm;

/* A gradient sum in flight. */
typedef struct {
    float *buf;
    /* One allocation of 4 * size ints: each rank's slice of buf (floats, offset), then the
     * layout of recv (each rank's copy of this rank's slice: floats, offset). */
    int *counts, *displs;
    float *recv; /* phase 1: every rank's copy of this rank's slice */
    int phase;   /* 1: slices to their owners, 2: sums back to all, 3: done */
    MPI_Request req;
} ordered_sum;

/* Started sums not yet known to be complete, in the order they were started. */
static ordered_sum *pending;
static int n_pending;
static size_t cap_pending;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Polls a request: spins briefly (a collective among ready ranks ends in microseconds), then
 * sleeps between tests. */
static void poll_until_done(MPI_Request *req) {
    int done = 0;
    for (long i = 0; !done; i++) {
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (!done && i > 200) {
            struct timespec ts = {0, i > 20000 ? 1000000 : 50000};
            nanosleep(&ts, NULL);
        }
    }
}

static void wait_for(MPI_Request *req) {
    double t0 = now();
    poll_until_done(req);
    wait_seconds += now() - t0;
}

/* The cores this rank may use: its affinity mask, divided among the ranks on the node when the
 * mask is the whole machine (mpirun did not bind). */
static void choose_threads(void) {
    if (getenv("OMP_NUM_THREADS")) return; /* the user's choice stands */
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return;
    int mine = CPU_COUNT(&set);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int on_node = local ? atoi(local) : 1;
    if (on_node > 1 && mine >= online) mine = (int)(online / on_node);
    if (mine < 1) mine = 1;
    mr_runtime_set_threads(mine);
}

mr_status mr_dist_init(int *argc, char ***argv) {
    const char *world = getenv("OMPI_COMM_WORLD_SIZE");
    if (active || !world) return MR_OK;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return mr_fail(MR_ERR_IO, "MPI_Init failed (launched by mpirun with %s processes)", world);
    active = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm_dup(MPI_COMM_WORLD, &slices_comm);
    MPI_Comm_dup(MPI_COMM_WORLD, &sums_comm);
    choose_threads();
    return MR_OK;
}

void mr_dist_finalize(void) {
    if (!active) return;
    mr_dist_wait();
    free(pending);
    pending = NULL;
    cap_pending = 0;
    MPI_Comm_free(&slices_comm);
    MPI_Comm_free(&sums_comm);
    MPI_Finalize();
    active = false;
}

void mr_dist_abort(int code) {
    if (active) MPI_Abort(MPI_COMM_WORLD, code);
}

int mr_dist_rank(void) {
    return rank_;
}

int mr_dist_size(void) {
    return size_;
}

int mr_dist_stop_grace_seconds(void) {
    if (!active) return 0;
    const char *set = getenv("OMPI_MCA_odls_base_sigkill_timeout"); /* mpirun --mca passes it on */
    int seconds = set ? atoi(set) : 0;
    return seconds > 0 ? seconds : 1;
}

/* MPI counts are ints: long buffers go in pieces. */
#define PIECE ((size_t)1 << 28)

static void sum(void *buf, size_t n, MPI_Datatype type, size_t elem) {
    if (!active || size_ == 1) return;
    for (size_t off = 0; off < n; off += PIECE) {
        size_t len = n - off < PIECE ? n - off : PIECE;
        MPI_Request req;
        MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)len, type, MPI_SUM,
                       MPI_COMM_WORLD, &req);
        wait_for(&req);
        bytes_moved += (double)(len * elem);
    }
}

/* Partial sums are kept in the parts' own slices (for a gradient sum, the receive buffer, which is
 * this rank's to overwrite), whole slices at a time. */
void mr_tree_sum_f32(float *out, float *parts, int n_parts, size_t len) {
    int slot[64], held[64], depth = 0; /* the slice holding each partial sum, and its part count */
    for (int r = 0; r < n_parts; r++) {
        int s = r, count = 1;
        while (depth > 0 && held[depth - 1] == count) {
            float *left = parts + (size_t)slot[depth - 1] * len;
            const float *right = parts + (size_t)s * len;
            for (size_t k = 0; k < len; k++) left[k] = left[k] + right[k];
            s = slot[--depth];
            count *= 2;
        }
        slot[depth] = s;
        held[depth++] = count;
    }
    memcpy(out, parts + (size_t)slot[depth - 1] * len, sizeof(float) * len);
    for (int d = depth - 2; d >= 0; d--) {
        const float *left = parts + (size_t)slot[d] * len;
        for (size_t k = 0; k < len; k++) out[k] = left[k] + out[k];
    }
}

static void start_slices(ordered_sum *o, size_t n) {
    int mine = o->counts[rank_];
    int *rcounts = o->displs + size_, *rdispls = rcounts + size_;
    for (int r = 0; r < size_; r++) {
        rcounts[r] = mine;
        rdispls[r] = r * mine;
    }
    o->recv = malloc(sizeof(float) * ((size_t)mine * (size_t)size_ + 1));
    if (!o->recv) { /* nowhere to receive: fail every rank rather than sum wrongly */
        fprintf(stderr, "mrcnn: out of memory for a gradient sum of %zu floats\n", n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Ialltoallv(o->buf, o->counts, o->displs, MPI_FLOAT, o->recv, rcounts, rdispls, MPI_FLOAT,
                   slices_comm, &o->req);
    o->phase = 1;
}

/* Phase 1 complete: this rank's slice summed in the tree, then sent to every rank. */
static void start_sums(ordered_sum *o) {
    int mine = o->counts[rank_];
    mr_tree_sum_f32(o->buf + o->displs[rank_], o->recv, size_, (size_t)mine);
    free(o->recv);
    o->recv = NULL;
    MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, o->buf, o->counts, o->displs, MPI_FLOAT,
                    sums_comm, &o->req);
    o->phase = 2;
}

/* Whether the sum's current phase is complete (block: waits until it is). */
static bool phase_done(ordered_sum *o, bool block) {
    if (block) {
        poll_until_done(&o->req);
        return true;
    }
    int done = 0;
    MPI_Test(&o->req, &done, MPI_STATUS_IGNORE);
    return done != 0;
}

/* Advances the pending sums; phase 2 is started in the order the sums were, on every rank. Its
 * whole time counts as time in collectives: MPI moves the data inside the tests, and the tree
 * sums are part of the reduction. */
static void advance(bool block) {
    const double t0 = now();
    bool earlier_in_phase_1 = false;
    for (int i = 0; i < n_pending; i++) {
        ordered_sum *o = &pending[i];
        if (o->phase == 1 && !earlier_in_phase_1 && phase_done(o, block)) start_sums(o);
        if (o->phase == 1) earlier_in_phase_1 = true;
        if (o->phase == 2 && phase_done(o, block)) o->phase = 3;
    }
    wait_seconds += now() - t0;
}

void mr_dist_sum_f32_start(float *buf, size_t n) {
    if (!active || size_ == 1) return;
    const double t0 = now();
    for (size_t off = 0; off < n; off += PIECE) {
        size_t len = n - off < PIECE ? n - off : PIECE;
        if (!mr_grow(&pending, &cap_pending, (size_t)n_pending + 1, sizeof *pending, 64)) {
            fprintf(stderr, "mrcnn: out of memory for the list of gradient sums\n");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        ordered_sum *o = &pending[n_pending++];
        *o = (ordered_sum){.buf = buf + off};
        o->counts = malloc(sizeof(int) * 4 * (size_t)size_);
        if (!o->counts) {
            fprintf(stderr, "mrcnn: out of memory for a gradient sum\n");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        o->displs = o->counts + size_;
        for (int r = 0; r < size_; r++) {
            size_t lo = len * (size_t)r / (size_t)size_, hi = len * (size_t)(r + 1) / (size_t)size_;
            o->counts[r] = (int)(hi - lo);
            o->displs[r] = (int)lo;
        }
        start_slices(o, len);
        bytes_moved += (double)(len * sizeof(float));
    }
    wait_seconds += now() - t0;
}

void mr_dist_progress(void) {
    advance(false);
}

void mr_dist_wait(void) {
    advance(true);
    for (int i = 0; i < n_pending; i++) free(pending[i].counts);
    n_pending = 0;
}

void mr_dist_sum_f32(float *buf, size_t n) {
    mr_dist_sum_f32_start(buf, n);
    mr_dist_wait();
}

void mr_dist_sum_f64(double *buf, size_t n) {
    sum(buf, n, MPI_DOUBLE, sizeof(double));
}

void mr_dist_max_int(int *buf, int n) {
    if (!active || size_ == 1) return;
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_INT, MPI_MAX, MPI_COMM_WORLD, &req);
    wait_for(&req);
}

void mr_dist_bcast(void *buf, size_t bytes) {
    if (!active || size_ == 1) return;
    for (size_t off = 0; off < bytes; off += PIECE) {
        size_t len = bytes - off < PIECE ? bytes - off : PIECE;
        MPI_Request req;
        MPI_Ibcast((char *)buf + off, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
        wait_for(&req);
        bytes_moved += (double)len;
    }
}

double mr_dist_wait_seconds(void) {
    return wait_seconds;
}

double mr_dist_bytes(void) {
    return bytes_moved;
}
