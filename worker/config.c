/* Settings from a config file and from CELERY_<NAME> variables. */
#include <ctype.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

extern char **environ;

static char *trim(char *text)
{
    while (isspace((unsigned char)*text))
        text++;
    char *end = text + strlen(text);
    while (end > text && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return text;
}

/* Removes one pair of matching quotes around a value. */
static char *unquote(char *value)
{
    size_t len = strlen(value);
    if (len >= 2 && (value[0] == '"' || value[0] == '\'') &&
        value[len - 1] == value[0]) {
        value[len - 1] = '\0';
        return value + 1;
    }
    return value;
}

static int apply_line(cel_app_t *app, const char *path, int number, char *line)
{
    char *text = trim(line);
    if (*text == '\0' || *text == '#')
        return 0;
    char *equals = strchr(text, '=');
    if (equals == NULL) {
        fprintf(stderr, "celeriac: %s:%d: expected 'name = value'\n", path,
                number);
        return -1;
    }
    *equals = '\0';
    char *name = trim(text);
    char *value = unquote(trim(equals + 1));
    if (cel_app_set(app, name, value) != CEL_OK) {
        fprintf(stderr, "celeriac: %s:%d: %s\n", path, number,
                cel_app_last_error(app));
        return -1;
    }
    return 0;
}

int cli_load_config_file(cel_app_t *app, const char *path)
{
    FILE *file = fopen(path, "r");
    struct stat info;
    if (file != NULL && fstat(fileno(file), &info) == 0 &&
        !S_ISREG(info.st_mode)) {
        fclose(file);
        file = NULL;
        errno = EISDIR;
    }
    if (file == NULL) {
        fprintf(stderr, "celeriac: cannot open config file %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int number = 0;
    int status = 0;
    while (status == 0 && getline(&line, &cap, file) >= 0)
        status = apply_line(app, path, ++number, line);
    free(line);
    fclose(file);
    return status;
}

int cli_load_environment(cel_app_t *app)
{
    static const char PREFIX[] = "CELERY_";
    for (char **entry = environ; *entry != NULL; entry++) {
        if (strncmp(*entry, PREFIX, sizeof PREFIX - 1) != 0)
            continue;
        const char *equals = strchr(*entry, '=');
        if (equals == NULL)
            continue;
        char name[128];
        size_t len = (size_t)(equals - *entry) - (sizeof PREFIX - 1);
        if (len == 0 || len >= sizeof name)
            continue;
        for (size_t i = 0; i < len; i++)
            name[i] =
                (char)tolower((unsigned char)(*entry)[sizeof PREFIX - 1 + i]);
        name[len] = '\0';
        int status = cel_app_set(app, name, equals + 1);
        if (status == CEL_ENOTFOUND)
            continue; /* CELERY_ variables of other programs */
        if (status != CEL_OK) {
            fprintf(stderr, "celeriac: environment CELERY_%.*s: %s\n", (int)len,
                    *entry + sizeof PREFIX - 1, cel_app_last_error(app));
            return -1;
        }
    }
    return 0;
}

char *cli_expand_nodename(const char *pattern)
{
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    char *dot = strchr(host, '.');
    char short_name[256];
    snprintf(short_name, sizeof short_name, "%.*s",
             dot ? (int)(dot - host) : (int)strlen(host), host);
    const char *domain = dot ? dot + 1 : "";

    size_t cap = strlen(pattern) * 4 + 3 * sizeof host + 16;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t len = 0;
    if (strchr(pattern, '@') == NULL)
        len = (size_t)snprintf(out, cap, "celery@");
    for (const char *p = pattern; *p != '\0'; p++) {
        const char *piece = NULL;
        if (p[0] == '%' && p[1] == 'h')
            piece = host;
        else if (p[0] == '%' && p[1] == 'n')
            piece = short_name;
        else if (p[0] == '%' && p[1] == 'd')
            piece = domain;
        else if (p[0] == '%' && p[1] == '%')
            piece = "%";
        if (piece != NULL) {
            len += (size_t)snprintf(out + len, cap - len, "%s", piece);
            p++;
        } else if (len + 1 < cap) {
            out[len++] = *p;
        }
    }
    out[len < cap ? len : cap - 1] = '\0';
    return out;
}
