/*
 * Fuzzes the task message decoder. The input is the header table as JSON,
 * a newline, then the body; with no newline it is all body, sent once with
 * v2-style headers and once with none.
 */
#include <stdint.h>
#include <string.h>

#include "protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode(json_t *headers, const uint8_t *body, size_t body_len)
{
    cel__limits_t limits;
    cel__limits_default(&limits);
    limits.max_body = 1 << 20;
    cel__wire_message_t wire = {
        .content_type = "application/json",
        .reply_to = "reply",
        .correlation_id = "fuzz-id",
        .priority = -1,
        .headers = headers,
        .body = body,
        .body_len = body_len,
    };
    cel__task_message_t msg;
    char why[256];
    if (cel__task_decode(&wire, &limits, &msg, why, sizeof why) == CEL_OK) {
        json_t *encoded_headers = NULL;
        char *encoded_body = NULL;
        size_t encoded_len = 0;
        cel__task_encode_v2(&msg, &encoded_headers, &encoded_body,
                            &encoded_len);
        json_decref(encoded_headers);
        free(encoded_body);
    }
    cel__task_message_clear(&msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *newline = memchr(data, '\n', size);
    if (newline != NULL) {
        size_t header_len = (size_t)(newline - data);
        json_t *headers = json_loadb((const char *)data, header_len, 0, NULL);
        decode(headers, newline + 1, size - header_len - 1);
        json_decref(headers);
        return 0;
    }
    json_t *v2 = json_pack("{s:s, s:s}", "task", "tasks.add", "id", "x");
    decode(v2, data, size);
    decode(NULL, data, size);
    json_decref(v2);
    return 0;
}
