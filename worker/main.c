/* celeriac: the worker command. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "internal.h"

static cel_worker_t *running_worker;
static volatile sig_atomic_t stop_signals;

/* SIGTERM asks for a warm shutdown. SIGINT does too, and a second SIGINT
 * or any SIGQUIT is a cold one, as in Celery: the process exits at once,
 * pool processes die with it, and unacked messages go back to their queues
 * when the connection drops. */
static void on_stop_signal(int signo)
{
    if (signo == SIGQUIT || (signo == SIGINT && stop_signals > 0)) {
        static const char text[] = "celeriac: cold shutdown\n";
        ssize_t written = write(STDERR_FILENO, text, sizeof text - 1);
        (void)written;
        _exit(1);
    }
    stop_signals++;
    if (running_worker != NULL)
        cel_worker_stop(running_worker);
}

/* Celery uses SIGUSR1 and SIGUSR2 for Python debugging aids, which a C
 * worker has no use for. */
static void on_ignored_signal(int signo)
{
    static const char text[] = "celeriac: ignoring SIGUSR1/SIGUSR2\n";
    (void)signo;
    ssize_t written = write(STDERR_FILENO, text, sizeof text - 1);
    (void)written;
}

static void install_signal_handlers(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGQUIT, &action, NULL);
    /* Celery restarts on SIGHUP; celeriac stops warmly and leaves the
     * restart to its supervisor. */
    sigaction(SIGHUP, &action, NULL);
    action.sa_handler = on_ignored_signal;
    sigaction(SIGUSR1, &action, NULL);
    sigaction(SIGUSR2, &action, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int set_or_report(cel_app_t *app, const char *name, const char *value)
{
    if (value == NULL)
        return 0;
    if (cel_app_set(app, name, value) != CEL_OK) {
        fprintf(stderr, "celeriac: %s\n", cel_app_last_error(app));
        return -1;
    }
    return 0;
}

/* Applies the config sources in order: file, environment, options. */
static int apply_settings(cel_app_t *app, const cli_options_t *options)
{
    if (options->config_file &&
        cli_load_config_file(app, options->config_file) != 0)
        return -1;
    if (cli_load_environment(app) != 0)
        return -1;
    if (set_or_report(app, "broker_url", options->broker_url) ||
        set_or_report(app, "result_backend", options->result_backend) ||
        set_or_report(app, "worker_concurrency", options->concurrency) ||
        set_or_report(app, "worker_pool", options->pool) ||
        set_or_report(app, "worker_prefetch_multiplier",
                      options->prefetch_multiplier) ||
        set_or_report(app, "task_time_limit", options->time_limit) ||
        set_or_report(app, "task_soft_time_limit", options->soft_time_limit))
        return -1;
    if (options->task_events &&
        set_or_report(app, "worker_send_task_events", "true"))
        return -1;
    return 0;
}

static int add_queues(cel_worker_t *worker, const char *list)
{
    if (list == NULL)
        return 0;
    char *copy = strdup(list);
    if (copy == NULL)
        return -1;
    int status = 0;
    int added = 0;
    char *saveptr = NULL;
    for (char *name = strtok_r(copy, ",", &saveptr); name && status == 0;
         name = strtok_r(NULL, ",", &saveptr)) {
        while (*name == ' ')
            name++;
        if (*name == '\0')
            continue;
        if (strlen(name) > 255) {
            fprintf(stderr,
                    "celeriac: queue name '%.40s...' is longer than the 255 "
                    "bytes AMQP allows\n",
                    name);
            status = -1;
        } else if (cel_worker_add_queue(worker, name) != CEL_OK) {
            status = -1;
        } else {
            added++;
        }
    }
    free(copy);
    if (status == 0 && added == 0) {
        fprintf(stderr, "celeriac: -Q '%s' names no queue\n", list);
        status = -1;
    }
    return status;
}

static int load_modules(cel_app_t *app, const cli_options_t *options)
{
    if (options->module_count == 0) {
        fprintf(stderr, "celeriac: no task module given: use -A MODULE.so\n");
        return -1;
    }
    for (int i = 0; i < options->module_count; i++)
        if (cel_app_load_module(app, options->modules[i]) != CEL_OK) {
            fprintf(stderr, "celeriac: %s\n", cel_app_last_error(app));
            return -1;
        }
    return 0;
}

/* Creates the pidfile, refusing when it names a process that still runs,
 * as Celery's --pidfile does. A stale file is replaced. */
static int write_pidfile(const char *path)
{
    FILE *existing = fopen(path, "r");
    if (existing != NULL) {
        long pid = 0;
        int read = fscanf(existing, "%ld", &pid);
        fclose(existing);
        if (read == 1 && pid > 0 && pid != (long)getpid() &&
            (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
            fprintf(stderr,
                    "celeriac: pidfile %s names process %ld, which is "
                    "still running; stop it or remove the file\n",
                    path, pid);
            return -1;
        }
        unlink(path);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    FILE *file = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (file == NULL) {
        fprintf(stderr, "celeriac: cannot write pidfile %s: %s\n", path,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fprintf(file, "%ld\n", (long)getpid());
    fclose(file);
    return 0;
}

/* Replaces the password in user:password@host with "**", as Celery prints
 * broker URLs. */
static void mask_password(char *url)
{
    /* The user part follows the scheme's ':' and any slashes, so a URL
     * written without "//" is masked too. */
    char *start = strchr(url, ':');
    while (start != NULL && start[1] == '/')
        start++;
    char *at = start ? strchr(start + 1, '@') : NULL;
    char *colon = start ? strchr(start + 1, ':') : NULL;
    if (at == NULL || colon == NULL || colon > at)
        return;
    memmove(colon + 3, at, strlen(at) + 1);
    memcpy(colon + 1, "**", 2);
}

static void log_banner(int level, const cel_app_t *app, const char *nodename)
{
    char broker[512], backend[256], pool[32];
    cel_app_get(app, "broker_url", broker, sizeof broker);
    cel_app_get(app, "result_backend", backend, sizeof backend);
    cel_app_get(app, "worker_pool", pool, sizeof pool);
    if (strcmp(backend, "None") == 0)
        snprintf(backend, sizeof backend, "disabled");
    mask_password(broker);
    mask_password(backend);
    char line[1024];
    snprintf(line, sizeof line,
             "celeriac %s worker %s: broker %s, results %s, pool %s",
             CEL_VERSION, nodename, broker, backend, pool);
    int minimum = level;
    cli_log_line(&minimum, CEL_LOG_INFO, line);
}

static int run_worker(int argc, char **argv)
{
    cli_options_t options;
    int parsed = cli_parse(argc, argv, &options);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;

    static int min_level = CEL_LOG_WARNING;
    if (options.loglevel)
        min_level = cli_parse_loglevel(options.loglevel);

    int exit_code = 1;
    char *nodename = NULL;
    cel_worker_t *worker = NULL;
    cel_app_t *app = cel_app_new();
    if (app == NULL)
        goto out;
    cel_app_set_log_callback(app, cli_log_line, &min_level);
    cel_app_set_log_level(app, min_level);
    if (apply_settings(app, &options) != 0 || load_modules(app, &options))
        goto out;
    nodename =
        cli_expand_nodename(options.nodename ? options.nodename : "celery@%h");
    worker = cel_worker_new(app);
    if (nodename == NULL || worker == NULL ||
        cel_worker_set_nodename(worker, nodename) != CEL_OK ||
        add_queues(worker, options.queues) != 0)
        goto out;
    if (options.without_mingle)
        cel_worker_set_mingle(worker, false);
    if (options.pidfile && write_pidfile(options.pidfile) != 0)
        goto out;

    log_banner(min_level, app, nodename);
    running_worker = worker;
    install_signal_handlers();
    int status = cel_worker_run(worker);
    running_worker = NULL;
    if (status != CEL_OK)
        fprintf(stderr, "celeriac: worker stopped: %s\n",
                cel_worker_last_error(worker));
    exit_code = status == CEL_OK ? 0 : 1;
    if (options.pidfile)
        unlink(options.pidfile);

out:
    cel_worker_free(worker);
    cel_app_free(app);
    free(nodename);
    return exit_code;
}

/* Serves blocks up to 4 MiB from the heap and keeps up to 4 MiB of it free.
 * Tasks with large payloads then reuse pages where glibc would map fresh,
 * zeroed ones, which cost about a fifth of the worker's CPU with 1 MiB
 * payloads (bench/drain.py, 300 tasks on prefork -c 2). */
static void reuse_large_blocks(void)
{
    mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
}

int main(int argc, char **argv)
{
    reuse_large_blocks();
    cel__json_cache_allocations();
    if (argc >= 2 && strcmp(argv[1], "worker") == 0)
        return run_worker(argc - 1, argv + 1);
    if (argc >= 2 &&
        (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
        printf("celeriac %s\n", CEL_VERSION);
        return 0;
    }
    fprintf(stderr, "usage: celeriac worker [options]  (see celeriac worker "
                    "--help)\n");
    return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
}
