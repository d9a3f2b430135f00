/*
 * Differential fuzzing of the JSON reader and writer against jansson. The
 * input is parsed by cel__json_parse and by json_loadb: both must reject
 * it, or both must accept it and build equal values. An accepted value is
 * then written by cel__json_dump, which must give the bytes of json_dumps
 * when no real is inside, and text that jansson reads back as the same
 * value in any case. A disagreement aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void disagree(const char *what)
{
    fprintf(stderr, "cel__json_parse and jansson disagree: %s\n", what);
    abort();
}

static bool contains_real(json_t *value)
{
    size_t index;
    const char *key;
    json_t *item;
    if (json_is_real(value))
        return true;
    if (json_is_array(value)) {
        json_array_foreach(value, index, item) {
            if (contains_real(item))
                return true;
        }
    }
    if (json_is_object(value)) {
        json_object_foreach(value, key, item) {
            if (contains_real(item))
                return true;
        }
    }
    return false;
}

static void check_dump(json_t *value)
{
    size_t len = 0;
    char *mine = cel__json_dump(value, &len);
    char *theirs = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (mine == NULL || theirs == NULL)
        disagree("a value that one writer cannot dump");
    if (len != strlen(mine))
        disagree("the dump length");
    if (!contains_real(value) && strcmp(mine, theirs) != 0)
        disagree("the dumped bytes");
    json_t *back =
        json_loadb(mine, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (back == NULL || !json_equal(back, value))
        disagree("the value read back from the dump");
    json_decref(back);
    free(mine);
    free(theirs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    json_error_t error;
    json_t *theirs =
        json_loadb(text, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    json_t *mine = NULL;
    char why[256];
    int status = cel__json_parse(text, size, CEL__JSON_MAX_DEPTH, &mine, why,
                                 sizeof why);

    /* jansson also counts scalars toward its depth limit of 2048, so the
     * two limits differ by one level. */
    bool depth_limited = status == CEL_ETOODEEP ||
                         (theirs == NULL &&
                          json_error_code(&error) == json_error_stack_overflow);
    /* jansson 2.14 skips a NUL byte right after a number or a literal
     * ("[3\0]" reads as [3]) because its lexer takes NUL for an empty
     * look-ahead buffer. RFC 8259 allows no NUL outside strings. */
    bool jansson_skipped_nul = theirs != NULL && status == CEL_EDECODE &&
                               strstr(why, "unexpected byte 0x00") != NULL;
    if (!depth_limited && !jansson_skipped_nul) {
        if ((status == CEL_OK) != (theirs != NULL))
            disagree(status == CEL_OK ? "only celeriac accepts the input"
                                      : "only jansson accepts the input");
        if (mine != NULL && !json_equal(mine, theirs))
            disagree("the parsed values");
        if (mine != NULL)
            check_dump(mine);
    }
    json_decref(mine);
    json_decref(theirs);
    return 0;
}
