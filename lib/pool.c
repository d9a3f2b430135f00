/* Pool selection by name, and the solo pool that runs tasks inline. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"

cel__pool_t *cel__pool_new(const char *name, int size, char *error)
{
    cel__pool_t *pool = NULL;
    if (name == NULL || strcmp(name, "prefork") == 0)
        pool = cel__pool_prefork_new(size);
    else if (strcmp(name, "threads") == 0)
        pool = cel__pool_threads_new(size);
    else if (strcmp(name, "solo") == 0)
        pool = cel__pool_solo_new();
    else {
        cel__set_error(error,
                       "pool '%s' is not available: use prefork, threads or "
                       "solo",
                       name);
        return NULL;
    }
    if (pool == NULL)
        cel__set_error(error, "cannot create the %s pool: out of memory",
                       name ? name : "prefork");
    return pool;
}

/* ---- solo --------------------------------------------------------------- */

static int solo_start(cel__pool_t *pool)
{
    (void)pool;
    return CEL_OK;
}

/* Runs the task at once; the worker reads no frames meanwhile. */
static int solo_submit(cel__pool_t *pool, cel__request_t *request, double soft,
                       double hard)
{
    (void)hard;
    cel__run_t run;
    pool->busy++;
    request->worker_pid = (int)getpid();
    cel__run_task(request, pool->hostname, soft, &run);
    pool->busy--;
    pool->done(pool->owner, request, &run);
    return CEL_OK;
}

static int solo_poll_fds(cel__pool_t *pool, struct pollfd *fds, int max)
{
    (void)pool;
    (void)fds;
    (void)max;
    return 0;
}

static void solo_process(cel__pool_t *pool, const struct pollfd *fds, int count)
{
    (void)pool;
    (void)fds;
    (void)count;
}

static double solo_next_deadline(const cel__pool_t *pool)
{
    (void)pool;
    return 0;
}

static bool solo_is_running(const cel__pool_t *pool, const char *task_id)
{
    /* No frames are read while a solo task runs. */
    (void)pool;
    (void)task_id;
    return false;
}

static int solo_list_running(const cel__pool_t *pool,
                             const cel__request_t **out, int max)
{
    /* Control commands are only read between solo tasks. */
    (void)pool;
    (void)out;
    (void)max;
    return 0;
}

static bool solo_terminate(cel__pool_t *pool, const char *task_id, int signum)
{
    (void)pool;
    (void)task_id;
    (void)signum;
    return false;
}

static int solo_list_pids(const cel__pool_t *pool, int *out, int max)
{
    (void)pool;
    if (max < 1)
        return 0;
    out[0] = (int)getpid();
    return 1;
}

static void solo_stop(cel__pool_t *pool)
{
    (void)pool;
}

static void solo_free(cel__pool_t *pool)
{
    free(pool);
}

static const cel__pool_ops_t SOLO_OPS = {
    .start = solo_start,
    .submit = solo_submit,
    .poll_fds = solo_poll_fds,
    .process = solo_process,
    .next_deadline = solo_next_deadline,
    .is_running = solo_is_running,
    .list_running = solo_list_running,
    .terminate = solo_terminate,
    .list_pids = solo_list_pids,
    .stop = solo_stop,
    .free = solo_free,
};

cel__pool_t *cel__pool_solo_new(void)
{
    cel__pool_t *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return NULL;
    pool->ops = &SOLO_OPS;
    pool->name = "solo";
    pool->size = 1;
    pool->runs_inline = true;
    return pool;
}
