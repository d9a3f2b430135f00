/* The threads pool: one POSIX thread per slot, each running one task at a
 * time. Threads never touch the broker. They hand finished runs back
 * through a pipe that the worker's loop polls. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"

typedef struct thread_slot {
    pthread_t thread;
    bool started;
    pthread_cond_t wake;
    cel__request_t *request; /* set while the slot is busy */
    double soft;
    bool has_job;  /* a request waits for the thread to take it */
    bool finished; /* the run is done and waits for collection */
    cel__run_t run;
    struct threads_pool *owner;
} thread_slot_t;

typedef struct threads_pool {
    cel__pool_t base;
    pthread_mutex_t lock;
    bool stopping;
    int wake_pipe[2]; /* threads write a byte per finished run */
    thread_slot_t *slots;
} threads_pool_t;

static void *slot_main(void *arg)
{
    thread_slot_t *slot = arg;
    threads_pool_t *pool = slot->owner;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!slot->has_job && !pool->stopping)
            pthread_cond_wait(&slot->wake, &pool->lock);
        if (!slot->has_job)
            break;
        slot->has_job = false;
        cel__request_t *request = slot->request;
        double soft = slot->soft;
        pthread_mutex_unlock(&pool->lock);

        cel__run_t run;
        cel__run_task(request, pool->base.hostname, soft, &run);

        pthread_mutex_lock(&pool->lock);
        slot->run = run;
        slot->finished = true;
        char byte = 1;
        /* The pipe is non-blocking; a full pipe already wakes the loop. */
        ssize_t written = write(pool->wake_pipe[1], &byte, 1);
        (void)written;
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static int threads_start(cel__pool_t *base)
{
    threads_pool_t *pool = (threads_pool_t *)base;
    if (pipe2(pool->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return CEL_ENOMEM;
    /* Signals go to the main thread only. */
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    int status = CEL_OK;
    for (int i = 0; i < base->size; i++) {
        thread_slot_t *slot = &pool->slots[i];
        slot->owner = pool;
        pthread_cond_init(&slot->wake, NULL);
        if (pthread_create(&slot->thread, NULL, slot_main, slot) != 0) {
            status = CEL_ENOMEM;
            break;
        }
        slot->started = true;
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    return status;
}

static int threads_submit(cel__pool_t *base, cel__request_t *request,
                          double soft, double hard)
{
    (void)hard;
    threads_pool_t *pool = (threads_pool_t *)base;
    pthread_mutex_lock(&pool->lock);
    for (int i = 0; i < base->size; i++) {
        thread_slot_t *slot = &pool->slots[i];
        if (slot->request != NULL || !slot->started)
            continue;
        slot->request = request;
        request->worker_pid = (int)getpid();
        slot->soft = soft;
        slot->has_job = true;
        base->busy++;
        pthread_cond_signal(&slot->wake);
        pthread_mutex_unlock(&pool->lock);
        return CEL_OK;
    }
    pthread_mutex_unlock(&pool->lock);
    return CEL_EINVAL;
}

static int threads_poll_fds(cel__pool_t *base, struct pollfd *fds, int max)
{
    threads_pool_t *pool = (threads_pool_t *)base;
    if (max < 1)
        return 0;
    fds[0].fd = pool->wake_pipe[0];
    fds[0].events = POLLIN;
    fds[0].revents = 0;
    return 1;
}

static void threads_process(cel__pool_t *base, const struct pollfd *fds,
                            int count)
{
    threads_pool_t *pool = (threads_pool_t *)base;
    if (fds != NULL && (count < 1 || fds[0].revents == 0))
        return;
    char drain[64];
    while (read(pool->wake_pipe[0], drain, sizeof drain) > 0)
        ;
    for (int i = 0; i < base->size; i++) {
        thread_slot_t *slot = &pool->slots[i];
        pthread_mutex_lock(&pool->lock);
        if (!slot->finished) {
            pthread_mutex_unlock(&pool->lock);
            continue;
        }
        cel__request_t *request = slot->request;
        cel__run_t run = slot->run;
        slot->finished = false;
        slot->request = NULL;
        base->busy--;
        pthread_mutex_unlock(&pool->lock);
        base->done(base->owner, request, &run);
    }
}

static double threads_next_deadline(const cel__pool_t *base)
{
    (void)base;
    return 0;
}

static bool threads_is_running(const cel__pool_t *base, const char *task_id)
{
    const threads_pool_t *pool = (const threads_pool_t *)base;
    /* slot->request is only written by the main thread, which calls this. */
    for (int i = 0; i < base->size; i++) {
        const cel__request_t *request = pool->slots[i].request;
        if (request != NULL && request->msg.id != NULL &&
            strcmp(request->msg.id, task_id) == 0)
            return true;
    }
    return false;
}

static int threads_list_running(const cel__pool_t *base,
                                const cel__request_t **out, int max)
{
    const threads_pool_t *pool = (const threads_pool_t *)base;
    int count = 0;
    for (int i = 0; i < base->size && count < max; i++)
        if (pool->slots[i].request != NULL)
            out[count++] = pool->slots[i].request;
    return count;
}

/* A thread cannot be stopped from outside without risking the process. */
static bool threads_terminate(cel__pool_t *base, const char *task_id,
                              int signum)
{
    (void)base;
    (void)task_id;
    (void)signum;
    return false;
}

static int threads_list_pids(const cel__pool_t *base, int *out, int max)
{
    (void)base;
    if (max < 1)
        return 0;
    out[0] = (int)getpid();
    return 1;
}

static void threads_stop(cel__pool_t *base)
{
    threads_pool_t *pool = (threads_pool_t *)base;
    bool running[base->size > 0 ? base->size : 1];
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    for (int i = 0; i < base->size; i++) {
        thread_slot_t *slot = &pool->slots[i];
        running[i] = false;
        if (slot->request == NULL)
            continue;
        if (slot->has_job || slot->finished) {
            /* Not taken yet, or done but not collected: nothing runs. */
            if (slot->finished)
                cel__run_clear(&slot->run);
            cel__request_free(slot->request);
            slot->request = NULL;
            slot->has_job = false;
            slot->finished = false;
            base->busy--;
        } else {
            running[i] = true;
        }
    }
    for (int i = 0; i < base->size; i++)
        if (pool->slots[i].started)
            pthread_cond_signal(&pool->slots[i].wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < base->size; i++) {
        thread_slot_t *slot = &pool->slots[i];
        if (!slot->started)
            continue;
        /* A thread still inside a task cannot be interrupted; it is left
         * to end with the process. */
        if (running[i])
            pthread_detach(slot->thread);
        else
            pthread_join(slot->thread, NULL);
        slot->started = false;
    }
}

static void threads_free(cel__pool_t *base)
{
    threads_pool_t *pool = (threads_pool_t *)base;
    if (base->busy > 0)
        return; /* detached threads still use the pool */
    for (int i = 0; i < base->size; i++)
        pthread_cond_destroy(&pool->slots[i].wake);
    pthread_mutex_destroy(&pool->lock);
    if (pool->wake_pipe[0] >= 0) {
        close(pool->wake_pipe[0]);
        close(pool->wake_pipe[1]);
    }
    free(pool->slots);
    free(pool);
}

static const cel__pool_ops_t THREADS_OPS = {
    .start = threads_start,
    .submit = threads_submit,
    .poll_fds = threads_poll_fds,
    .process = threads_process,
    .next_deadline = threads_next_deadline,
    .is_running = threads_is_running,
    .list_running = threads_list_running,
    .terminate = threads_terminate,
    .list_pids = threads_list_pids,
    .stop = threads_stop,
    .free = threads_free,
};

cel__pool_t *cel__pool_threads_new(int size)
{
    threads_pool_t *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return NULL;
    pool->slots = calloc((size_t)size, sizeof *pool->slots);
    if (pool->slots == NULL) {
        free(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pool->wake_pipe[0] = pool->wake_pipe[1] = -1;
    pool->base.ops = &THREADS_OPS;
    pool->base.name = "threads";
    pool->base.size = size;
    return &pool->base;
}
