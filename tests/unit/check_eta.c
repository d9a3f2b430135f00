/* The ETA heap: requests come out earliest first. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eta.h"

/* Builds a request as the worker would hold it, with owned strings so that
 * LeakSanitizer reports any that the heap fails to free. */
static cel__request_t *request_new(double eta_ts, int serial)
{
    cel__request_t *request = calloc(1, sizeof *request);
    ck_assert_ptr_nonnull(request);
    char id[32];
    snprintf(id, sizeof id, "eta-%d", serial);
    request->msg.id = strdup(id);
    request->msg.task = strdup("tasks.add");
    request->msg.eta = strdup("2026-01-02T03:04:05+00:00");
    request->msg.eta_ts = eta_ts;
    request->msg.args = json_pack("[i]", serial);
    request->msg.kwargs = json_object();
    request->exchange = strdup("");
    request->routing_key = strdup("celery");
    request->delivery_tag = (uint64_t)serial + 1;
    return request;
}

START_TEST(test_eta_empty_heap_has_nothing)
{
    cel__eta_heap_t heap = {0};
    ck_assert_ptr_null(cel__eta_peek(&heap));
    ck_assert_ptr_null(cel__eta_pop(&heap));
    cel__eta_clear(&heap);
}
END_TEST

START_TEST(test_eta_pops_random_input_in_eta_order)
{
    cel__eta_heap_t heap = {0};
    srand(20260102);
    const int count = 1000;
    for (int i = 0; i < count; i++) {
        /* Few distinct values, so equal ETAs occur too. */
        double eta_ts = 1767323045.0 + (double)(rand() % 500) / 4.0;
        ck_assert_int_eq(cel__eta_push(&heap, request_new(eta_ts, i)), CEL_OK);
    }
    ck_assert_uint_eq(heap.count, (size_t)count);

    double previous = 0;
    int popped = 0;
    cel__request_t *request;
    while ((request = cel__eta_pop(&heap)) != NULL) {
        ck_assert_msg(request->msg.eta_ts >= previous,
                      "pop %d: eta %.2f came after %.2f", popped,
                      request->msg.eta_ts, previous);
        previous = request->msg.eta_ts;
        popped++;
        cel__request_free(request);
    }
    ck_assert_int_eq(popped, count);
    ck_assert_uint_eq(heap.count, 0);
    cel__eta_clear(&heap);
}
END_TEST

START_TEST(test_eta_pops_descending_input_in_order)
{
    cel__eta_heap_t heap = {0};
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(cel__eta_push(&heap, request_new(100.0 - i, i)),
                         CEL_OK);
    for (int i = 49; i >= 0; i--) {
        cel__request_t *request = cel__eta_pop(&heap);
        ck_assert_ptr_nonnull(request);
        ck_assert_double_eq(request->msg.eta_ts, 100.0 - i);
        cel__request_free(request);
    }
    cel__eta_clear(&heap);
}
END_TEST

START_TEST(test_eta_peek_returns_earliest_without_removing)
{
    cel__eta_heap_t heap = {0};
    cel__request_t *late = request_new(300.0, 1);
    cel__request_t *early = request_new(100.0, 2);
    cel__request_t *middle = request_new(200.0, 3);
    ck_assert_int_eq(cel__eta_push(&heap, late), CEL_OK);
    ck_assert_ptr_eq(cel__eta_peek(&heap), late);
    ck_assert_int_eq(cel__eta_push(&heap, early), CEL_OK);
    ck_assert_int_eq(cel__eta_push(&heap, middle), CEL_OK);

    ck_assert_ptr_eq(cel__eta_peek(&heap), early);
    ck_assert_ptr_eq(cel__eta_peek(&heap), early);
    ck_assert_uint_eq(heap.count, 3);

    cel__request_t *popped = cel__eta_pop(&heap);
    ck_assert_ptr_eq(popped, early);
    ck_assert_str_eq(popped->msg.id, "eta-2");
    cel__request_free(popped);
    ck_assert_ptr_eq(cel__eta_peek(&heap), middle);
    ck_assert_uint_eq(heap.count, 2);

    cel__eta_clear(&heap);
}
END_TEST

START_TEST(test_eta_interleaved_push_and_pop_stay_ordered)
{
    cel__eta_heap_t heap = {0};
    srand(42);
    int serial = 0;
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(
                cel__eta_push(&heap, request_new(rand() % 1000, serial++)),
                CEL_OK);
        cel__request_t *request = cel__eta_pop(&heap);
        ck_assert_ptr_nonnull(request);
        for (size_t j = 0; j < heap.count; j++)
            ck_assert(heap.items[j]->msg.eta_ts >= request->msg.eta_ts);
        cel__request_free(request);
    }
    ck_assert_uint_eq(heap.count, 400);
    cel__eta_clear(&heap);
}
END_TEST

START_TEST(test_eta_clear_frees_requests_and_resets)
{
    cel__eta_heap_t heap = {0};
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(cel__eta_push(&heap, request_new(i * 1.5, i)), CEL_OK);
    cel__eta_clear(&heap);
    ck_assert_ptr_null(heap.items);
    ck_assert_uint_eq(heap.count, 0);
    ck_assert_uint_eq(heap.cap, 0);
    ck_assert_ptr_null(cel__eta_peek(&heap));

    /* The heap is usable again after a clear. */
    ck_assert_int_eq(cel__eta_push(&heap, request_new(5.0, 99)), CEL_OK);
    ck_assert_str_eq(cel__eta_peek(&heap)->msg.id, "eta-99");
    cel__eta_clear(&heap);
    cel__eta_clear(&heap);
}
END_TEST

static Suite *eta_suite(void)
{
    Suite *suite = suite_create("eta");
    TCase *heap = tcase_create("heap");
    tcase_add_test(heap, test_eta_empty_heap_has_nothing);
    tcase_add_test(heap, test_eta_pops_random_input_in_eta_order);
    tcase_add_test(heap, test_eta_pops_descending_input_in_order);
    tcase_add_test(heap, test_eta_peek_returns_earliest_without_removing);
    tcase_add_test(heap, test_eta_interleaved_push_and_pop_stay_ordered);
    tcase_add_test(heap, test_eta_clear_frees_requests_and_resets);
    suite_add_tcase(suite, heap);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(eta_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
