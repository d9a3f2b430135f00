/* AMQP field tables to JSON and back, typed the way py-amqp expects. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"

#define MAX_TABLE_DEPTH 32

/* True when every byte is below 0x80, so the text is valid UTF-8 without
 * jansson checking it again. Celery's header keys and most values are. */
static bool is_ascii(const void *bytes, size_t len)
{
    const unsigned char *p = bytes;
    uint64_t any = 0;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word;
        memcpy(&word, p + i, 8);
        any |= word;
    }
    for (; i < len; i++)
        any |= p[i];
    return (any & UINT64_C(0x8080808080808080)) == 0;
}

static int value_to_json(const amqp_field_value_t *value, int depth,
                         json_t **out);

/* True when a key has a NUL byte. jansson 2.14 stores such a key, but
 * json_deep_copy cuts it at the NUL and a prefork child's parser rejects
 * it, so neither decode path takes it. */
static bool key_has_nul(amqp_bytes_t key)
{
    return key.len > 0 && memchr(key.bytes, '\0', key.len) != NULL;
}

static int table_to_object(const amqp_table_t *table, int depth, json_t **out)
{
    json_t *object = json_object();
    if (object == NULL)
        return CEL_ENOMEM;
    for (int i = 0; i < table->num_entries; i++) {
        const amqp_table_entry_t *entry = &table->entries[i];
        /* A short string: at most 255 bytes. */
        const char *key = entry->key.len ? entry->key.bytes : "";
        size_t len = entry->key.len;
        if (key_has_nul(entry->key)) {
            json_decref(object);
            return CEL_EINVALTASK;
        }
        json_t *item;
        int status = value_to_json(&entry->value, depth + 1, &item);
        int set = -1;
        if (status == CEL_OK)
            set = is_ascii(key, len)
                      ? json_object_setn_new_nocheck(object, key, len, item)
                      : json_object_setn_new(object, key, len, item);
        if (status != CEL_OK || set != 0) {
            json_decref(object);
            return status != CEL_OK ? status : CEL_EINVALTASK;
        }
    }
    *out = object;
    return CEL_OK;
}

static int array_to_json(const amqp_array_t *array, int depth, json_t **out)
{
    json_t *list = json_array();
    if (list == NULL)
        return CEL_ENOMEM;
    for (int i = 0; i < array->num_entries; i++) {
        json_t *item;
        int status = value_to_json(&array->entries[i], depth + 1, &item);
        if (status != CEL_OK) {
            json_decref(list);
            return status;
        }
        json_array_append_new(list, item);
    }
    *out = list;
    return CEL_OK;
}

static double decimal_value(amqp_decimal_t decimal)
{
    double value = (double)(int32_t)decimal.value;
    for (unsigned i = 0; i < decimal.decimals; i++)
        value /= 10.0;
    return value;
}

/* Reads an integer kind or a timestamp. Returns false for other kinds. */
static bool integer_value(const amqp_field_value_t *v, long long *out)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
        *out = v->value.i8;
        return true;
    case AMQP_FIELD_KIND_U8:
        *out = v->value.u8;
        return true;
    case AMQP_FIELD_KIND_I16:
        *out = v->value.i16;
        return true;
    case AMQP_FIELD_KIND_U16:
        *out = v->value.u16;
        return true;
    case AMQP_FIELD_KIND_I32:
        *out = v->value.i32;
        return true;
    case AMQP_FIELD_KIND_U32:
        *out = v->value.u32;
        return true;
    case AMQP_FIELD_KIND_I64:
        *out = v->value.i64;
        return true;
    case AMQP_FIELD_KIND_U64:
        /* py-amqp writes Python ints beyond 32 bits as signed 64-bit under
         * tag 'L', which rabbitmq-c names U64: read the bits back signed. */
        *out = (int64_t)v->value.u64;
        return true;
    case AMQP_FIELD_KIND_TIMESTAMP:
        *out = (long long)v->value.u64;
        return true;
    default:
        return false;
    }
}

/* Reads a float or a decimal. Returns false for other kinds. */
static bool real_value(const amqp_field_value_t *v, double *out)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_F32:
        *out = v->value.f32;
        return true;
    case AMQP_FIELD_KIND_F64:
        *out = v->value.f64;
        return true;
    case AMQP_FIELD_KIND_DECIMAL:
        *out = decimal_value(v->value.decimal);
        return true;
    default:
        return false;
    }
}

static int value_to_json(const amqp_field_value_t *value, int depth,
                         json_t **out)
{
    if (depth > MAX_TABLE_DEPTH)
        return CEL_EINVALTASK;
    const amqp_field_value_t *v = value;
    long long integer;
    double real;
    if (integer_value(v, &integer)) {
        *out = json_integer(integer);
        return *out ? CEL_OK : CEL_ENOMEM;
    }
    if (real_value(v, &real)) {
        if (!isfinite(real))
            return CEL_EINVALTASK; /* JSON has no NaN or infinity */
        *out = json_real(real);
        return *out ? CEL_OK : CEL_ENOMEM;
    }
    switch (v->kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
        *out = json_boolean(v->value.boolean);
        break;
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        /* An empty string may come with a NULL pointer. */
        if (v->value.bytes.len == 0)
            *out = json_string("");
        else if (is_ascii(v->value.bytes.bytes, v->value.bytes.len))
            *out =
                json_stringn_nocheck(v->value.bytes.bytes, v->value.bytes.len);
        else
            *out = json_stringn(v->value.bytes.bytes, v->value.bytes.len);
        if (*out == NULL)
            return CEL_EINVALTASK; /* not UTF-8 */
        return CEL_OK;
    case AMQP_FIELD_KIND_VOID:
        *out = json_null();
        break;
    case AMQP_FIELD_KIND_ARRAY:
        return array_to_json(&v->value.array, depth, out);
    case AMQP_FIELD_KIND_TABLE:
        return table_to_object(&v->value.table, depth, out);
    default:
        return CEL_EINVALTASK;
    }
    return *out ? CEL_OK : CEL_ENOMEM;
}

int cel__table_to_json(const amqp_table_t *table, size_t max_headers,
                       json_t **out, char *why, size_t why_len)
{
    *out = NULL;
    if ((size_t)table->num_entries > max_headers) {
        snprintf(why, why_len,
                 "the message has %d headers, over the cap of %zu",
                 table->num_entries, max_headers);
        return CEL_ETOOMANY;
    }
    int status = table_to_object(table, 0, out);
    if (status == CEL_EINVALTASK)
        snprintf(why, why_len,
                 "a header holds a value JSON cannot carry (text that is "
                 "not UTF-8, a key with a NUL byte, a NaN or infinite "
                 "float, or nesting deeper than %d)",
                 MAX_TABLE_DEPTH);
    else if (status == CEL_ENOMEM)
        snprintf(why, why_len, "out of memory while reading the headers");
    return status;
}

static bool table_is_plain(const amqp_table_t *table, int depth);

/* True when value_to_json converts the value without failing and without
 * a UTF-8 check: its text is ASCII, its floats are finite, its keys have
 * no NUL byte, and it nests no deeper than MAX_TABLE_DEPTH. The depths
 * follow value_to_json's. */
static bool value_is_plain(const amqp_field_value_t *value, int depth)
{
    if (depth > MAX_TABLE_DEPTH)
        return false;
    long long integer;
    double real;
    if (integer_value(value, &integer))
        return true;
    if (real_value(value, &real))
        return isfinite(real);
    switch (value->kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
    case AMQP_FIELD_KIND_VOID:
        return true;
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        return is_ascii(value->value.bytes.bytes, value->value.bytes.len);
    case AMQP_FIELD_KIND_ARRAY:
        for (int i = 0; i < value->value.array.num_entries; i++)
            if (!value_is_plain(&value->value.array.entries[i], depth + 1))
                return false;
        return true;
    case AMQP_FIELD_KIND_TABLE:
        return table_is_plain(&value->value.table, depth);
    default:
        return false;
    }
}

static bool table_is_plain(const amqp_table_t *table, int depth)
{
    for (int i = 0; i < table->num_entries; i++) {
        const amqp_table_entry_t *entry = &table->entries[i];
        if (!is_ascii(entry->key.bytes, entry->key.len) ||
            key_has_nul(entry->key) ||
            !value_is_plain(&entry->value, depth + 1))
            return false;
    }
    return true;
}

/* The decoder's view of a plain value, with the integer and real values
 * that value_to_json would give it. */
static cel__value_t field_value(const amqp_field_value_t *value)
{
    cel__value_t out = {.kind = CEL__VALUE_OTHER};
    if (integer_value(value, &out.integer)) {
        out.kind = CEL__VALUE_INTEGER;
        return out;
    }
    if (real_value(value, &out.real)) {
        out.kind = CEL__VALUE_REAL;
        return out;
    }
    switch (value->kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
        if (value->value.boolean)
            out.kind = CEL__VALUE_TRUE;
        break;
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        out.kind = CEL__VALUE_TEXT;
        out.text = value->value.bytes.bytes;
        out.len = value->value.bytes.len;
        break;
    case AMQP_FIELD_KIND_VOID:
        out.kind = CEL__VALUE_NULL;
        break;
    case AMQP_FIELD_KIND_ARRAY:
        if (value->value.array.num_entries == 2)
            out.kind = CEL__VALUE_PAIR;
        break;
    default:
        break;
    }
    return out;
}

static bool key_is(amqp_bytes_t key, const char *name, size_t len)
{
    return key.len == len && memcmp(key.bytes, name, len) == 0;
}

/* Returns the decoder field named by `key`, or CEL__FIELD_COUNT. The
 * switch picks the fields whose names have the key's length, so a header
 * is compared with at most three names. */
static cel__task_field_t task_field(amqp_bytes_t key)
{
    cel__task_field_t candidates[3] = {CEL__FIELD_COUNT, CEL__FIELD_COUNT,
                                       CEL__FIELD_COUNT};
    switch (key.len) {
    case 2:
        candidates[0] = CEL__FIELD_ID;
        break;
    case 3:
        candidates[0] = CEL__FIELD_ETA;
        break;
    case 4:
        candidates[0] = CEL__FIELD_TASK;
        break;
    case 5:
        candidates[0] = CEL__FIELD_GROUP;
        break;
    case 6:
        candidates[0] = CEL__FIELD_SHADOW;
        candidates[1] = CEL__FIELD_ORIGIN;
        break;
    case 7:
        candidates[0] = CEL__FIELD_ROOT_ID;
        candidates[1] = CEL__FIELD_EXPIRES;
        candidates[2] = CEL__FIELD_RETRIES;
        break;
    case 8:
        candidates[0] = CEL__FIELD_ARGSREPR;
        break;
    case 9:
        candidates[0] = CEL__FIELD_PARENT_ID;
        candidates[1] = CEL__FIELD_TIMELIMIT;
        break;
    case 10:
        candidates[0] = CEL__FIELD_KWARGSREPR;
        break;
    case 11:
        candidates[0] = CEL__FIELD_GROUP_INDEX;
        break;
    case 13:
        candidates[0] = CEL__FIELD_IGNORE_RESULT;
        break;
    default:
        return CEL__FIELD_COUNT;
    }
    for (int i = 0; i < 3 && candidates[i] != CEL__FIELD_COUNT; i++) {
        const cel__field_name_t *name = &cel__task_field_names[candidates[i]];
        if (key_is(key, name->text, name->len))
            return candidates[i];
    }
    return CEL__FIELD_COUNT;
}

bool cel__table_read_fields(const amqp_table_t *table, size_t max_headers,
                            cel__task_fields_t *out)
{
    if ((size_t)table->num_entries > max_headers ||
        !table_is_plain(table, 0))
        return false;
    memset(out, 0, sizeof *out); /* every field CEL__VALUE_ABSENT */
    for (int i = 0; i < table->num_entries; i++) {
        const amqp_table_entry_t *entry = &table->entries[i];
        if (key_is(entry->key, "compression", strlen("compression")))
            return false;
        cel__task_field_t field = task_field(entry->key);
        if (field == CEL__FIELD_COUNT)
            continue;
        /* A later entry with the same key replaces an earlier one, as in
         * the JSON object. */
        out->value[field] = field_value(&entry->value);
        if (field == CEL__FIELD_TIMELIMIT &&
            out->value[field].kind == CEL__VALUE_PAIR)
            for (int j = 0; j < 2; j++)
                out->timelimit[j] =
                    field_value(&entry->value.value.array.entries[j]);
    }
    return out->value[CEL__FIELD_TASK].kind == CEL__VALUE_TEXT;
}

json_t *cel__request_headers(const cel__request_t *request)
{
    if (request->msg.headers != NULL || request->properties == NULL)
        return json_incref(request->msg.headers);
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_bytes_t encoded = {request->properties_len, request->properties};
    void *decoded = NULL;
    json_t *headers = NULL;
    char why[160];
    /* The same bytes were decoded and checked when the message came. */
    if (amqp_decode_properties(AMQP_BASIC_CLASS, &pool, encoded, &decoded) ==
        AMQP_STATUS_OK) {
        const amqp_basic_properties_t *props = decoded;
        if (props->_flags & AMQP_BASIC_HEADERS_FLAG)
            cel__table_to_json(&props->headers, SIZE_MAX, &headers, why,
                               sizeof why);
    }
    empty_amqp_pool(&pool);
    return headers;
}

static amqp_bytes_t pool_bytes(amqp_pool_t *pool, const char *text, size_t len)
{
    amqp_bytes_t bytes;
    amqp_pool_alloc_bytes(pool, len, &bytes);
    if (bytes.bytes != NULL)
        memcpy(bytes.bytes, text, len);
    return bytes;
}

static int json_to_value(json_t *value, amqp_pool_t *pool,
                         amqp_field_value_t *out);

static int json_to_array(json_t *list, amqp_pool_t *pool, amqp_array_t *out)
{
    size_t count = json_array_size(list);
    out->num_entries = (int)count;
    out->entries = amqp_pool_alloc(pool, sizeof *out->entries * (count + 1));
    if (out->entries == NULL)
        return CEL_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        int status =
            json_to_value(json_array_get(list, i), pool, &out->entries[i]);
        if (status != CEL_OK)
            return status;
    }
    return CEL_OK;
}

static int json_to_value(json_t *value, amqp_pool_t *pool,
                         amqp_field_value_t *out)
{
    switch (json_typeof(value)) {
    case JSON_STRING:
        out->kind = AMQP_FIELD_KIND_UTF8;
        out->value.bytes = pool_bytes(pool, json_string_value(value),
                                      json_string_length(value));
        return out->value.bytes.bytes || json_string_length(value) == 0
                   ? CEL_OK
                   : CEL_ENOMEM;
    case JSON_INTEGER: {
        json_int_t number = json_integer_value(value);
        if (number >= INT32_MIN && number <= INT32_MAX) {
            out->kind = AMQP_FIELD_KIND_I32;
            out->value.i32 = (int32_t)number;
        } else {
            /* Tag 'L', which py-amqp reads as signed 64-bit. */
            out->kind = AMQP_FIELD_KIND_U64;
            out->value.u64 = (uint64_t)number;
        }
        return CEL_OK;
    }
    case JSON_REAL:
        out->kind = AMQP_FIELD_KIND_F64;
        out->value.f64 = json_real_value(value);
        return CEL_OK;
    case JSON_TRUE:
    case JSON_FALSE:
        out->kind = AMQP_FIELD_KIND_BOOLEAN;
        out->value.boolean = json_is_true(value);
        return CEL_OK;
    case JSON_NULL:
        out->kind = AMQP_FIELD_KIND_VOID;
        return CEL_OK;
    case JSON_ARRAY:
        out->kind = AMQP_FIELD_KIND_ARRAY;
        return json_to_array(value, pool, &out->value.array);
    case JSON_OBJECT:
        out->kind = AMQP_FIELD_KIND_TABLE;
        return cel__json_to_table(value, pool, &out->value.table);
    }
    return CEL_EINVAL;
}

int cel__json_to_table(json_t *object, amqp_pool_t *pool, amqp_table_t *out)
{
    size_t count = json_object_size(object);
    out->num_entries = 0;
    out->entries = amqp_pool_alloc(pool, sizeof *out->entries * (count + 1));
    if (out->entries == NULL)
        return CEL_ENOMEM;
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value) {
        amqp_table_entry_t *entry = &out->entries[out->num_entries];
        entry->key = pool_bytes(pool, key, strlen(key));
        int status = json_to_value(value, pool, &entry->value);
        if (status != CEL_OK)
            return status;
        out->num_entries++;
    }
    return CEL_OK;
}
