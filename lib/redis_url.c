/* Parsing of redis:// and rediss:// result backend URLs, following kombu's
 * url_to_parts() and Celery 5.2's RedisBackend._params_from_url(). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "redis.h"

#define DEFAULT_PORT 6379

void cel__redis_config_clear(cel__redis_config_t *config)
{
    free(config->host);
    free(config->username);
    free(config->password);
    free(config->ca_certs);
    free(config->certfile);
    free(config->keyfile);
    memset(config, 0, sizeof *config);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Returns a malloc'd copy of text[0..len) with %XX sequences decoded, as
 * Python's unquote() does: a % not followed by two hex digits stays. With
 * `plus_is_space` a + becomes a space, as in a query string. */
static char *percent_decode(const char *text, size_t len, bool plus_is_space)
{
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    size_t used = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '%' && i + 2 < len && hex_value(text[i + 1]) >= 0 &&
            hex_value(text[i + 2]) >= 0) {
            out[used++] =
                (char)(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
            i += 2;
        } else if (plus_is_space && text[i] == '+') {
            out[used++] = ' ';
        } else {
            out[used++] = text[i];
        }
    }
    out[used] = '\0';
    return out;
}

/* Parses a whole decimal number from min to max. */
static bool parse_number(const char *text, size_t len, long min, long max,
                         long *out)
{
    if (len == 0 || len > 10)
        return false;
    long value = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)text[i]))
            return false;
        value = value * 10 + (text[i] - '0');
    }
    if (value < min || value > max)
        return false;
    *out = value;
    return true;
}

static bool parse_seconds(const char *text, double *out)
{
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(value) ||
        value <= 0)
        return false;
    *out = value;
    return true;
}

static int parse_cert_reqs(const char *value, cel__redis_cert_reqs_t *out)
{
    static const struct {
        const char *name;
        cel__redis_cert_reqs_t reqs;
    } NAMES[] = {
        {"required", CEL__REDIS_CERT_REQUIRED},
        {"CERT_REQUIRED", CEL__REDIS_CERT_REQUIRED},
        {"optional", CEL__REDIS_CERT_OPTIONAL},
        {"CERT_OPTIONAL", CEL__REDIS_CERT_OPTIONAL},
        {"none", CEL__REDIS_CERT_NONE},
        {"CERT_NONE", CEL__REDIS_CERT_NONE},
    };
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strcmp(value, NAMES[i].name) == 0) {
            *out = NAMES[i].reqs;
            return CEL_OK;
        }
    return CEL_EINVAL;
}

static bool parse_bool_text(const char *value, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on", "True"};
    static const char *const no[] = {"0", "false", "no", "off", "False"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(value, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(value, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool is_ssl_parameter(const char *name)
{
    return strcmp(name, "ssl_cert_reqs") == 0 ||
           strcmp(name, "ssl_ca_certs") == 0 ||
           strcmp(name, "ssl_certfile") == 0 ||
           strcmp(name, "ssl_keyfile") == 0 ||
           strcmp(name, "ssl_check_hostname") == 0;
}

/* Takes one decoded query parameter. `value` is owned by the caller. */
static int take_parameter(cel__redis_config_t *config, const char *name,
                          const char *value, bool *has_cert_reqs, char *error)
{
    if (is_ssl_parameter(name) && !config->tls) {
        cel__set_error(error,
                       "invalid result backend URL: %s needs the rediss:// "
                       "scheme (TLS), not redis://",
                       name);
        return CEL_EINVAL;
    }
    char **field = NULL;
    if (strcmp(name, "ssl_cert_reqs") == 0) {
        if (parse_cert_reqs(value, &config->cert_reqs) != CEL_OK) {
            cel__set_error(error,
                           "invalid result backend URL: ssl_cert_reqs '%s' "
                           "must be required, optional or none (or "
                           "CERT_REQUIRED, CERT_OPTIONAL, CERT_NONE)",
                           value);
            return CEL_EINVAL;
        }
        *has_cert_reqs = true;
        return CEL_OK;
    }
    if (strcmp(name, "ssl_check_hostname") == 0) {
        if (parse_bool_text(value, &config->check_hostname))
            return CEL_OK;
        cel__set_error(error,
                       "invalid result backend URL: ssl_check_hostname '%s' "
                       "must be true or false",
                       value);
        return CEL_EINVAL;
    }
    if (strcmp(name, "socket_timeout") == 0 ||
        strcmp(name, "socket_connect_timeout") == 0) {
        double *seconds = name[7] == 't' ? &config->socket_timeout
                                         : &config->socket_connect_timeout;
        if (parse_seconds(value, seconds))
            return CEL_OK;
        cel__set_error(error,
                       "invalid result backend URL: %s '%s' must be a "
                       "positive number of seconds",
                       name, value);
        return CEL_EINVAL;
    }
    if (strcmp(name, "ssl_ca_certs") == 0)
        field = &config->ca_certs;
    else if (strcmp(name, "ssl_certfile") == 0)
        field = &config->certfile;
    else if (strcmp(name, "ssl_keyfile") == 0)
        field = &config->keyfile;
    if (field == NULL) {
        cel__set_error(error,
                       "invalid result backend URL: unsupported query "
                       "parameter '%s'",
                       name);
        return CEL_EINVAL;
    }
    free(*field);
    *field = strdup(value);
    return *field ? CEL_OK : CEL_ENOMEM;
}

/* Parses name=value pairs separated by &, as Python's parse_qsl() does:
 * pairs with an empty value are skipped. */
static int parse_query(cel__redis_config_t *config, const char *query,
                       size_t len, bool *has_cert_reqs, char *error)
{
    const char *end = query + len;
    const char *pair = query;
    while (pair < end) {
        const char *amp = memchr(pair, '&', (size_t)(end - pair));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(pair, '=', (size_t)(pair_end - pair));
        if (eq != NULL && eq + 1 < pair_end) {
            char *name = percent_decode(pair, (size_t)(eq - pair), true);
            char *value =
                percent_decode(eq + 1, (size_t)(pair_end - eq - 1), true);
            int status = name && value ? take_parameter(config, name, value,
                                                        has_cert_reqs, error)
                                       : CEL_ENOMEM;
            free(name);
            free(value);
            if (status != CEL_OK)
                return status;
        }
        pair = pair_end + 1;
    }
    return CEL_OK;
}

/* Splits user:password at the first colon; empty parts stay NULL. */
static int parse_userinfo(cel__redis_config_t *config, const char *text,
                          size_t len)
{
    const char *colon = memchr(text, ':', len);
    size_t user_len = colon ? (size_t)(colon - text) : len;
    if (user_len > 0 &&
        (config->username = percent_decode(text, user_len, false)) == NULL)
        return CEL_ENOMEM;
    if (colon != NULL && colon + 1 < text + len &&
        (config->password = percent_decode(
             colon + 1, (size_t)(text + len - colon - 1), false)) == NULL)
        return CEL_ENOMEM;
    return CEL_OK;
}

/* Parses host[:port], with an IPv6 address in brackets. */
static int parse_hostport(cel__redis_config_t *config, const char *text,
                          size_t len, char *error)
{
    const char *end = text + len;
    const char *host = text;
    const char *host_end;
    const char *after;
    if (len > 0 && text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (close == NULL) {
            cel__set_error(error, "invalid result backend URL: the host "
                                  "has a '[' without its ']'");
            return CEL_EINVAL;
        }
        host = text + 1;
        host_end = close;
        after = close + 1;
    } else {
        const char *colon = memchr(text, ':', len);
        host_end = colon ? colon : end;
        after = host_end;
    }
    config->port = DEFAULT_PORT;
    /* As in urlsplit(), "host:" with nothing after the colon keeps the
     * default port. */
    if (after < end && !(after + 1 == end && *after == ':')) {
        long port = 0;
        if (*after != ':' || !parse_number(after + 1, (size_t)(end - after - 1),
                                           1, 65535, &port)) {
            cel__set_error(error,
                           "invalid result backend URL: port '%.*s' must be "
                           "a number from 1 to 65535",
                           (int)(end - after - (*after == ':')),
                           after + (*after == ':'));
            return CEL_EINVAL;
        }
        config->port = (int)port;
    }
    if (host_end > host)
        config->host = percent_decode(host, (size_t)(host_end - host), false);
    else
        config->host = strdup("localhost");
    return config->host ? CEL_OK : CEL_ENOMEM;
}

static int parse_db(cel__redis_config_t *config, const char *path, size_t len,
                    char *error)
{
    /* kombu strips one leading slash and Celery strips the rest. */
    while (len > 0 && path[0] == '/') {
        path++;
        len--;
    }
    while (len > 0 && path[len - 1] == '/')
        len--;
    long db = 0;
    if (len > 0 && !parse_number(path, len, 0, INT_MAX, &db)) {
        cel__set_error(error,
                       "invalid result backend URL: database '%.*s' must be "
                       "a number from 0 up, as in redis://host:6379/0",
                       (int)len, path);
        return CEL_EINVAL;
    }
    config->db = (int)db;
    return CEL_OK;
}

/* Splits the text after the scheme into authority, path and query, and
 * parses each. */
static int parse_rest(cel__redis_config_t *config, const char *rest,
                      bool *has_cert_reqs, char *error)
{
    size_t len = strcspn(rest, "#");
    size_t authority_len = strcspn(rest, "/?#");
    const char *path = rest + authority_len;
    size_t path_len = strcspn(path, "?#");
    const char *query = path + path_len;
    size_t query_len = 0;
    if (*query == '?') {
        query++;
        query_len = (size_t)(rest + len - query);
    }

    /* The last @ ends the user info, as in Python's urlsplit(). */
    const char *authority = rest;
    const char *at = NULL;
    for (size_t i = 0; i < authority_len; i++)
        if (rest[i] == '@')
            at = rest + i;
    int status = CEL_OK;
    if (at != NULL) {
        status = parse_userinfo(config, rest, (size_t)(at - rest));
        authority = at + 1;
    }
    if (status == CEL_OK)
        status =
            parse_hostport(config, authority,
                           (size_t)(rest + authority_len - authority), error);
    if (status == CEL_OK)
        status = parse_db(config, path, path_len, error);
    if (status == CEL_OK)
        status = parse_query(config, query, query_len, has_cert_reqs, error);
    return status;
}

int cel__redis_url_parse(const char *url, cel__redis_config_t *out, char *error)
{
    memset(out, 0, sizeof *out);
    const char *rest;
    if (url != NULL && strncmp(url, "redis://", 8) == 0) {
        rest = url + 8;
    } else if (url != NULL && strncmp(url, "rediss://", 9) == 0) {
        rest = url + 9;
        out->tls = true;
    } else {
        /* Only the scheme is shown: the rest may hold a password. */
        const char *scheme_end = url ? strstr(url, "://") : NULL;
        cel__set_error(error,
                       "invalid result backend URL: scheme '%.*s' is not "
                       "redis:// or rediss://; expected "
                       "redis://[[user]:password@]host[:port][/db]",
                       scheme_end ? (int)(scheme_end - url) : 0,
                       scheme_end ? url : "");
        return CEL_EINVAL;
    }
    bool has_cert_reqs = false;
    out->cert_reqs = CEL__REDIS_CERT_REQUIRED;
    int status = parse_rest(out, rest, &has_cert_reqs, error);
    if (status == CEL_OK && out->tls && !has_cert_reqs) {
        cel__set_error(error,
                       "invalid result backend URL: a rediss:// URL must "
                       "have the parameter ssl_cert_reqs set to required, "
                       "optional or none (or CERT_REQUIRED, CERT_OPTIONAL, "
                       "CERT_NONE), e.g. rediss://host:6380/0?"
                       "ssl_cert_reqs=required");
        status = CEL_EINVAL;
    }
    if (status == CEL_ENOMEM)
        cel__set_error(error, "out of memory parsing the result backend URL");
    if (status != CEL_OK)
        cel__redis_config_clear(out);
    return status;
}
