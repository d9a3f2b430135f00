/* Fuzzes the small decoders: ISO-8601 times, zlib bodies, Python repr. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    double epoch;
    char formatted[40];
    if (cel__iso8601_parse(text, &epoch) == 0)
        cel__iso8601_format(epoch, formatted, sizeof formatted);

    void *inflated = NULL;
    size_t inflated_len = 0;
    cel__decompress("application/x-gzip", data, size, 1 << 20, &inflated,
                    &inflated_len);
    free(inflated);

    json_t *value = json_loadb(text, size, JSON_DECODE_ANY, NULL);
    if (value != NULL) {
        free(cel__pyrepr(value, 1024, true));
        free(cel__pyrepr(value, 64, false));
    }
    json_decref(value);
    free(text);
    return 0;
}
