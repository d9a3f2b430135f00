/* Command-line options of `celeriac worker`, named as `celery worker`'s. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

enum {
    OPT_RESULT_BACKEND = 256,
    OPT_PREFETCH,
    OPT_CONFIG,
    OPT_PIDFILE,
    OPT_TIME_LIMIT,
    OPT_SOFT_TIME_LIMIT,
    OPT_WITHOUT_MINGLE,
    OPT_IGNORED,
};

static const char USAGE[] =
    "usage: celeriac worker [options]\n"
    "\n"
    "Runs a Celery worker whose tasks are C functions.\n"
    "\n"
    "  -A, --app MODULE.so         task module to load (repeatable)\n"
    "  -b, --broker URL            broker_url, e.g. "
    "amqp://guest:guest@localhost:5672//\n"
    "      --result-backend URL    result_backend: rpc://, redis://, rediss:// "
    "or none\n"
    "  -Q, --queues Q1,Q2          queues to consume (default: "
    "task_default_queue)\n"
    "  -c, --concurrency N         worker_concurrency (default: CPU count)\n"
    "  -P, --pool POOL             prefork, threads or solo\n"
    "  -n, --hostname NAME         node name; %h, %n, %d expand to the host "
    "name,\n"
    "                              its short name and its domain\n"
    "  -l, --loglevel LEVEL        DEBUG, INFO, WARNING, ERROR or CRITICAL\n"
    "  -E, --task-events           worker_send_task_events = true\n"
    "      --prefetch-multiplier N worker_prefetch_multiplier (default 4)\n"
    "      --time-limit SECONDS    task_time_limit: hard limit per task\n"
    "      --soft-time-limit SECONDS\n"
    "                              task_soft_time_limit: soft limit per task\n"
    "      --config FILE           settings file of `name = value` lines\n"
    "      --pidfile FILE          write the process id to FILE\n"
    "      --without-mingle        do not ask other workers for revoked ids\n"
    "                              at startup\n"
    "  -h, --help                  show this help\n"
    "  -V, --version               show the version\n"
    "\n"
    "Settings come from the defaults, then --config, then CELERY_<NAME>\n"
    "environment variables, then these options; the later wins.\n";

static const struct option LONG_OPTIONS[] = {
    {"app", required_argument, NULL, 'A'},
    {"broker", required_argument, NULL, 'b'},
    {"result-backend", required_argument, NULL, OPT_RESULT_BACKEND},
    {"queues", required_argument, NULL, 'Q'},
    {"concurrency", required_argument, NULL, 'c'},
    {"pool", required_argument, NULL, 'P'},
    {"hostname", required_argument, NULL, 'n'},
    {"loglevel", required_argument, NULL, 'l'},
    {"task-events", no_argument, NULL, 'E'},
    {"prefetch-multiplier", required_argument, NULL, OPT_PREFETCH},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"pidfile", required_argument, NULL, OPT_PIDFILE},
    {"time-limit", required_argument, NULL, OPT_TIME_LIMIT},
    {"soft-time-limit", required_argument, NULL, OPT_SOFT_TIME_LIMIT},
    /* Accepted so a `celery worker` command line works unchanged. */
    {"without-mingle", no_argument, NULL, OPT_WITHOUT_MINGLE},
    {"without-gossip", no_argument, NULL, OPT_IGNORED},
    {"without-heartbeat", no_argument, NULL, OPT_IGNORED},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int take_option(int code, cli_options_t *options)
{
    switch (code) {
    case 'A':
        if (options->module_count == CLI_MAX_MODULES) {
            fprintf(stderr, "celeriac: at most %d task modules\n",
                    CLI_MAX_MODULES);
            return -1;
        }
        options->modules[options->module_count++] = optarg;
        return 0;
    case 'b':
        options->broker_url = optarg;
        return 0;
    case OPT_TIME_LIMIT:
        options->time_limit = optarg;
        return 0;
    case OPT_SOFT_TIME_LIMIT:
        options->soft_time_limit = optarg;
        return 0;
    case OPT_RESULT_BACKEND:
        options->result_backend = optarg;
        return 0;
    case 'Q':
        options->queues = optarg;
        return 0;
    case 'c':
        options->concurrency = optarg;
        return 0;
    case 'P':
        options->pool = optarg;
        return 0;
    case 'n':
        options->nodename = optarg;
        return 0;
    case 'l':
        options->loglevel = optarg;
        return 0;
    case 'E':
        options->task_events = true;
        return 0;
    case OPT_PREFETCH:
        options->prefetch_multiplier = optarg;
        return 0;
    case OPT_CONFIG:
        options->config_file = optarg;
        return 0;
    case OPT_PIDFILE:
        options->pidfile = optarg;
        return 0;
    case OPT_WITHOUT_MINGLE:
        options->without_mingle = true;
        return 0;
    case OPT_IGNORED:
        return 0;
    case 'h':
        fputs(USAGE, stdout);
        return 1;
    case 'V':
        printf("celeriac %s\n", CEL_VERSION);
        return 1;
    default:
        fputs(USAGE, stderr);
        return -1;
    }
}

static int check_pool(const char *pool)
{
    if (pool == NULL || strcmp(pool, "prefork") == 0 ||
        strcmp(pool, "threads") == 0 || strcmp(pool, "solo") == 0)
        return 0;
    fprintf(stderr,
            "celeriac: invalid pool '%s': expected prefork, threads or "
            "solo\n",
            pool);
    return -1;
}

int cli_parse(int argc, char **argv, cli_options_t *options)
{
    memset(options, 0, sizeof *options);
    optind = 1;
    int code;
    while ((code = getopt_long(argc, argv, "A:b:Q:c:P:n:l:EhV", LONG_OPTIONS,
                               NULL)) != -1) {
        int status = take_option(code, options);
        if (status != 0)
            return status;
    }
    if (optind < argc) {
        fprintf(stderr, "celeriac: unexpected argument '%s'\n%s", argv[optind],
                USAGE);
        return -1;
    }
    if (options->loglevel && cli_parse_loglevel(options->loglevel) < 0) {
        fprintf(stderr,
                "celeriac: invalid log level '%s': expected DEBUG, INFO, "
                "WARNING, ERROR or CRITICAL\n",
                options->loglevel);
        return -1;
    }
    return check_pool(options->pool);
}
