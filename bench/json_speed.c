/*
 * Compares the speed of celeriac's JSON reader and writer (protocol/json.c)
 * with jansson's json_loadb and json_dumps. The samples are bodies the
 * worker handles: a 1 MiB string argument as bench/drain.py --payload-bytes
 * sends it, the same size of text with escapes and multi-byte UTF-8, a
 * tasks.add body and a prefork pool request frame.
 *
 * Parse MB/s counts input bytes and dump MB/s counts output bytes, in
 * units of 10^6 bytes. Each figure is the median of 5 rounds of at least
 * 0.2 s each. Build from the repository root after `make`:
 *
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -Iprotocol -o build/json_speed \
 *       bench/json_speed.c build/libceleriac.a -ljansson -lz -lm -lpthread
 *   build/json_speed
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol.h"

#define ROUNDS        5
#define ROUND_SECONDS 0.2
#define PAYLOAD_BYTES (1024 * 1024)

typedef struct sample {
    const char *name;
    char *text;
    size_t len;
} sample_t;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One operation on a sample; returns the bytes it counts, 0 on failure. */
typedef size_t (*operation_t)(const sample_t *sample, json_t *value);

static size_t parse_jansson(const sample_t *sample, json_t *value)
{
    (void)value;
    json_t *parsed = json_loadb(sample->text, sample->len,
                                JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    json_decref(parsed);
    return parsed ? sample->len : 0;
}

static size_t parse_celeriac(const sample_t *sample, json_t *value)
{
    (void)value;
    json_t *parsed;
    int status = cel__json_parse(sample->text, sample->len,
                                 CEL__DEFAULT_MAX_DEPTH, &parsed, NULL, 0);
    json_decref(parsed);
    return status == CEL_OK ? sample->len : 0;
}

/* strlen() is part of it because the call sites need the length. */
static size_t dump_jansson(const sample_t *sample, json_t *value)
{
    (void)sample;
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t len = text ? strlen(text) : 0;
    free(text);
    return len;
}

static size_t dump_celeriac(const sample_t *sample, json_t *value)
{
    (void)sample;
    size_t len = 0;
    char *text = cel__json_dump(value, &len);
    free(text);
    return text ? len : 0;
}

/* Returns the median MB/s of the operation and the median time per call
 * in microseconds. */
static double measure(operation_t operation, const sample_t *sample,
                      json_t *value, double *micros_per_call)
{
    double rates[ROUNDS];
    double micros[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        size_t bytes = 0;
        long calls = 0;
        double start = now_seconds();
        double elapsed;
        do {
            size_t done = operation(sample, value);
            if (done == 0) {
                fprintf(stderr, "%s: an operation failed\n", sample->name);
                exit(EXIT_FAILURE);
            }
            bytes += done;
            calls++;
            elapsed = now_seconds() - start;
        } while (elapsed < ROUND_SECONDS);
        rates[round] = (double)bytes / elapsed / 1e6;
        micros[round] = elapsed / (double)calls * 1e6;
    }
    qsort(rates, ROUNDS, sizeof rates[0], compare_doubles);
    qsort(micros, ROUNDS, sizeof micros[0], compare_doubles);
    *micros_per_call = micros[ROUNDS / 2];
    return rates[ROUNDS / 2];
}

/* A task body as Celery writes it, with one string argument built from
 * repeats of `unit` up to PAYLOAD_BYTES of JSON text. */
static sample_t payload_sample(const char *name, const char *unit)
{
    const char *head = "[[\"";
    const char *tail = "\"], {}, {\"callbacks\": null, \"errbacks\": null, "
                       "\"chain\": null, \"chord\": null}]";
    size_t unit_len = strlen(unit);
    size_t repeats = PAYLOAD_BYTES / unit_len;
    size_t len = strlen(head) + repeats * unit_len + strlen(tail);
    char *text = malloc(len + 1);
    if (text == NULL)
        exit(EXIT_FAILURE);
    char *at = stpcpy(text, head);
    for (size_t i = 0; i < repeats; i++)
        at = stpcpy(at, unit);
    strcpy(at, tail);
    return (sample_t){name, text, len};
}

static sample_t text_sample(const char *name, const char *json_text)
{
    char *text = strdup(json_text);
    if (text == NULL)
        exit(EXIT_FAILURE);
    return (sample_t){name, text, strlen(text)};
}

static void report(const sample_t *sample)
{
    json_t *value = json_loadb(sample->text, sample->len,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (value == NULL) {
        fprintf(stderr, "%s: the sample is not valid JSON\n", sample->name);
        exit(EXIT_FAILURE);
    }
    struct {
        const char *label;
        operation_t jansson;
        operation_t celeriac;
    } rows[] = {{"parse", parse_jansson, parse_celeriac},
                {"dump", dump_jansson, dump_celeriac}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double jansson_us;
        double celeriac_us;
        double jansson = measure(rows[i].jansson, sample, value, &jansson_us);
        double celeriac =
            measure(rows[i].celeriac, sample, value, &celeriac_us);
        printf("| %s | %zu | %s | %.0f | %.0f | %.3g | %.3g | %.1fx |\n",
               sample->name, sample->len, rows[i].label, jansson, celeriac,
               jansson_us, celeriac_us, celeriac / jansson);
    }
    json_decref(value);
}

int main(void)
{
    sample_t samples[] = {
        payload_sample("1 MiB string", "x"),
        payload_sample("1 MiB escapes+UTF-8",
                       "line \\\"one\\\"\\n caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c"
                       "\xac \xf0\x9f\x98\x80 \\t\\u00e9 "),
        text_sample("tasks.add body",
                    "[[2, 3], {}, {\"callbacks\": null, \"errbacks\": null, "
                    "\"chain\": null, \"chord\": null}]"),
        text_sample(
            "pool request frame",
            "{\"id\":\"31df8d65-1e52-43c6-a6bd-296dee9680c7\",\"task\":"
            "\"tasks.add\",\"retries\":0,\"root_id\":\"31df8d65-1e52-43c6-"
            "a6bd-296dee9680c7\",\"parent_id\":null,\"group\":null,\"eta\":"
            "null,\"expires\":null,\"exchange\":\"\",\"routing_key\":"
            "\"celery\",\"redelivered\":false,\"headers\":{\"lang\":\"py\","
            "\"task\":\"tasks.add\",\"id\":\"31df8d65-1e52-43c6-a6bd-"
            "296dee9680c7\",\"shadow\":null,\"eta\":null,\"expires\":null,"
            "\"group\":null,\"group_index\":null,\"retries\":0,\"timelimit\":"
            "[null,null],\"root_id\":\"31df8d65-1e52-43c6-a6bd-296dee9680c7\","
            "\"parent_id\":null,\"argsrepr\":\"(2, 3)\",\"kwargsrepr\":\"{}\","
            "\"origin\":\"gen6705@vm\",\"ignore_result\":false},\"args\":[2,"
            "3],\"kwargs\":{},\"soft\":0.0}"),
    };
    printf("| sample | bytes | operation | jansson MB/s | celeriac MB/s "
           "| jansson us/call | celeriac us/call | speed-up |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        report(&samples[i]);
        free(samples[i].text);
    }
    return EXIT_SUCCESS;
}
