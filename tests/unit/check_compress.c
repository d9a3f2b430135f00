/* Body compression: kombu's zlib codec, sent as application/x-gzip. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "protocol.h"

#define ZLIB_MIME "application/x-gzip"

/* Compresses with zlib itself, so decompression is tested against a
 * stream the code under test did not write. */
static unsigned char *zlib_compress(const void *in, size_t in_len,
                                    size_t *out_len)
{
    uLongf bound = compressBound((uLong)in_len);
    unsigned char *out = malloc(bound);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(compress2(out, &bound, in, (uLong)in_len, 9), Z_OK);
    *out_len = bound;
    return out;
}

START_TEST(test_compress_then_decompress_round_trips)
{
    const char *text = "[[2, 3], {}, {\"callbacks\": null, \"errbacks\": null, "
                       "\"chain\": null, \"chord\": null}]";
    void *compressed;
    size_t compressed_len;
    ck_assert_int_eq(
        cel__compress_zlib(text, strlen(text), &compressed, &compressed_len),
        CEL_OK);

    void *inflated;
    size_t inflated_len;
    ck_assert_int_eq(cel__decompress(ZLIB_MIME, compressed, compressed_len,
                                     1024, &inflated, &inflated_len),
                     CEL_OK);
    ck_assert_uint_eq(inflated_len, strlen(text));
    ck_assert_mem_eq(inflated, text, inflated_len);

    free(inflated);
    free(compressed);
}
END_TEST

START_TEST(test_compress_output_is_a_zlib_stream)
{
    const char *text = "hello hello hello hello";
    void *compressed;
    size_t compressed_len;
    ck_assert_int_eq(
        cel__compress_zlib(text, strlen(text), &compressed, &compressed_len),
        CEL_OK);

    unsigned char plain[64];
    uLongf plain_len = sizeof plain;
    ck_assert_int_eq(
        uncompress(plain, &plain_len, compressed, (uLong)compressed_len), Z_OK);
    ck_assert_uint_eq(plain_len, strlen(text));
    ck_assert_mem_eq(plain, text, plain_len);

    free(compressed);
}
END_TEST

START_TEST(test_decompress_grows_past_first_guess)
{
    /* Mostly repeated bytes deflate to a small fraction of 1 MiB, so the
     * output outgrows the first buffer, which is sized from the input. */
    size_t len = 1024 * 1024;
    unsigned char *data = malloc(len);
    srand(1);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(i % 7 == 0 ? (size_t)rand() : i / 4096);
    size_t compressed_len;
    unsigned char *compressed = zlib_compress(data, len, &compressed_len);

    void *inflated;
    size_t inflated_len;
    ck_assert_int_eq(cel__decompress(ZLIB_MIME, compressed, compressed_len, len,
                                     &inflated, &inflated_len),
                     CEL_OK);
    ck_assert_uint_eq(inflated_len, len);
    ck_assert_mem_eq(inflated, data, len);

    free(inflated);
    free(compressed);
    free(data);
}
END_TEST

START_TEST(test_decompress_empty_stream_gives_empty_body)
{
    size_t compressed_len;
    unsigned char *compressed = zlib_compress("", 0, &compressed_len);
    void *inflated;
    size_t inflated_len = 99;
    ck_assert_int_eq(cel__decompress(ZLIB_MIME, compressed, compressed_len, 16,
                                     &inflated, &inflated_len),
                     CEL_OK);
    ck_assert_uint_eq(inflated_len, 0);
    free(inflated);
    free(compressed);
}
END_TEST

START_TEST(test_decompress_other_mime_is_ecompress)
{
    static const char *const MIMES[] = {
        "application/x-bz2",
        "application/x-lzma",
        "application/x-brotli",
        "application/zstd",
        "zlib",
        "gzip",
        "application/x-gzip; q=1",
        "",
    };
    size_t compressed_len;
    unsigned char *compressed = zlib_compress("[]", 2, &compressed_len);
    for (size_t i = 0; i < sizeof MIMES / sizeof MIMES[0]; i++) {
        void *inflated = (void *)1;
        size_t inflated_len = 1;
        int status = cel__decompress(MIMES[i], compressed, compressed_len, 1024,
                                     &inflated, &inflated_len);
        ck_assert_msg(status == CEL_ECOMPRESS, "'%s': status %d", MIMES[i],
                      status);
        ck_assert_ptr_null(inflated);
        ck_assert_uint_eq(inflated_len, 0);
    }
    void *inflated;
    size_t inflated_len;
    ck_assert_int_eq(cel__decompress(NULL, compressed, compressed_len, 1024,
                                     &inflated, &inflated_len),
                     CEL_ECOMPRESS);
    free(compressed);
}
END_TEST

START_TEST(test_decompress_garbage_is_edecode)
{
    const char *garbage = "this is not zlib data";
    void *inflated = (void *)1;
    size_t inflated_len;
    ck_assert_int_eq(cel__decompress(ZLIB_MIME, garbage, strlen(garbage), 1024,
                                     &inflated, &inflated_len),
                     CEL_EDECODE);
    ck_assert_ptr_null(inflated);
}
END_TEST

START_TEST(test_decompress_empty_input_is_edecode)
{
    void *inflated = (void *)1;
    size_t inflated_len;
    ck_assert_int_eq(
        cel__decompress(ZLIB_MIME, "", 0, 1024, &inflated, &inflated_len),
        CEL_EDECODE);
    ck_assert_ptr_null(inflated);
}
END_TEST

START_TEST(test_decompress_truncated_stream_is_edecode)
{
    char text[4096];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i * 7 % 26);
    size_t compressed_len;
    unsigned char *compressed =
        zlib_compress(text, sizeof text, &compressed_len);

    /* Cut the checksum only, half the stream, and all but the header. */
    size_t cuts[] = {compressed_len - 1, compressed_len - 4, compressed_len / 2,
                     2};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        void *inflated = (void *)1;
        size_t inflated_len;
        int status = cel__decompress(ZLIB_MIME, compressed, cuts[i],
                                     sizeof text, &inflated, &inflated_len);
        ck_assert_msg(status == CEL_EDECODE, "cut at %zu of %zu: status %d",
                      cuts[i], compressed_len, status);
        ck_assert_ptr_null(inflated);
    }
    free(compressed);
}
END_TEST

START_TEST(test_decompress_corrupt_checksum_is_edecode)
{
    const char *text = "[[2, 3], {}, null]";
    size_t compressed_len;
    unsigned char *compressed =
        zlib_compress(text, strlen(text), &compressed_len);
    compressed[compressed_len - 1] ^= 0xFF;
    void *inflated = (void *)1;
    size_t inflated_len;
    ck_assert_int_eq(cel__decompress(ZLIB_MIME, compressed, compressed_len,
                                     1024, &inflated, &inflated_len),
                     CEL_EDECODE);
    ck_assert_ptr_null(inflated);
    free(compressed);
}
END_TEST

START_TEST(test_decompress_zip_bomb_is_etoobig)
{
    /* 64 MiB of zeros deflate to about 64 KiB. */
    size_t len = 64 * 1024 * 1024;
    unsigned char *zeros = calloc(1, len);
    ck_assert_ptr_nonnull(zeros);
    size_t compressed_len;
    unsigned char *compressed = zlib_compress(zeros, len, &compressed_len);
    free(zeros);
    ck_assert_uint_lt(compressed_len, 256 * 1024);

    void *inflated = (void *)1;
    size_t inflated_len = 1;
    ck_assert_int_eq(cel__decompress(ZLIB_MIME, compressed, compressed_len,
                                     1024 * 1024, &inflated, &inflated_len),
                     CEL_ETOOBIG);
    ck_assert_ptr_null(inflated);
    ck_assert_uint_eq(inflated_len, 0);
    free(compressed);
}
END_TEST

START_TEST(test_decompress_max_out_is_inclusive)
{
    char text[1000];
    memset(text, 'x', sizeof text);
    size_t compressed_len;
    unsigned char *compressed =
        zlib_compress(text, sizeof text, &compressed_len);

    void *inflated;
    size_t inflated_len;
    ck_assert_int_eq(cel__decompress(ZLIB_MIME, compressed, compressed_len,
                                     sizeof text, &inflated, &inflated_len),
                     CEL_OK);
    ck_assert_uint_eq(inflated_len, sizeof text);
    free(inflated);

    ck_assert_int_eq(cel__decompress(ZLIB_MIME, compressed, compressed_len,
                                     sizeof text - 1, &inflated, &inflated_len),
                     CEL_ETOOBIG);
    free(compressed);
}
END_TEST

static Suite *compress_suite(void)
{
    Suite *suite = suite_create("compress");

    TCase *round_trip = tcase_create("round_trip");
    tcase_add_test(round_trip, test_compress_then_decompress_round_trips);
    tcase_add_test(round_trip, test_compress_output_is_a_zlib_stream);
    tcase_add_test(round_trip, test_decompress_grows_past_first_guess);
    tcase_add_test(round_trip, test_decompress_empty_stream_gives_empty_body);
    suite_add_tcase(suite, round_trip);

    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_decompress_other_mime_is_ecompress);
    tcase_add_test(errors, test_decompress_garbage_is_edecode);
    tcase_add_test(errors, test_decompress_empty_input_is_edecode);
    tcase_add_test(errors, test_decompress_truncated_stream_is_edecode);
    tcase_add_test(errors, test_decompress_corrupt_checksum_is_edecode);
    suite_add_tcase(suite, errors);

    TCase *caps = tcase_create("caps");
    tcase_set_timeout(caps, 30);
    tcase_add_test(caps, test_decompress_zip_bomb_is_etoobig);
    tcase_add_test(caps, test_decompress_max_out_is_inclusive);
    suite_add_tcase(suite, caps);

    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(compress_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
