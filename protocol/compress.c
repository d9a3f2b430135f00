/* Body compression: kombu's "gzip"/"zlib" alias is a plain zlib stream. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "protocol.h"

#define ZLIB_MIME "application/x-gzip"

int cel__decompress(const char *mime, const void *in, size_t in_len,
                    size_t max_out, void **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (mime == NULL || strcmp(mime, ZLIB_MIME) != 0)
        return CEL_ECOMPRESS;

    z_stream stream;
    memset(&stream, 0, sizeof stream);
    if (inflateInit(&stream) != Z_OK)
        return CEL_ENOMEM;

    int status = CEL_OK;
    size_t capacity = in_len * 4 + 64;
    if (capacity > max_out + 1)
        capacity = max_out + 1;
    unsigned char *buffer = malloc(capacity);
    if (buffer == NULL) {
        status = CEL_ENOMEM;
        goto out;
    }

    stream.next_in = (Bytef *)in;
    stream.avail_in = (uInt)in_len;
    size_t produced = 0;
    for (;;) {
        if (produced == capacity) {
            if (capacity > max_out) {
                status = CEL_ETOOBIG;
                goto out;
            }
            size_t grown =
                capacity * 2 > max_out + 1 ? max_out + 1 : capacity * 2;
            unsigned char *bigger = realloc(buffer, grown);
            if (bigger == NULL) {
                status = CEL_ENOMEM;
                goto out;
            }
            buffer = bigger;
            capacity = grown;
        }
        stream.next_out = buffer + produced;
        stream.avail_out = (uInt)(capacity - produced);
        int rc = inflate(&stream, Z_NO_FLUSH);
        produced = capacity - stream.avail_out;
        if (rc == Z_STREAM_END)
            break;
        if (rc == Z_BUF_ERROR && stream.avail_in == 0) {
            status = CEL_EDECODE; /* truncated stream */
            goto out;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            status = rc == Z_MEM_ERROR ? CEL_ENOMEM : CEL_EDECODE;
            goto out;
        }
    }
    if (produced > max_out) {
        status = CEL_ETOOBIG;
        goto out;
    }
    *out = buffer;
    *out_len = produced;
    buffer = NULL;

out:
    inflateEnd(&stream);
    free(buffer);
    return status;
}

int cel__compress_zlib(const void *in, size_t in_len, void **out,
                       size_t *out_len)
{
    uLongf bound = compressBound((uLong)in_len);
    unsigned char *buffer = malloc(bound);
    if (buffer == NULL)
        return CEL_ENOMEM;
    if (compress2(buffer, &bound, in, (uLong)in_len, Z_DEFAULT_COMPRESSION) !=
        Z_OK) {
        free(buffer);
        return CEL_ENOMEM;
    }
    *out = buffer;
    *out_len = bound;
    return CEL_OK;
}
