/*
 * The Celery wire codec: bytes and structs in, bytes and structs out, no I/O.
 * Internal to celeriac; names carry the cel__ prefix.
 */
#ifndef CELERIAC_PROTOCOL_H
#define CELERIAC_PROTOCOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "celeriac/celeriac.h"

/* Caps applied by every decoder. */
typedef struct cel__limits {
    size_t max_body;    /* bytes, before and after decompression */
    size_t max_headers; /* number of top-level header keys */
    int max_depth;      /* JSON nesting of the body */
} cel__limits_t;

#define CEL__DEFAULT_MAX_BODY    ((size_t)128 * 1024 * 1024)
#define CEL__DEFAULT_MAX_HEADERS 256
#define CEL__DEFAULT_MAX_DEPTH   128

void cel__limits_default(cel__limits_t *limits);

/* The headers a task message's decoder reads, in the order of
 * cel__task_field_names. */
typedef enum cel__task_field {
    CEL__FIELD_ID,
    CEL__FIELD_TASK,
    CEL__FIELD_SHADOW,
    CEL__FIELD_ROOT_ID,
    CEL__FIELD_PARENT_ID,
    CEL__FIELD_GROUP,
    CEL__FIELD_ORIGIN,
    CEL__FIELD_ARGSREPR,
    CEL__FIELD_KWARGSREPR,
    CEL__FIELD_ETA,
    CEL__FIELD_EXPIRES,
    CEL__FIELD_RETRIES,
    CEL__FIELD_GROUP_INDEX,
    CEL__FIELD_IGNORE_RESULT,
    CEL__FIELD_TIMELIMIT,
    CEL__FIELD_COUNT
} cel__task_field_t;

typedef struct cel__field_name {
    const char *text;
    size_t len;
} cel__field_name_t;

extern const cel__field_name_t cel__task_field_names[CEL__FIELD_COUNT];

/* The JSON type of one header value, in the classes the decoder checks.
 * CEL__VALUE_PAIR is a list of exactly two members. */
typedef enum cel__value_kind {
    CEL__VALUE_ABSENT,
    CEL__VALUE_NULL,
    CEL__VALUE_TEXT,
    CEL__VALUE_INTEGER,
    CEL__VALUE_REAL,
    CEL__VALUE_TRUE,
    CEL__VALUE_PAIR,
    CEL__VALUE_OTHER
} cel__value_kind_t;

/* A header value without the header's container. Text is borrowed and
 * has no terminating NUL. */
typedef struct cel__value {
    cel__value_kind_t kind;
    const char *text; /* CEL__VALUE_TEXT */
    size_t len;
    long long integer; /* CEL__VALUE_INTEGER */
    double real;       /* CEL__VALUE_REAL */
} cel__value_t;

/* The decoder's headers, read once from a JSON object or an AMQP table. */
typedef struct cel__task_fields {
    cel__value_t value[CEL__FIELD_COUNT];
    /* The two members of timelimit when it is a CEL__VALUE_PAIR, each
     * one of NULL, INTEGER, REAL or OTHER. */
    cel__value_t timelimit[2];
} cel__task_fields_t;

/* An AMQP message as the transport received it. All fields are borrowed. */
typedef struct cel__wire_message {
    const char *content_type;     /* NULL when absent */
    const char *content_encoding; /* NULL when absent */
    const char *correlation_id;   /* NULL when absent */
    const char *reply_to;         /* NULL when absent */
    int priority;                 /* -1 when absent */
    json_t *headers;              /* object, or NULL when absent */
    /* Set instead of headers by a transport that read the fields itself,
     * only for a v2 message with a task header, no compression header,
     * at most max_headers headers and a body that starts with '['. The
     * decoded message then has NULL headers. */
    const cel__task_fields_t *fields;
    const void *body;
    size_t body_len;
} cel__wire_message_t;

/*
 * A task request in protocol v2 terms, whatever form it arrived in. Strings
 * are owned (free with cel__task_message_clear); NULL means absent or null.
 * JSON members are new references or NULL.
 */
typedef struct cel__task_message {
    int protocol; /* 1 or 2 */
    bool hybrid;  /* v2 headers with a v1-style dict body */
    char *id;
    char *task;
    char *shadow;
    char *root_id;
    char *parent_id;
    char *group;
    char *origin;
    char *reply_to;
    char *correlation_id;
    char *eta;     /* ISO-8601 text as received */
    char *expires; /* ISO-8601 text as received */
    char *argsrepr;
    char *kwargsrepr;
    double eta_ts;     /* seconds since the epoch; valid when eta != NULL */
    double expires_ts; /* valid when expires != NULL */
    int retries;
    int group_index; /* valid when has_group_index */
    bool has_group_index;
    double time_limit;      /* hard, seconds; 0 = none */
    double soft_time_limit; /* seconds; 0 = none */
    bool ignore_result;
    int priority;   /* -1 = absent */
    json_t *args;   /* array */
    json_t *kwargs; /* object */
    json_t *callbacks;
    json_t *errbacks;
    json_t *chain;
    json_t *chord;
    json_t *headers; /* every header received (object), custom ones too */
} cel__task_message_t;

/*
 * Decodes a task message of protocol v1, v2 or the hybrid form. On failure
 * returns a negative status and writes the reason into `why`:
 *   CEL_EDECODE, CEL_ETOODEEP    the body could not be decoded;
 *   CEL_EINVALTASK, CEL_ETOOMANY, CEL_ETOOBIG, CEL_ECONTENT, CEL_ECOMPRESS
 *                                not a valid task message.
 * Even on failure `out->id`, `out->task`, `out->reply_to` and
 * `out->correlation_id` are filled when the headers carry them, so the
 * caller can report the outcome. Always call cel__task_message_clear().
 */
int cel__task_decode(const cel__wire_message_t *in, const cel__limits_t *limits,
                     cel__task_message_t *out, char *why, size_t why_len);

void cel__task_message_clear(cel__task_message_t *msg);

/*
 * Sets *args and *kwargs to new references to the first two members of a
 * v2 body list [args, kwargs, embed], with a missing or null member read
 * as [] or {}, as cel__task_decode reads them. It checks no types: use it
 * on a body that cel__task_decode has accepted.
 */
void cel__task_body_arguments(json_t *body, json_t **args, json_t **kwargs);

/*
 * Encodes a v2 task message as Celery 5.2 does: the header object (new) and
 * the JSON body (malloc'd, caller frees). argsrepr/kwargsrepr are computed
 * when msg leaves them NULL.
 */
int cel__task_encode_v2(const cel__task_message_t *msg, json_t **headers,
                        char **body, size_t *body_len);

/* ---- signatures (canvas) ------------------------------------------------ */

/* What a signature is: a plain task, or one of Celery's composites. */
typedef enum cel__sig_kind {
    CEL__SIG_TASK,
    CEL__SIG_GROUP,
    CEL__SIG_CHAIN,
    CEL__SIG_CHORD,
} cel__sig_kind_t;

/* The kind, from subtask_type or else the task name (celery.group, ...). */
cel__sig_kind_t cel__signature_kind(json_t *sig);

/*
 * Returns a new object: the signature's options with `overrides` merged in
 * as Celery's Signature._merge does. Null overrides are dropped, and a
 * group_id the signature already has is kept.
 */
json_t *cel__signature_options(json_t *sig, json_t *overrides);

/* The args a signature is sent with: `partial` (NULL for none) and then its
 * own args, or its own args only when it is immutable. New reference. */
json_t *cel__signature_args(json_t *sig, json_t *partial);

/* What the sender supplies when the signature leaves them out. */
typedef struct cel__sig_defaults {
    const char *task_id;  /* a fresh id, used without options.task_id */
    const char *reply_to; /* used without options.reply_to */
    const char *origin;   /* the sending node */
    double now;           /* epoch seconds, for countdown and expires */
} cel__sig_defaults_t;

/* A task message built from a plain signature, with its route. */
typedef struct cel__sig_message {
    cel__task_message_t msg;
    char *queue;       /* options.queue, NULL when absent */
    char *exchange;    /* options.exchange */
    char *routing_key; /* options.routing_key */
    char *expiration;  /* AMQP expiration in milliseconds, from expires */
} cel__sig_message_t;

/*
 * Builds the message Celery's send_task writes for a plain signature
 * applied with `args` (from cel__signature_args) and `options` (from
 * cel__signature_options). The options read are task_id, reply_to,
 * countdown/eta, expires, priority, time limits, shadow, headers,
 * link/link_error (as callbacks and errbacks), chain, chord, group_id,
 * group_index, parent_id and root_id.
 * Returns CEL_OK or CEL_EINVAL with the reason in `why`. Always call
 * cel__sig_message_clear().
 */
int cel__signature_message(json_t *sig, json_t *args, json_t *options,
                           const cel__sig_defaults_t *defaults,
                           cel__sig_message_t *out, char *why, size_t why_len);

void cel__sig_message_clear(cel__sig_message_t *out);

/* ---- results ------------------------------------------------------------ */

/*
 * Builds an exception dict {exc_type, exc_message: [message], exc_module}.
 * Returns a new reference, or NULL on ENOMEM.
 */
json_t *cel__exception_new(const char *exc_type, const char *exc_module,
                           const char *message);

/*
 * Encodes an rpc result body with exactly the keys task_id, status, result,
 * traceback and children. `result` and `children` are borrowed; NULL stands
 * for null and [] respectively. Returns malloc'd text or NULL on ENOMEM.
 */
char *cel__result_encode_rpc(const char *task_id, const char *status,
                             json_t *result, const char *traceback,
                             json_t *children);

/* As cel__result_encode_rpc with no traceback and no children, for a
 * result that is JSON text already (a prefork child's), written as it is. */
char *cel__result_encode_rpc_text(const char *task_id, const char *status,
                                  const char *result_text);

/* The same body in pieces, so a long result text is sent without a copy:
 * the returned head (malloc'd, its length in *len, NULL when memory ran
 * out), the result text, then CEL__RPC_TEXT_BODY_END. */
char *cel__result_rpc_text_head(const char *task_id, const char *status,
                                size_t *len);
#define CEL__RPC_TEXT_BODY_END ",\"traceback\":null,\"children\":[]}"

/* True for Celery's READY_STATES: SUCCESS, FAILURE and REVOKED. */
bool cel__result_state_is_ready(const char *status);

/* One state of a task as the redis backend stores it. Borrowed members;
 * NULL result is null, NULL children is [], NULL group_id and parent_id
 * leave those keys out. */
typedef struct cel__result_meta {
    const char *task_id;
    const char *status;
    json_t *result;
    const char *traceback;
    json_t *children;
    const char *group_id;
    const char *parent_id;
    double date_done; /* epoch seconds; written for READY states only */
} cel__result_meta_t;

/*
 * Encodes the redis meta as Celery 5.2 writes it, with json.dumps spacing:
 * {"status", "result", "traceback", "children", "date_done", ["group_id"],
 * ["parent_id"], "task_id"}. date_done is naive UTC isoformat
 * (2026-12-04T09:29:03.378759) for READY states and null otherwise.
 * Returns malloc'd text, or NULL on ENOMEM or a NULL task_id or status.
 */
char *cel__result_encode_meta(const cel__result_meta_t *meta);

/*
 * Encodes a chord header result as Celery's redis backend adds it to the
 * celery-taskset-meta-<gid>.j sorted set: [1, "<task_id>", "<state>",
 * <result>], byte for byte as json.dumps writes it, so that entries from
 * Python workers compare equal. `result` is borrowed (NULL: null).
 * Returns malloc'd text or NULL.
 */
char *cel__chord_entry_encode(const char *task_id, const char *state,
                              json_t *result);

/*
 * Returns the JSON text Python's json.dumps() writes for `value` with its
 * defaults (", " and ": " separators, ensure_ascii, float repr, keys in
 * insertion order). NULL stands for null. Malloc'd; NULL on ENOMEM.
 */
char *cel__json_dumps_python(json_t *value);

/*
 * Formats a Python-style traceback text for an exception raised by C code,
 * ending in "<exc_type>: <message>\n". Returns malloc'd text.
 */
char *cel__traceback_format(const char *task_name, const char *exc_type,
                            const char *exc_module, const char *message);

/* ---- JSON --------------------------------------------------------------- */

/* Nesting beyond which cel__json_parse and cel__json_dump fail for any
 * max_depth, so that their recursion stays bounded. It is jansson 2.14's
 * own parser limit (JSON_PARSER_MAX_DEPTH). */
#define CEL__JSON_MAX_DEPTH 2048

/*
 * Parses one JSON value of any type (RFC 8259) from text[0..len), which
 * need not be NUL-terminated (NULL reads as empty). It builds the values
 * json_loadb() builds with JSON_DECODE_ANY | JSON_ALLOW_NUL: integers as
 * json_integer, other numbers as json_real with the double strtod() reads,
 * strings checked as UTF-8, \u0000 allowed in strings but not in keys, and
 * the last of repeated keys winning. Whitespace may follow the value,
 * nothing else. A NUL byte outside strings is an error, even right after
 * a number or a literal, where json_loadb in jansson 2.14 skips it.
 *
 * Returns CEL_OK with a new reference in *out. Otherwise *out is NULL, the
 * reason and its byte offset go into `why` (why_len bytes, may be 0), and
 * the status is:
 *   CEL_EDECODE   not valid JSON, invalid UTF-8, a lone surrogate escape,
 *                 an integer outside int64_t or a number outside a double;
 *   CEL_ETOODEEP  arrays and objects nest deeper than max_depth (capped at
 *                 CEL__JSON_MAX_DEPTH); [] alone is depth 1;
 *   CEL_ENOMEM    out of memory.
 * Thread-safe.
 */
int cel__json_parse(const char *text, size_t len, int max_depth, json_t **out,
                    char *why, size_t why_len);

/*
 * Encodes `value` (borrowed, any type) as compact JSON, as json_dumps() with
 * JSON_COMPACT | JSON_ENCODE_ANY does: no spaces, object keys in insertion
 * order, UTF-8 as it is, '"', '\\' and control characters escaped (\n, \t,
 * ..., else \u00XX), integers in decimal. Reals are written as Python's
 * repr() writes them (0.1, 1e-05, 1e+16, 2.0), which reads back as the same
 * double, where json_dumps() writes 17 digits (0.10000000000000001).
 *
 * Returns malloc'd NUL-terminated text (the caller frees it) and its length
 * in *len when len is not NULL. Returns NULL when value is NULL, a string
 * or key is not valid UTF-8, containers nest deeper than
 * CEL__JSON_MAX_DEPTH (as a cycle does), or memory runs out. Thread-safe.
 */
char *cel__json_dump(json_t *value, size_t *len);

/* Returns the length of the valid UTF-8 sequence of a character of 0x80
 * or above at the start of `text` (2 to 4), or 0 when it is not valid
 * UTF-8 (a stray, overlong or cut sequence, or a surrogate). */
size_t cel__utf8_sequence_length(const char *text, size_t len);

/* Writes `value` in decimal and a NUL into `buf` (22 bytes or more), as
 * the dump writes integers, and faster than snprintf. Returns the length. */
size_t cel__json_format_integer(char *buf, json_int_t value);

/* One member of an object written by cel__json_dump_members: the value is
 * `value` (borrowed) when set, else the string `text` when set, else the
 * JSON text `raw` as it is when set, else null. */
typedef struct cel__json_member {
    const char *key;
    json_t *value;
    const char *text;
    const char *raw;
} cel__json_member_t;

/* Writes the object of `count` members in their order, as cel__json_dump
 * writes an object built from them, without building it. Same results and
 * failures as cel__json_dump. */
char *cel__json_dump_members(const cel__json_member_t *members, size_t count,
                             size_t *len);

/* ---- helpers ------------------------------------------------------------ */

/*
 * Parses ISO-8601 date-times as Celery writes them: YYYY-MM-DD, 'T' or ' ',
 * HH:MM[:SS[.fraction]], then 'Z', +HH:MM, +HHMM, +HH or nothing (UTC).
 * Returns 0 and the time in seconds since the epoch, or CEL_EINVAL.
 */
int cel__iso8601_parse(const char *text, double *epoch);

/*
 * Formats seconds since the epoch as Python's isoformat() of an aware UTC
 * datetime: 2026-12-04T09:28:39.069419+00:00, microseconds left out when 0.
 * buf needs 33 bytes. Returns 0 or CEL_EINVAL.
 */
int cel__iso8601_format(double epoch, char *buf, size_t buf_len);

/*
 * Inflates a body whose `compression` header is `mime`. Only
 * application/x-gzip (a zlib stream) is supported. On success *out is
 * malloc'd. Returns CEL_ECOMPRESS for another method, CEL_EDECODE for bad
 * data, CEL_ETOOBIG past max_out bytes.
 */
int cel__decompress(const char *mime, const void *in, size_t in_len,
                    size_t max_out, void **out, size_t *out_len);

/* Deflates `in` into a zlib stream (malloc'd). Returns 0 or CEL_ENOMEM. */
int cel__compress_zlib(const void *in, size_t in_len, void **out,
                       size_t *out_len);

/*
 * Returns a JSON value as Celery's saferepr() prints it: 'abc' (a quote
 * inside escaped as \'), None, True, 1.5, {'a': 1}, with containers nested
 * three levels deep shown as {...} or [...], and the text cut to about
 * max_len characters with "..." when longer. With as_tuple an array prints
 * as a tuple: (1, 2), (1,), (). Malloc'd; NULL on ENOMEM.
 */
char *cel__pyrepr(json_t *value, size_t max_len, bool as_tuple);

/*
 * Checks that the JSON text nests no deeper than max_depth, without parsing
 * it. Returns 0 or CEL_ETOODEEP.
 */
int cel__json_check_depth(const char *text, size_t len, int max_depth);

#endif
