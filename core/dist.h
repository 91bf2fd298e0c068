/* Data-parallel training over MPI processes: who this process is (rank of size), and the few
 * collectives the trainer needs. Only this file and core/dist.c know MPI exists. A process not
 * started by mpirun never touches MPI: it is rank 0 of 1 and every call is a no-op. */
#ifndef MR_DIST_H
#define MR_DIST_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Starts MPI when the process was launched by mpirun (OpenMPI sets OMPI_COMM_WORLD_SIZE), and
 * gives each rank the cores available to it: without OMP_NUM_THREADS, the CPUs of its affinity
 * mask, shared by the ranks on its node when mpirun did not bind them. A plain run: nothing. */
mr_status mr_dist_init(int *argc, char ***argv);
/* Ends MPI after a run that kept the protocol (every rank calls it). */
void mr_dist_finalize(void);
/* Ends every rank at once (MPI_Abort): for a rank that cannot keep step with the others. Returns
 * only without MPI (one process), where the caller goes on with its error. */
void mr_dist_abort(int code);

int mr_dist_rank(void);
int mr_dist_size(void); /* 1 without mpirun */
/* Seconds Open MPI's mpirun waits between passing on Ctrl-C or SIGTERM (as SIGTERM) and killing
 * the processes (its odls_base_sigkill_timeout, 1 unless set): the time a stopped run has to
 * finish its step and save. 0 without mpirun, where nothing kills the process. */
int mr_dist_stop_grace_seconds(void);

/* out[k] = the sum over parts r of parts[r * len + k] (n_parts >= 1), added in the one tree
 * every sum over images or ranks follows (as train/trainer.c adds images): partial sums of
 * 1, 2, 4, ... consecutive parts merged as a binary counter carries, the remaining partials added
 * from the smallest up. When each process's share is a power of two, the tree over processes of
 * their shares' trees is the tree over all parts, so N processes get one process's bits. parts is
 * overwritten. */
void mr_tree_sum_f32(float *out, float *parts, int n_parts, size_t len);

/* In place, element-wise sums over all ranks (every rank calls with the same n). Float sums add
 * the ranks in one fixed tree (core/dist.c), so their bits do not depend on MPI's algorithm;
 * double sums (counts) are MPI's all-reduce. */
void mr_dist_sum_f32(float *buf, size_t n);
void mr_dist_sum_f64(double *buf, size_t n);
/* Non-blocking float sums: start() begins an in-place sum of buf (every rank starts the same sums
 * in the same order), progress() lets started sums advance (call it between pieces of work),
 * wait() returns when all started sums are complete. */
void mr_dist_sum_f32_start(float *buf, size_t n);
void mr_dist_progress(void);
void mr_dist_wait(void);
/* In place, element-wise maximum over all ranks. */
void mr_dist_max_int(int *buf, int n);
/* Rank 0's bytes to every rank. */
void mr_dist_bcast(void *buf, size_t bytes);
/* Seconds spent inside the collectives above since the process started, and bytes handed to
 * them: what `make bench-mpi` reports as waiting and traffic. */
double mr_dist_wait_seconds(void);
double mr_dist_bytes(void);

#endif
