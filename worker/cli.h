/* The celeriac command: options, config sources and the log sink. */
#ifndef CELERIAC_WORKER_CLI_H
#define CELERIAC_WORKER_CLI_H

#include <stdbool.h>

#include "celeriac/celeriac.h"

#define CLI_MAX_MODULES 16

typedef struct cli_options {
    const char *modules[CLI_MAX_MODULES];
    int module_count;
    const char *broker_url;
    const char *result_backend;
    const char *queues; /* comma-separated */
    const char *concurrency;
    const char *pool;
    const char *nodename;
    const char *loglevel;
    const char *prefetch_multiplier;
    const char *time_limit;
    const char *soft_time_limit;
    const char *config_file;
    const char *pidfile;
    bool task_events;
    bool without_mingle;
} cli_options_t;

/* Parses `celeriac worker` arguments (argv[0] is "worker"). Returns 0, 1
 * after printing help or the version, or -1 after printing an error. */
int cli_parse(int argc, char **argv, cli_options_t *options);

/* Reads `name = value` lines into the app. Returns 0 or -1 after printing
 * the file, line and reason. */
int cli_load_config_file(cel_app_t *app, const char *path);

/* Applies every CELERY_<NAME> variable that names a known setting. */
int cli_load_environment(cel_app_t *app);

/* Expands %h, %n, %d and %% in a node name and adds "celery@" when the
 * name has no '@'. Returns malloc'd text. */
char *cli_expand_nodename(const char *pattern);

/* Parses a level name (DEBUG, INFO, WARNING, ERROR, CRITICAL). Returns -1
 * for anything else. */
int cli_parse_loglevel(const char *name);

/* The log callback: Celery-style lines on stderr. `user` points at the
 * minimum level as an int. */
void cli_log_line(void *user, int level, const char *message);

#endif
