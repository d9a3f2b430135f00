/* Celery-style log lines on stderr. */
#include <stdio.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "cli.h"

static const struct {
    const char *name;
    int level;
} LEVELS[] = {
    {"DEBUG", CEL_LOG_DEBUG},     {"INFO", CEL_LOG_INFO},
    {"WARNING", CEL_LOG_WARNING}, {"WARN", CEL_LOG_WARNING},
    {"ERROR", CEL_LOG_ERROR},     {"CRITICAL", CEL_LOG_CRITICAL},
    {"FATAL", CEL_LOG_CRITICAL},
};

int cli_parse_loglevel(const char *name)
{
    for (size_t i = 0; i < sizeof LEVELS / sizeof LEVELS[0]; i++)
        if (strcasecmp(name, LEVELS[i].name) == 0)
            return LEVELS[i].level;
    return -1;
}

static const char *level_name(int level)
{
    if (level >= CEL_LOG_CRITICAL)
        return "CRITICAL";
    if (level >= CEL_LOG_ERROR)
        return "ERROR";
    if (level >= CEL_LOG_WARNING)
        return "WARNING";
    if (level >= CEL_LOG_INFO)
        return "INFO";
    return "DEBUG";
}

void cli_log_line(void *user, int level, const char *message)
{
    const int *minimum = user;
    if (minimum != NULL && level < *minimum)
        return;
    struct timeval now;
    gettimeofday(&now, NULL);
    struct tm local;
    localtime_r(&now.tv_sec, &local);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
    fprintf(stderr, "[%s,%03ld: %s/MainProcess] %s\n", stamp,
            (long)(now.tv_usec / 1000), level_name(level), message);
}
