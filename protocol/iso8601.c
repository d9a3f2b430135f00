/* ISO-8601 date-times as Celery writes and reads them. */
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "protocol.h"

/* Days from 1970-01-01 to the given civil date (proleptic Gregorian). */
static long days_from_civil(long year, unsigned month, unsigned day)
{
    year -= month <= 2;
    long era = (year >= 0 ? year : year - 399) / 400;
    unsigned yoe = (unsigned)(year - era * 400);
    unsigned doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long)doe - 719468;
}

static void civil_from_days(long z, int *year, int *month, int *day)
{
    z += 719468;
    long era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long y = (long)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    *year = (int)(y + (m <= 2));
    *month = (int)m;
    *day = (int)d;
}

static long days_in_month(long year, long month)
{
    static const int DAYS[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : DAYS[month - 1];
}

/* Reads exactly `count` digits. Returns -1 when they are not there. */
static long read_digits(const char **cursor, int count)
{
    long value = 0;
    for (int i = 0; i < count; i++) {
        if (!isdigit((unsigned char)(*cursor)[i]))
            return -1;
        value = value * 10 + ((*cursor)[i] - '0');
    }
    *cursor += count;
    return value;
}

static int read_offset(const char **cursor, long *offset_seconds)
{
    const char *p = *cursor;
    *offset_seconds = 0;
    if (*p == '\0')
        return 0;
    if (*p == 'Z' || *p == 'z') {
        *cursor = p + 1;
        return 0;
    }
    if (*p != '+' && *p != '-')
        return CEL_EINVAL;
    int sign = *p == '-' ? -1 : 1;
    p++;
    long hours = read_digits(&p, 2);
    long minutes = 0;
    if (hours < 0 || hours > 23)
        return CEL_EINVAL;
    if (*p == ':')
        p++;
    if (isdigit((unsigned char)*p)) {
        minutes = read_digits(&p, 2);
        if (minutes < 0 || minutes > 59)
            return CEL_EINVAL;
    }
    *offset_seconds = sign * (hours * 3600 + minutes * 60);
    *cursor = p;
    return 0;
}

static int read_time(const char **cursor, double *seconds_of_day)
{
    const char *p = *cursor;
    long hour = read_digits(&p, 2);
    if (hour < 0 || hour > 23 || *p++ != ':')
        return CEL_EINVAL;
    long minute = read_digits(&p, 2);
    if (minute < 0 || minute > 59)
        return CEL_EINVAL;
    long second = 0;
    double fraction = 0.0;
    if (*p == ':') {
        p++;
        second = read_digits(&p, 2);
        if (second < 0 || second > 60)
            return CEL_EINVAL;
        if (*p == '.' || *p == ',') {
            p++;
            double scale = 0.1;
            if (!isdigit((unsigned char)*p))
                return CEL_EINVAL;
            while (isdigit((unsigned char)*p)) {
                fraction += (*p - '0') * scale;
                scale /= 10;
                p++;
            }
        }
    }
    *seconds_of_day = (double)(hour * 3600 + minute * 60 + second) + fraction;
    *cursor = p;
    return 0;
}

int cel__iso8601_parse(const char *text, double *epoch)
{
    if (text == NULL)
        return CEL_EINVAL;
    const char *p = text;
    long year = read_digits(&p, 4);
    if (year < 0 || *p++ != '-')
        return CEL_EINVAL;
    long month = read_digits(&p, 2);
    if (month < 1 || month > 12 || *p++ != '-')
        return CEL_EINVAL;
    long day = read_digits(&p, 2);
    if (day < 1 || day > days_in_month(year, month))
        return CEL_EINVAL;

    double seconds_of_day = 0.0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (read_time(&p, &seconds_of_day) != 0)
            return CEL_EINVAL;
    }

    long offset = 0;
    if (read_offset(&p, &offset) != 0 || *p != '\0')
        return CEL_EINVAL;

    long days = days_from_civil(year, (unsigned)month, (unsigned)day);
    *epoch = (double)days * 86400.0 + seconds_of_day - (double)offset;
    return 0;
}

int cel__iso8601_format(double epoch, char *buf, size_t buf_len)
{
    if (!isfinite(epoch) || buf_len < 33)
        return CEL_EINVAL;
    double whole = floor(epoch);
    long micros = lround((epoch - whole) * 1e6);
    if (micros >= 1000000) {
        whole += 1;
        micros -= 1000000;
    }
    long seconds = (long)whole;
    long days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
    long rest = seconds - days * 86400;
    int year, month, day;
    civil_from_days(days, &year, &month, &day);
    int n;
    if (micros == 0)
        n = snprintf(buf, buf_len, "%04d-%02d-%02dT%02ld:%02ld:%02ld+00:00",
                     year, month, day, rest / 3600, rest / 60 % 60, rest % 60);
    else
        n = snprintf(
            buf, buf_len, "%04d-%02d-%02dT%02ld:%02ld:%02ld.%06ld+00:00", year,
            month, day, rest / 3600, rest / 60 % 60, rest % 60, micros);
    return n > 0 && (size_t)n < buf_len ? 0 : CEL_EINVAL;
}
