/* Parsing of redis:// and rediss:// result backend URLs, against what
 * kombu's url_to_parts() and Celery 5.2's RedisBackend accept. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "redis.h"

static cel__redis_config_t parse_ok(const char *url)
{
    cel__redis_config_t config;
    char error[CEL__ERROR_LEN] = "";
    int status = cel__redis_url_parse(url, &config, error);
    ck_assert_msg(status == CEL_OK, "%s: %s", url, error);
    return config;
}

/* Returns the error text of a URL that must be rejected. */
static const char *parse_error(const char *url)
{
    static char error[CEL__ERROR_LEN];
    cel__redis_config_t config;
    error[0] = '\0';
    int status = cel__redis_url_parse(url, &config, error);
    ck_assert_msg(status == CEL_EINVAL, "%s was accepted", url);
    ck_assert_ptr_null(config.host);
    ck_assert_msg(error[0] != '\0', "%s: no reason given", url);
    return error;
}

START_TEST(test_url_defaults_to_localhost_6379_db_0)
{
    cel__redis_config_t config = parse_ok("redis://");
    ck_assert_str_eq(config.host, "localhost");
    ck_assert_int_eq(config.port, 6379);
    ck_assert_int_eq(config.db, 0);
    ck_assert_ptr_null(config.username);
    ck_assert_ptr_null(config.password);
    ck_assert(!config.tls);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_host_only)
{
    cel__redis_config_t config = parse_ok("redis://localhost");
    ck_assert_str_eq(config.host, "localhost");
    ck_assert_int_eq(config.port, 6379);
    ck_assert_int_eq(config.db, 0);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_host_port_db)
{
    cel__redis_config_t config = parse_ok("redis://127.0.0.1:6391/9");
    ck_assert_str_eq(config.host, "127.0.0.1");
    ck_assert_int_eq(config.port, 6391);
    ck_assert_int_eq(config.db, 9);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_trailing_slash_is_db_0)
{
    cel__redis_config_t config = parse_ok("redis://host:1234/");
    ck_assert_str_eq(config.host, "host");
    ck_assert_int_eq(config.port, 1234);
    ck_assert_int_eq(config.db, 0);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_empty_host_with_db)
{
    cel__redis_config_t config = parse_ok("redis:///3");
    ck_assert_str_eq(config.host, "localhost");
    ck_assert_int_eq(config.db, 3);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_password_only)
{
    cel__redis_config_t config = parse_ok("redis://:secret@host/2");
    ck_assert_ptr_null(config.username);
    ck_assert_str_eq(config.password, "secret");
    ck_assert_str_eq(config.host, "host");
    ck_assert_int_eq(config.db, 2);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_user_and_password)
{
    cel__redis_config_t config = parse_ok("redis://alice:secret@host:7000");
    ck_assert_str_eq(config.username, "alice");
    ck_assert_str_eq(config.password, "secret");
    ck_assert_int_eq(config.port, 7000);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_user_without_password)
{
    cel__redis_config_t config = parse_ok("redis://alice@host");
    ck_assert_str_eq(config.username, "alice");
    ck_assert_ptr_null(config.password);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_password_is_percent_decoded)
{
    cel__redis_config_t config = parse_ok("redis://:p%40ss%3Aw%2Fd%25@host");
    ck_assert_str_eq(config.password, "p@ss:w/d%");
    cel__redis_config_clear(&config);
}
END_TEST

/* urlsplit() ends the user info at the last @, so an unencoded @ in the
 * password still works. */
START_TEST(test_url_last_at_ends_userinfo)
{
    cel__redis_config_t config = parse_ok("redis://:p@ss@host:6380");
    ck_assert_str_eq(config.password, "p@ss");
    ck_assert_str_eq(config.host, "host");
    ck_assert_int_eq(config.port, 6380);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_bad_percent_escape_is_kept)
{
    cel__redis_config_t config = parse_ok("redis://:a%zz%4@host");
    ck_assert_str_eq(config.password, "a%zz%4");
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_empty_port_is_default)
{
    cel__redis_config_t config = parse_ok("redis://host:/5");
    ck_assert_int_eq(config.port, 6379);
    ck_assert_int_eq(config.db, 5);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_ipv6_host)
{
    cel__redis_config_t config = parse_ok("redis://[::1]:6390/1");
    ck_assert_str_eq(config.host, "::1");
    ck_assert_int_eq(config.port, 6390);
    ck_assert_int_eq(config.db, 1);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_url_socket_timeouts)
{
    cel__redis_config_t config = parse_ok(
        "redis://host/0?socket_timeout=2.5&socket_connect_timeout=0.5");
    ck_assert_double_eq(config.socket_timeout, 2.5);
    ck_assert_double_eq(config.socket_connect_timeout, 0.5);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_rediss_with_every_ssl_parameter)
{
    cel__redis_config_t config = parse_ok(
        "rediss://:pw@host:6380/4?ssl_cert_reqs=required&ssl_ca_certs=%2Ftmp%"
        "2Fca.pem&ssl_certfile=/tmp/c.pem&ssl_keyfile=/tmp/k.pem"
        "&ssl_check_hostname=true");
    ck_assert(config.tls);
    ck_assert_int_eq(config.cert_reqs, CEL__REDIS_CERT_REQUIRED);
    ck_assert_str_eq(config.ca_certs, "/tmp/ca.pem");
    ck_assert_str_eq(config.certfile, "/tmp/c.pem");
    ck_assert_str_eq(config.keyfile, "/tmp/k.pem");
    ck_assert(config.check_hostname);
    ck_assert_str_eq(config.password, "pw");
    ck_assert_int_eq(config.port, 6380);
    ck_assert_int_eq(config.db, 4);
    cel__redis_config_clear(&config);
}
END_TEST

START_TEST(test_rediss_cert_reqs_names)
{
    static const struct {
        const char *value;
        cel__redis_cert_reqs_t reqs;
    } CASES[] = {
        {"required", CEL__REDIS_CERT_REQUIRED},
        {"CERT_REQUIRED", CEL__REDIS_CERT_REQUIRED},
        {"optional", CEL__REDIS_CERT_OPTIONAL},
        {"CERT_OPTIONAL", CEL__REDIS_CERT_OPTIONAL},
        {"none", CEL__REDIS_CERT_NONE},
        {"CERT_NONE", CEL__REDIS_CERT_NONE},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char url[128];
        snprintf(url, sizeof url, "rediss://host?ssl_cert_reqs=%s",
                 CASES[i].value);
        cel__redis_config_t config = parse_ok(url);
        ck_assert_msg(config.cert_reqs == CASES[i].reqs, "%s", url);
        ck_assert(config.tls);
        ck_assert(!config.check_hostname);
        cel__redis_config_clear(&config);
    }
}
END_TEST

START_TEST(test_rediss_without_cert_reqs_is_rejected)
{
    const char *error = parse_error("rediss://host:6380/0");
    ck_assert_ptr_nonnull(strstr(error, "ssl_cert_reqs"));
}
END_TEST

/* parse_qsl() drops pairs with an empty value, so this is "missing". */
START_TEST(test_rediss_empty_cert_reqs_is_rejected)
{
    const char *error = parse_error("rediss://host?ssl_cert_reqs=");
    ck_assert_ptr_nonnull(strstr(error, "ssl_cert_reqs"));
}
END_TEST

START_TEST(test_rediss_unknown_cert_reqs_is_rejected)
{
    const char *error = parse_error("rediss://host?ssl_cert_reqs=maybe");
    ck_assert_ptr_nonnull(strstr(error, "maybe"));
}
END_TEST

START_TEST(test_redis_with_ssl_parameter_is_rejected)
{
    const char *error = parse_error("redis://host?ssl_cert_reqs=none");
    ck_assert_ptr_nonnull(strstr(error, "rediss://"));
}
END_TEST

START_TEST(test_url_bad_scheme_is_rejected)
{
    const char *error = parse_error("http://:secret@host/0");
    ck_assert_ptr_nonnull(strstr(error, "'http'"));
    ck_assert_ptr_null(strstr(error, "secret"));
}
END_TEST

START_TEST(test_url_bad_ports_are_rejected)
{
    static const char *const URLS[] = {
        "redis://host:0",  "redis://host:65536",  "redis://host:abc",
        "redis://host:-1", "redis://host:123456", "redis://[::1]x:6379",
    };
    for (size_t i = 0; i < sizeof URLS / sizeof URLS[0]; i++)
        ck_assert_ptr_nonnull(strstr(parse_error(URLS[i]), "port"));
}
END_TEST

START_TEST(test_url_bad_db_is_rejected)
{
    static const char *const URLS[] = {
        "redis://host/abc",
        "redis://host/-1",
        "redis://host/1x",
        "redis://host/99999999999",
    };
    for (size_t i = 0; i < sizeof URLS / sizeof URLS[0]; i++)
        ck_assert_ptr_nonnull(strstr(parse_error(URLS[i]), "database"));
}
END_TEST

START_TEST(test_url_errors_never_show_the_password)
{
    static const char *const URLS[] = {
        "redis://:hunter2@host:bad/0",
        "redis://:hunter2@host/bad",
        "redis://:hunter2@host/0?nope=1",
        "rediss://:hunter2@host/0",
    };
    for (size_t i = 0; i < sizeof URLS / sizeof URLS[0]; i++)
        ck_assert_ptr_null(strstr(parse_error(URLS[i]), "hunter2"));
}
END_TEST

START_TEST(test_url_unclosed_ipv6_bracket_is_rejected)
{
    ck_assert_ptr_nonnull(strstr(parse_error("redis://[::1:6379"), "["));
}
END_TEST

START_TEST(test_url_unknown_query_parameter_is_rejected)
{
    const char *error = parse_error("redis://host/0?max_connections=5");
    ck_assert_ptr_nonnull(strstr(error, "max_connections"));
}
END_TEST

START_TEST(test_url_bad_timeout_is_rejected)
{
    ck_assert_ptr_nonnull(
        strstr(parse_error("redis://host?socket_timeout=0"), "socket_timeout"));
    ck_assert_ptr_nonnull(strstr(
        parse_error("redis://host?socket_connect_timeout=soon"), "seconds"));
}
END_TEST

START_TEST(test_url_null_is_rejected)
{
    parse_error(NULL);
}
END_TEST

static Suite *redis_url_suite(void)
{
    Suite *suite = suite_create("redis_url");

    TCase *forms = tcase_create("forms");
    tcase_add_test(forms, test_url_defaults_to_localhost_6379_db_0);
    tcase_add_test(forms, test_url_host_only);
    tcase_add_test(forms, test_url_host_port_db);
    tcase_add_test(forms, test_url_trailing_slash_is_db_0);
    tcase_add_test(forms, test_url_empty_host_with_db);
    tcase_add_test(forms, test_url_password_only);
    tcase_add_test(forms, test_url_user_and_password);
    tcase_add_test(forms, test_url_user_without_password);
    tcase_add_test(forms, test_url_password_is_percent_decoded);
    tcase_add_test(forms, test_url_last_at_ends_userinfo);
    tcase_add_test(forms, test_url_bad_percent_escape_is_kept);
    tcase_add_test(forms, test_url_empty_port_is_default);
    tcase_add_test(forms, test_url_ipv6_host);
    tcase_add_test(forms, test_url_socket_timeouts);
    suite_add_tcase(suite, forms);

    TCase *tls = tcase_create("tls");
    tcase_add_test(tls, test_rediss_with_every_ssl_parameter);
    tcase_add_test(tls, test_rediss_cert_reqs_names);
    tcase_add_test(tls, test_rediss_without_cert_reqs_is_rejected);
    tcase_add_test(tls, test_rediss_empty_cert_reqs_is_rejected);
    tcase_add_test(tls, test_rediss_unknown_cert_reqs_is_rejected);
    tcase_add_test(tls, test_redis_with_ssl_parameter_is_rejected);
    suite_add_tcase(suite, tls);

    TCase *invalid = tcase_create("invalid");
    tcase_add_test(invalid, test_url_bad_scheme_is_rejected);
    tcase_add_test(invalid, test_url_bad_ports_are_rejected);
    tcase_add_test(invalid, test_url_bad_db_is_rejected);
    tcase_add_test(invalid, test_url_errors_never_show_the_password);
    tcase_add_test(invalid, test_url_unclosed_ipv6_bracket_is_rejected);
    tcase_add_test(invalid, test_url_unknown_query_parameter_is_rejected);
    tcase_add_test(invalid, test_url_bad_timeout_is_rejected);
    tcase_add_test(invalid, test_url_null_is_rejected);
    suite_add_tcase(suite, invalid);

    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(redis_url_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
