/* MPI behind core/dist.h. Collectives are started non-blocking and waited for with short
 * sleeps, so a rank that waits for a slower one (rank 0 scoring validation images, say) gives
 * its core back instead of spinning on it. */
#include "dist.h"

#include <limits.h>
#include <mpi.h>
#include <omp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"

static bool active;
static int rank_, size_ = 1;
static double wait_seconds, bytes_moved;
/* Started sums not yet known to be complete. */
static MPI_Request *pending;
static int n_pending, cap_pending;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Polls a request: spins briefly (a collective among ready ranks ends in microseconds), then
 * sleeps between tests. */
static void wait_for(MPI_Request *req) {
    double t0 = now();
    int done = 0;
    for (long i = 0; !done; i++) {
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (!done && i > 200) {
            struct timespec ts = {0, i > 20000 ? 1000000 : 50000};
            nanosleep(&ts, NULL);
        }
    }
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
    choose_threads();
    return MR_OK;
}

void mr_dist_finalize(void) {
    if (!active) return;
    mr_dist_wait();
    free(pending);
    pending = NULL;
    cap_pending = 0;
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

void mr_dist_sum_f32_start(float *buf, size_t n) {
    if (!active || size_ == 1) return;
    for (size_t off = 0; off < n; off += PIECE) {
        size_t len = n - off < PIECE ? n - off : PIECE;
        if (n_pending == cap_pending) {
            int cap = cap_pending ? 2 * cap_pending : 64;
            MPI_Request *grown = realloc(pending, sizeof *grown * (size_t)cap);
            if (!grown) { /* no memory for the list: finish what is started, then block */
                mr_dist_wait();
                sum(buf + off, len, MPI_FLOAT, sizeof(float));
                continue;
            }
            pending = grown;
            cap_pending = cap;
        }
        MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                       &pending[n_pending++]);
        bytes_moved += (double)(len * sizeof(float));
    }
}

void mr_dist_progress(void) {
    for (int i = 0; i < n_pending; i++) {
        int done = 0;
        MPI_Test(&pending[i], &done, MPI_STATUS_IGNORE);
        if (!done) break; /* they complete in order */
    }
}

void mr_dist_wait(void) {
    for (int i = 0; i < n_pending; i++) wait_for(&pending[i]);
    n_pending = 0;
}

void mr_dist_sum_f32(float *buf, size_t n) {
    sum(buf, n, MPI_FLOAT, sizeof(float));
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
