/*
 * Loads the golden task messages under tests/data/golden/ and the malformed
 * cases in tests/data/malformed.json into wire messages the decoder takes.
 *
 * Both files store AMQP headers with their field-table type tags, as
 * ["S", "text"], ["I", 0], ["V", null], ["A", [...]] or ["F", {...}], and
 * the body as base64. The loader strips the tags recursively and decodes
 * the body, so a test gets what the transport would hand to the codec.
 */
#ifndef CELERIAC_TESTS_SUPPORT_GOLDEN_H
#define CELERIAC_TESTS_SUPPORT_GOLDEN_H

#include <amqp.h>
#include <jansson.h>
#include <stddef.h>

#include "protocol.h"

#ifndef CEL_TEST_DATA
#define CEL_TEST_DATA "tests/data"
#endif

/*
 * One message read from a data file. `wire` borrows its strings from
 * `document`, its headers from `headers` and its body from `body`, so it
 * stays valid until golden_message_free().
 */
typedef struct golden_message {
    char *name;           /* file stem ("add") or malformed case name */
    const char *expected; /* malformed cases only: ack_drop, reject, ... */
    json_t *document;     /* the whole JSON object of the message */
    json_t *headers;      /* untagged header object, never NULL */
    unsigned char *body;  /* decoded body_b64, NUL-terminated */
    size_t body_len;
    cel__wire_message_t wire;
} golden_message_t;

/*
 * Loads tests/data/golden/<name>.json. Returns 0, or -1 with the reason in
 * `error` (error_len bytes).
 */
int golden_message_load(const char *name, golden_message_t *out, char *error,
                        size_t error_len);

/* Frees what golden_message_load() or golden_cases_load() filled in. */
void golden_message_free(golden_message_t *msg);

/*
 * Lists the stems of the .json files under tests/data/golden/, sorted.
 * Returns a malloc'd array of malloc'd strings (free with
 * golden_names_free()), or NULL when the folder cannot be read.
 */
char **golden_names_list(size_t *count);
void golden_names_free(char **names, size_t count);

/*
 * Loads every case of tests/data/malformed.json into a malloc'd array (free
 * with golden_cases_free()). Returns 0, or -1 with the reason in `error`.
 */
int golden_cases_load(golden_message_t **cases, size_t *count, char *error,
                      size_t error_len);
void golden_cases_free(golden_message_t *cases, size_t count);

/*
 * Returns the body as JSON (a new reference), inflating it first when the
 * headers carry a compression header. Uses zlib directly, not the codec
 * under test. NULL when the body is not valid JSON.
 */
json_t *golden_body_json(const golden_message_t *msg);

/*
 * Strips AMQP type tags from a tagged value: ["S", "x"] becomes "x" and
 * ["A", [["I", 1]]] becomes [1]. Returns a new reference, or NULL on an
 * unknown tag or a value that is not a [tag, value] pair.
 */
json_t *golden_untag(json_t *tagged);

/*
 * Builds an AMQP field table from a tagged header object, as rabbitmq-c
 * would decode the bytes py-amqp sent. Each tag is the field's type byte
 * on the wire, which is also the value of rabbitmq-c's AMQP_FIELD_KIND_*
 * constant. So ["L", -1] becomes a U64 holding the bits of -1, because
 * py-amqp (amqp/serialization.py) writes signed 64-bit integers under 'L'
 * and rabbitmq-c reads 'L' as unsigned. A string becomes its UTF-8 bytes,
 * with a NULL pointer when it is empty. Keys keep the object's order, and
 * everything is allocated from `pool`.
 *
 * Returns 0 on success. Returns -1 on a tag with no AMQP_FIELD_KIND_*, on
 * a value outside the JSON type or range of its kind, or when an
 * allocation fails. It also returns -1 on 'D', because the files store a
 * decimal as a plain number, which does not give its scale.
 */
int golden_table_build(json_t *tagged, amqp_pool_t *pool, amqp_table_t *out);

/*
 * Decodes standard base64 (with or without '=' padding) into a malloc'd
 * buffer with a NUL byte after the data. Returns 0, or -1 on a character
 * outside the alphabet or a bad length.
 */
int golden_base64_decode(const char *text, unsigned char **out,
                         size_t *out_len);

#endif
