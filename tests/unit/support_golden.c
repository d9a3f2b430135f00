/* Loads the golden and malformed task messages (API in support_golden.h). */
#include "support_golden.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define GOLDEN_DIR     CEL_TEST_DATA "/golden"
#define MALFORMED_PATH CEL_TEST_DATA "/malformed.json"

static int set_error(char *error, size_t error_len, const char *fmt,
                     const char *detail)
{
    if (error != NULL && error_len > 0)
        snprintf(error, error_len, fmt, detail);
    return -1;
}

/* ---- base64 ------------------------------------------------------------- */

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int golden_base64_decode(const char *text, unsigned char **out, size_t *out_len)
{
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;

    unsigned char *buffer = malloc(len / 4 * 3 + 3 + 1);
    if (buffer == NULL)
        return -1;

    size_t produced = 0;
    unsigned long bits = 0;
    int bit_count = 0;
    for (size_t i = 0; i < len; i++) {
        int value = base64_value((unsigned char)text[i]);
        if (value < 0) {
            free(buffer);
            return -1;
        }
        bits = (bits << 6) | (unsigned long)value;
        bit_count += 6;
        if (bit_count >= 8) {
            bit_count -= 8;
            buffer[produced++] = (unsigned char)((bits >> bit_count) & 0xFF);
        }
    }
    buffer[produced] = '\0';
    *out = buffer;
    *out_len = produced;
    return 0;
}

/* ---- type tags ---------------------------------------------------------- */

static json_t *untag_array(json_t *items)
{
    if (!json_is_array(items))
        return NULL;
    json_t *array = json_array();
    size_t index;
    json_t *item;
    json_array_foreach(items, index, item) {
        json_t *plain = golden_untag(item);
        if (plain == NULL || json_array_append_new(array, plain) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *untag_table(json_t *fields)
{
    if (!json_is_object(fields))
        return NULL;
    json_t *table = json_object();
    const char *key;
    json_t *item;
    json_object_foreach(fields, key, item) {
        json_t *plain = golden_untag(item);
        if (plain == NULL || json_object_set_new(table, key, plain) != 0) {
            json_decref(table);
            return NULL;
        }
    }
    return table;
}

/* Returns a copy of `value` when it has the JSON type the tag promises. */
static json_t *untag_scalar(char tag, json_t *value)
{
    switch (tag) {
    case 'S': /* long string */
    case 's': /* short string */
    case 'x': /* byte array, stored as text */
        return json_is_string(value) ? json_copy(value) : NULL;
    case 'b':
    case 'B':
    case 'u':
    case 'U':
    case 'i':
    case 'I':
    case 'l':
    case 'L':
    case 'T': /* timestamp, integer seconds */
        return json_is_integer(value) ? json_copy(value) : NULL;
    case 'f':
    case 'd':
    case 'D': /* decimal, stored as a number */
        return json_is_number(value) ? json_real(json_number_value(value))
                                     : NULL;
    case 't':
        return json_is_boolean(value) ? json_copy(value) : NULL;
    case 'V':
        return json_is_null(value) ? json_null() : NULL;
    default:
        return NULL;
    }
}

json_t *golden_untag(json_t *tagged)
{
    if (!json_is_array(tagged) || json_array_size(tagged) != 2)
        return NULL;
    const char *tag = json_string_value(json_array_get(tagged, 0));
    json_t *value = json_array_get(tagged, 1);
    if (tag == NULL || strlen(tag) != 1)
        return NULL;
    if (tag[0] == 'A')
        return untag_array(value);
    if (tag[0] == 'F')
        return untag_table(value);
    return untag_scalar(tag[0], value);
}

/* ---- AMQP field tables ------------------------------------------------- */

static int tagged_to_field(json_t *tagged, amqp_pool_t *pool,
                           amqp_field_value_t *out);

/* rabbitmq-c 0.11.0's amqp_pool_alloc returns NULL for 0 bytes. */
static void *pool_alloc_array(amqp_pool_t *pool, size_t count, size_t size)
{
    return amqp_pool_alloc(pool, (count ? count : 1) * size);
}

static int string_to_bytes(json_t *value, amqp_pool_t *pool, amqp_bytes_t *out)
{
    if (!json_is_string(value))
        return -1;
    size_t len = json_string_length(value);
    *out = amqp_empty_bytes;
    if (len == 0)
        return 0;
    amqp_pool_alloc_bytes(pool, len, out);
    if (out->bytes == NULL)
        return -1;
    memcpy(out->bytes, json_string_value(value), len);
    return 0;
}

static int tagged_to_array(json_t *items, amqp_pool_t *pool, amqp_array_t *out)
{
    if (!json_is_array(items))
        return -1;
    size_t count = json_array_size(items);
    out->num_entries = 0;
    out->entries = pool_alloc_array(pool, count, sizeof *out->entries);
    if (out->entries == NULL)
        return -1;
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_array_get(items, i);
        if (tagged_to_field(item, pool, &out->entries[i]) != 0)
            return -1;
        out->num_entries++;
    }
    return 0;
}

/* Reads an integer for a kind whose range is [min, max]. */
static int integer_in_range(json_t *value, json_int_t min, json_int_t max,
                            json_int_t *out)
{
    if (!json_is_integer(value))
        return -1;
    *out = json_integer_value(value);
    return *out >= min && *out <= max ? 0 : -1;
}

static int scalar_to_field(char tag, json_t *value, amqp_field_value_t *out)
{
    json_int_t number = 0;
    out->kind = (uint8_t)tag;
    switch (tag) {
    case AMQP_FIELD_KIND_BOOLEAN:
        if (!json_is_boolean(value))
            return -1;
        out->value.boolean = json_is_true(value);
        return 0;
    case AMQP_FIELD_KIND_I8:
        if (integer_in_range(value, INT8_MIN, INT8_MAX, &number) != 0)
            return -1;
        out->value.i8 = (int8_t)number;
        return 0;
    case AMQP_FIELD_KIND_U8:
        if (integer_in_range(value, 0, UINT8_MAX, &number) != 0)
            return -1;
        out->value.u8 = (uint8_t)number;
        return 0;
    case AMQP_FIELD_KIND_I16:
        if (integer_in_range(value, INT16_MIN, INT16_MAX, &number) != 0)
            return -1;
        out->value.i16 = (int16_t)number;
        return 0;
    case AMQP_FIELD_KIND_U16:
        if (integer_in_range(value, 0, UINT16_MAX, &number) != 0)
            return -1;
        out->value.u16 = (uint16_t)number;
        return 0;
    case AMQP_FIELD_KIND_I32:
        if (integer_in_range(value, INT32_MIN, INT32_MAX, &number) != 0)
            return -1;
        out->value.i32 = (int32_t)number;
        return 0;
    case AMQP_FIELD_KIND_U32:
        if (integer_in_range(value, 0, UINT32_MAX, &number) != 0)
            return -1;
        out->value.u32 = (uint32_t)number;
        return 0;
    case AMQP_FIELD_KIND_I64:
        if (integer_in_range(value, INT64_MIN, INT64_MAX, &number) != 0)
            return -1;
        out->value.i64 = number;
        return 0;
    case AMQP_FIELD_KIND_U64:
        /* py-amqp's signed 'L': keep the two's complement bits. */
        if (integer_in_range(value, INT64_MIN, INT64_MAX, &number) != 0)
            return -1;
        out->value.u64 = (uint64_t)number;
        return 0;
    case AMQP_FIELD_KIND_TIMESTAMP:
        if (integer_in_range(value, 0, INT64_MAX, &number) != 0)
            return -1;
        out->value.u64 = (uint64_t)number;
        return 0;
    case AMQP_FIELD_KIND_F32:
        if (!json_is_number(value))
            return -1;
        out->value.f32 = (float)json_number_value(value);
        return 0;
    case AMQP_FIELD_KIND_F64:
        if (!json_is_number(value))
            return -1;
        out->value.f64 = json_number_value(value);
        return 0;
    case AMQP_FIELD_KIND_VOID:
        return json_is_null(value) ? 0 : -1;
    default:
        return -1;
    }
}

static int tagged_to_field(json_t *tagged, amqp_pool_t *pool,
                           amqp_field_value_t *out)
{
    if (!json_is_array(tagged) || json_array_size(tagged) != 2)
        return -1;
    const char *tag = json_string_value(json_array_get(tagged, 0));
    json_t *value = json_array_get(tagged, 1);
    if (tag == NULL || strlen(tag) != 1)
        return -1;
    switch (tag[0]) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        out->kind = (uint8_t)tag[0];
        return string_to_bytes(value, pool, &out->value.bytes);
    case AMQP_FIELD_KIND_ARRAY:
        out->kind = AMQP_FIELD_KIND_ARRAY;
        return tagged_to_array(value, pool, &out->value.array);
    case AMQP_FIELD_KIND_TABLE:
        out->kind = AMQP_FIELD_KIND_TABLE;
        return golden_table_build(value, pool, &out->value.table);
    default:
        return scalar_to_field(tag[0], value, out);
    }
}

int golden_table_build(json_t *tagged, amqp_pool_t *pool, amqp_table_t *out)
{
    out->num_entries = 0;
    out->entries = NULL;
    if (!json_is_object(tagged))
        return -1;
    out->entries =
        pool_alloc_array(pool, json_object_size(tagged), sizeof *out->entries);
    if (out->entries == NULL)
        return -1;
    const char *key;
    json_t *item;
    json_object_foreach(tagged, key, item) {
        amqp_table_entry_t *entry = &out->entries[out->num_entries];
        size_t key_len = strlen(key);
        entry->key = amqp_empty_bytes;
        if (key_len > 0) {
            amqp_pool_alloc_bytes(pool, key_len, &entry->key);
            if (entry->key.bytes == NULL)
                return -1;
            memcpy(entry->key.bytes, key, key_len);
        }
        if (tagged_to_field(item, pool, &entry->value) != 0)
            return -1;
        out->num_entries++;
    }
    return 0;
}

/* ---- messages ----------------------------------------------------------- */

static const char *property_string(json_t *properties, const char *key)
{
    return json_string_value(json_object_get(properties, key));
}

/* Fills `out` from one message object (a golden file or a malformed case),
 * taking over the reference to `document`. */
static int message_from_document(json_t *document, const char *name,
                                 golden_message_t *out, char *error,
                                 size_t error_len)
{
    memset(out, 0, sizeof *out);
    out->document = document;
    out->name = strdup(name);
    out->expected = json_string_value(json_object_get(document, "expected"));

    json_t *properties = json_object_get(document, "properties");
    json_t *tagged = json_object_get(document, "headers");
    const char *body_b64 =
        json_string_value(json_object_get(document, "body_b64"));
    if (!json_is_object(properties) || !json_is_object(tagged) ||
        body_b64 == NULL)
        return set_error(error, error_len,
                         "%s: properties, headers or body_b64 is missing",
                         name);

    out->headers = untag_table(tagged);
    if (out->headers == NULL)
        return set_error(error, error_len,
                         "%s: a header has an unknown type tag", name);
    if (golden_base64_decode(body_b64, &out->body, &out->body_len) != 0)
        return set_error(error, error_len, "%s: body_b64 is not base64", name);

    json_t *priority = json_object_get(properties, "priority");
    out->wire.content_type = property_string(properties, "content_type");
    out->wire.content_encoding =
        property_string(properties, "content_encoding");
    out->wire.correlation_id = property_string(properties, "correlation_id");
    out->wire.reply_to = property_string(properties, "reply_to");
    out->wire.priority =
        json_is_integer(priority) ? (int)json_integer_value(priority) : -1;
    out->wire.headers = out->headers;
    out->wire.body = out->body;
    out->wire.body_len = out->body_len;
    return 0;
}

int golden_message_load(const char *name, golden_message_t *out, char *error,
                        size_t error_len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.json", GOLDEN_DIR, name);
    json_error_t json_error;
    json_t *document = json_load_file(path, 0, &json_error);
    if (document == NULL) {
        memset(out, 0, sizeof *out);
        return set_error(error, error_len, "cannot read %s", path);
    }
    return message_from_document(document, name, out, error, error_len);
}

void golden_message_free(golden_message_t *msg)
{
    free(msg->name);
    free(msg->body);
    json_decref(msg->headers);
    json_decref(msg->document);
    memset(msg, 0, sizeof *msg);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **golden_names_list(size_t *count)
{
    *count = 0;
    DIR *dir = opendir(GOLDEN_DIR);
    if (dir == NULL)
        return NULL;

    char **names = NULL;
    size_t cap = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        size_t len = strlen(entry->d_name);
        if (len <= 5 || strcmp(entry->d_name + len - 5, ".json") != 0)
            continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 32;
            char **grown = realloc(names, cap * sizeof *grown);
            if (grown == NULL)
                break;
            names = grown;
        }
        names[(*count)++] = strndup(entry->d_name, len - 5);
    }
    closedir(dir);
    if (names != NULL)
        qsort(names, *count, sizeof *names, compare_names);
    return names;
}

void golden_names_free(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

int golden_cases_load(golden_message_t **cases, size_t *count, char *error,
                      size_t error_len)
{
    *cases = NULL;
    *count = 0;
    json_error_t json_error;
    json_t *list = json_load_file(MALFORMED_PATH, 0, &json_error);
    if (!json_is_array(list)) {
        json_decref(list);
        return set_error(error, error_len, "cannot read %s", MALFORMED_PATH);
    }

    size_t size = json_array_size(list);
    golden_message_t *loaded = calloc(size ? size : 1, sizeof *loaded);
    int status = 0;
    for (size_t i = 0; i < size && status == 0; i++) {
        json_t *item = json_array_get(list, i);
        const char *name = json_string_value(json_object_get(item, "name"));
        status =
            message_from_document(json_incref(item), name ? name : "(unnamed)",
                                  &loaded[i], error, error_len);
        *count = i + 1;
    }
    json_decref(list);
    *cases = loaded;
    return status;
}

void golden_cases_free(golden_message_t *cases, size_t count)
{
    for (size_t i = 0; i < count; i++)
        golden_message_free(&cases[i]);
    free(cases);
}

/* Inflates a zlib stream with zlib's own loop, growing the output. */
static unsigned char *inflate_body(const unsigned char *in, size_t in_len,
                                   size_t *out_len)
{
    size_t cap = in_len * 8 + 256;
    for (int attempt = 0; attempt < 16; attempt++, cap *= 2) {
        unsigned char *buffer = malloc(cap + 1);
        uLongf produced = (uLongf)cap;
        int rc = uncompress(buffer, &produced, in, (uLong)in_len);
        if (rc == Z_OK) {
            buffer[produced] = '\0';
            *out_len = produced;
            return buffer;
        }
        free(buffer);
        if (rc != Z_BUF_ERROR)
            return NULL;
    }
    return NULL;
}

json_t *golden_body_json(const golden_message_t *msg)
{
    const unsigned char *bytes = msg->body;
    size_t len = msg->body_len;
    unsigned char *inflated = NULL;
    if (json_object_get(msg->headers, "compression") != NULL) {
        inflated = inflate_body(msg->body, msg->body_len, &len);
        if (inflated == NULL)
            return NULL;
        bytes = inflated;
    }
    json_error_t json_error;
    json_t *body =
        json_loadb((const char *)bytes, len, JSON_DECODE_ANY, &json_error);
    free(inflated);
    return body;
}
